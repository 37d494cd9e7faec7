"""Trials under different fingerprints are never compared, and the report says which and why."""

from __future__ import annotations

from pathlib import Path

from orchestrator import report
from orchestrator.blocks import paired
from orchestrator.config import load_config
from orchestrator.tree import ROOT_ID, SearchTree
from tests.toy import write_config
from trials.spec import Fingerprint, TrialResult, TrialState

FAST = Fingerprint(gpu_model="A100", python="3.11", budget_s=60.0)
SLOW = Fingerprint(gpu_model="A100", python="3.11", budget_s=30.0)  # another budget: not comparable


def _tree() -> SearchTree:
    tree = SearchTree()
    tree.record("session_started", ts=0.0)
    for node_id, parent in ((ROOT_ID, None), ("n1", ROOT_ID)):
        tree.record("node_created", node_id=node_id, parent_id=parent, change=None, commit="c", params={},
                    origin="root" if parent is None else "search")
        tree.record("seeds_requested", node_id=node_id, seeds=[0, 1, 2])
        for seed in (0, 1, 2):
            fp = SLOW if (node_id, seed) == ("n1", 2) else FAST
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
    assert "Trials ran under 2 different fingerprints" in notebook
    assert "They differ in: budget_s." in notebook
    assert "n1 vs n0: seeds [2] not compared (the two trials ran under different fingerprints)" in notebook
