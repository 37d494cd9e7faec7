"""scripts/bench_scale.py at a tiny size, so the scale benchmark keeps running as the code moves."""

from __future__ import annotations

from types import ModuleType

from tests.scripts import load_script


def bench() -> ModuleType:
    return load_script("bench_scale")


def test_the_simulated_cluster_part_measures_busy_gpus() -> None:
    out = bench().sim(gpus=8, window_s=300.0, trial_s=30.0, llm_s=20.0, warmup_s=60.0, k=4, ready=2)
    assert out["nodes"] > 1, "no draft ever came back: the search never expanded"
    assert out["llm_requests"] >= 1
    assert 0.0 < out["busy_share"] <= 1.0
    assert 0.0 < out["busy_share_from_start"] <= 1.0
    # Eight slots of 30 s trials over 360 s hold at most 96 trials.
    assert 3 <= out["trials_started"] <= 8 * (360 // 30)
    assert out["met"] == (out["busy_share"] >= out["target_busy_share"])


def test_the_actor_part_times_a_resumed_campaign_with_a_synthetic_history() -> None:
    out = bench().actor(nodes=200, calls=30, concurrent=4)
    assert out["nodes"] == 200
    assert out["trials"] > out["nodes"], "the synthetic history ran no blocks"
    assert out["complete_calls"] == 30
    assert out["suggest_calls"] >= 30
    for name in ("suggest", "complete"):
        assert 0.0 < out[f"{name}_wall_p50_ms"] <= out[f"{name}_wall_p99_ms"]
        assert 0.0 <= out[f"{name}_cpu_p50_ms"] <= out[f"{name}_cpu_p99_ms"]
