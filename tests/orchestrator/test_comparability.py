"""Trials under different fingerprints are never compared, and the report says which and why."""

from __future__ import annotations

from pathlib import Path

from orchestrator import cohorts, report
from orchestrator.blocks import paired
from orchestrator.config import load_config
from orchestrator.tree import ROOT_ID, SearchTree
from tests.toy import write_config
from trials.spec import Fingerprint, Placement, TrialResult, TrialState

FAST = Fingerprint(gpu_model="A100", python="3.11", budget_s=60.0)
SLOW = Fingerprint(gpu_model="A100", python="3.11", budget_s=30.0)  # another budget: not comparable


def _tree(mixed: bool = True) -> SearchTree:
    tree = SearchTree()
    tree.record("session_started", ts=0.0)
    for node_id, parent in ((ROOT_ID, None), ("n1", ROOT_ID)):
        tree.record("node_created", node_id=node_id, parent_id=parent, change=None, commit="c", params={},
                    origin="root" if parent is None else "search")
        tree.record("seeds_requested", node_id=node_id, seeds=[0, 1, 2])
        for seed in (0, 1, 2):
            fp = SLOW if mixed and (node_id, seed) == ("n1", 2) else FAST
            tid = f"{node_id}-s{seed}"
            tree.record("trial_started", trial_id=tid, node_id=node_id, seed=seed)
            result = TrialResult(tid, node_id, seed, TrialState.COMPLETE, metrics={"score": 0.5 + seed / 10},
                                 fingerprint=fp)
            tree.record("trial_finished", result=result.to_dict())
    return tree


def test_mismatched_seeds_are_left_out_and_reported(tmp_path: Path) -> None:
    tree = _tree()
    config = load_config(write_config(tmp_path))
    pairs = paired(tree, tree.nodes["n1"], tree.root, "score", config)
    assert list(pairs.excluded) == [2] and pairs.seeds == [0, 1]
    tree.record("decision", node_id="n1", status="PRUNED", reason="futile",
                evidence={"excluded_seeds": {str(k): v for k, v in pairs.excluded.items()}})
    notebook = report.notebook(config, tree)
    assert "Trials ran under 2 fingerprints, each a cohort" in notebook
    assert "They differ in: budget_s." in notebook
    assert "n1 vs n0: seeds [2] not compared (the two trials ran under different fingerprints)" in notebook


def _two_gpu_models() -> SearchTree:
    """The baseline and a child measured on two GPU models, each on its own Ray node; the H100
    node measures 0.1 higher, and one trial was stopped by the budget (it has no fingerprint)."""
    models = {
        "node-a": Fingerprint(gpu_model="NVIDIA A100", gpu_count=1, gpu_driver="550.54", cuda_version="12.4",
                              python="3.11", budget_s=60.0),
        "node-h": Fingerprint(gpu_model="NVIDIA H100", gpu_count=1, gpu_driver="555.42", cuda_version="12.5",
                              python="3.11", budget_s=60.0),
    }
    tree = SearchTree()
    tree.record("session_started", ts=0.0)
    for node_id, parent in ((ROOT_ID, None), ("n1", ROOT_ID)):
        tree.record("node_created", node_id=node_id, parent_id=parent, change=None, commit="c", params={},
                    origin="root" if parent is None else "search")
        tree.record("seeds_requested", node_id=node_id, seeds=[0, 1, 2, 3, 4])
        for seed in range(5):
            ray_node = "node-a" if seed % 2 == 0 else "node-h"
            tid = f"{node_id}-s{seed}"
            tree.record("trial_started", trial_id=tid, node_id=node_id, seed=seed)
            score = 0.5 + seed / 100 + (0.1 if ray_node == "node-h" else 0.0)
            state = TrialState.STOPPED if (node_id, seed) == ("n1", 4) else TrialState.COMPLETE
            result = TrialResult(tid, node_id, seed, state, metrics={"score": score} if state is TrialState.COMPLETE
                                 else {}, fingerprint=models[ray_node] if state is TrialState.COMPLETE
                                 else Fingerprint(), placement=Placement(ray_node_id=ray_node))
            tree.record("trial_finished", result=result.to_dict())
    return tree


def test_each_gpu_model_is_a_cohort_with_its_own_baseline(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    tree = _two_gpu_models()
    rows = cohorts.summary(config, tree)
    by_model = {row["gpu_model"]: row for row in rows}
    assert set(by_model) == {"NVIDIA A100", "NVIDIA H100"}  # the stopped trial adds no cohort
    a100, h100 = by_model["NVIDIA A100"], by_model["NVIDIA H100"]
    assert (a100["trials"], h100["trials"]) == (5, 4) and a100["nodes"] == h100["nodes"] == 2
    assert a100["machines"] == ["node-a"] and h100["machines"] == ["node-h"]
    assert a100["baseline"]["n"] == 3 and abs(a100["baseline"]["mean"] - 0.52) < 1e-9
    assert h100["baseline"]["n"] == 2 and abs(h100["baseline"]["mean"] - 0.62) < 1e-9
    assert rows[0] is a100  # the largest cohort first
    summary = report.summary(config, tree)
    assert summary["fingerprints"] == [row["key"] for row in rows]
    notebook = report.notebook(config, tree)
    section = notebook[notebook.index("## Comparability"):]
    assert "Trials ran under 2 fingerprints, each a cohort" in section
    assert f"| {a100['key']} | 1x NVIDIA A100 (driver 550.54, CUDA 12.4) | 3.11 | 5 | 2 | 1 | 0.52 (3) |" in section
    assert f"| {h100['key']} | 1x NVIDIA H100 (driver 555.42, CUDA 12.5) | 3.11 | 4 | 2 | 1 | 0.62 (2) |" in section
    assert "They differ in: gpu_model." in section


def test_one_fingerprint_is_named_in_one_line(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    notebook = report.notebook(config, _tree(mixed=False))
    section = notebook[notebook.index("## Comparability"):]
    one = "Every trial ran under one fingerprint (no GPU, Python 3.11): hardware, software, data and budget."
    assert one in section
