"""Stopping criteria and guards, on trees built event by event."""

from __future__ import annotations

from orchestrator.change import Change
from orchestrator.config import CampaignConfig
from orchestrator.policy import guard_violations, search_stop_reason
from orchestrator.tree import ROOT_ID, SearchTree
from trials.spec import TrialResult, TrialState


def _config(**budget: object) -> CampaignConfig:
    return CampaignConfig.model_validate({
        "name": "t", "project": "/p", "entrypoint": {"train": "x"},
        "metrics": {"acc": {"direction": "max", "role": "objective"},
                    "mem": {"direction": "min", "role": "guard", "max": 40.0},
                    "time": {"direction": "min", "role": "guard", "max_ratio": 1.2}},
        "search": {"proposers": [{"type": "random"}]},
        "budget": {"max_trials": 100, **budget},
        "ray": {"gpus_per_trial": 2},
    })


def _tree(values: dict[str, list[dict[str, float]]], durations_s: float = 3600.0, cost: float = 0.0) -> SearchTree:
    tree = SearchTree()
    tree.record("session_started", ts=0.0)
    for i, (node_id, rows) in enumerate(values.items()):
        parent = None if node_id == ROOT_ID else ROOT_ID
        change = None if parent is None else Change(
            kind="params", aspect="lr", hypothesis="h", proposer="t", params={"lr": i}, cost_usd=cost
        ).to_dict()
        if change is not None:
            if cost:
                tree.record("llm_call", proposer="t", purpose="draft", model="m", cost_usd=cost, ok=True)
            tree.record("proposal", proposal_id=f"p{i}", parent_id=ROOT_ID, change=change, verdict="accepted",
                        reason="", node_id=node_id, duplicate_of=None)
        origin = "root" if parent is None else "search"
        tree.record("node_created", node_id=node_id, parent_id=parent, change=change, commit="c", params={},
                    origin=origin)
        tree.record("seeds_requested", node_id=node_id, seeds=list(range(len(rows))))
        for seed, metrics in enumerate(rows):
            tid = f"{node_id}-s{seed}"
            tree.record("trial_started", trial_id=tid, node_id=node_id, seed=seed)
            result = TrialResult(tid, node_id, seed, TrialState.COMPLETE, metrics=metrics, started_at=0.0,
                                 finished_at=durations_s)
            tree.record("trial_finished", result=result.to_dict())
    return tree


BASE = [{"acc": 0.80, "mem": 30.0, "time": 10.0}] * 3


def test_guards_absolute_and_relative() -> None:
    config = _config()
    tree = _tree({ROOT_ID: BASE, "n1": [{"acc": 0.9, "mem": 45.0, "time": 13.0}] * 3,
                  "n2": [{"acc": 0.9, "mem": 35.0, "time": 11.0}] * 3})
    problems = guard_violations(tree, tree.nodes["n1"], tree.root, config)
    assert any("mem 45 > max 40" in p for p in problems)
    assert any("time 13 > 1.2x parent's 10" in p for p in problems)
    assert guard_violations(tree, tree.nodes["n2"], tree.root, config) == []


def test_a_guard_never_reported_blocks_promotion() -> None:
    config = _config()
    tree = _tree({ROOT_ID: BASE, "n1": [{"acc": 0.9, "time": 10.0}] * 3})
    assert any("mem was never reported" in p for p in guard_violations(tree, tree.nodes["n1"], tree.root, config))


def test_stopping_criteria() -> None:
    tree = _tree({ROOT_ID: BASE, "n1": [{"acc": 0.9, "mem": 1.0, "time": 1.0}] * 3}, cost=3.0)
    assert search_stop_reason(tree, _config(), now=10.0) is None
    assert "trial budget" in (search_stop_reason(tree, _config(max_trials=6), now=10.0) or "")
    assert "wall-clock" in (search_stop_reason(tree, _config(max_wall_s=5.0), now=10.0) or "")
    # 6 trials of one hour on 2 GPUs each: 12 GPU-hours.
    assert "GPU-hour budget reached (12.00" in (search_stop_reason(tree, _config(max_gpu_hours=12), now=1.0) or "")
    assert "LLM spend cap" in (search_stop_reason(tree, _config(max_llm_usd=2.5), now=1.0) or "")
    tree.record("incumbent_changed", node_id="n1", gain=0.1)
    assert "target reached" in (search_stop_reason(tree, _config(target=0.85), now=1.0) or "")
    assert search_stop_reason(tree, _config(target=0.95), now=1.0) is None


def test_patience_counts_decisions_after_the_incumbent() -> None:
    values = {ROOT_ID: BASE, **{f"n{i}": BASE for i in range(1, 5)}}
    tree = _tree(values)
    for i in range(1, 5):
        tree.record("decision", node_id=f"n{i}", status="PRUNED", reason="r", evidence={})
    tree.record("incumbent_changed", node_id=ROOT_ID, gain=0.0)
    assert "patience exhausted: 4" in (search_stop_reason(tree, _config(patience=4), now=1.0) or "")
    assert search_stop_reason(tree, _config(patience=5), now=1.0) is None
