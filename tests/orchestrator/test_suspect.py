"""Suspect results: promotions the campaign's own noise model finds implausible wait for a person."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator import report
from orchestrator.campaign import prepare
from orchestrator.change import Change
from orchestrator.config import CampaignConfig, load_config
from orchestrator.integration import branch_winners
from orchestrator.noise import NoiseModel
from orchestrator.policy import implausible_findings, judge_child
from orchestrator.search import FINISHED, SearchService
from orchestrator.tree import ROOT_ID, NodeStatus, SearchTree
from tests.toy import self_reported_diff, write_self_reported_config
from trials.runner import run_trial
from trials.spec import TrialResult, TrialSpec, TrialState

ARBORIST = [sys.executable, "-m", "orchestrator.cli"]
PARENT = [0.40, 0.42, 0.38, 0.41, 0.39]


def _config(bounds: tuple[float, float] = (0, 1), **stats: Any) -> CampaignConfig:
    return CampaignConfig.model_validate({
        "name": "t", "project": "/p", "entrypoint": {"train": "x"},
        "metrics": {"acc": {"direction": "max", "role": "objective", "bounds": list(bounds)}},
        "search": {"proposers": [{"type": "random"}]},
        "seeds": {"baseline": 5, "max": 5},
        "stats": {"screen_blocks": 0, **stats},
    })


def _tree(child: list[float]) -> SearchTree:
    tree = SearchTree()
    tree.record("session_started", ts=0.0)
    change = Change(kind="params", aspect="lr", hypothesis="h", proposer="t", params={"lr": 1}).to_dict()
    for node_id, parent, values in ((ROOT_ID, None, PARENT), ("n1", ROOT_ID, child)):
        tree.record("node_created", node_id=node_id, parent_id=parent, change=None if parent is None else change,
                    commit="c", params={}, origin="root" if parent is None else "search")
        if parent is not None:  # past screening: its test reads the seeds requested from here on
            tree.record("test_started", node_id=node_id, test=1, level=0.05, pool=None, screen={})
        tree.record("seeds_requested", node_id=node_id, seeds=list(range(len(values))))
        for seed, value in enumerate(values):
            tid = f"{node_id}-s{seed}"
            tree.record("trial_started", trial_id=tid, node_id=node_id, seed=seed)
            result = TrialResult(tid, node_id, seed, TrialState.COMPLETE, metrics={"acc": value}, started_at=0.0,
                                 finished_at=1.0)
            tree.record("trial_finished", result=result.to_dict())
    return tree


def _findings(child: list[float], bounds: tuple[float, float] = (0, 1), **stats: Any) -> list[dict[str, Any]]:
    tree, config = _tree(child), _config(bounds, **stats)
    noise = NoiseModel()
    noise.add_replicates("acc:" + tree.trials["n0-s0"].result.fingerprint.comparability_key(), ROOT_ID, PARENT)  # type: ignore[union-attr]
    seeds = list(range(len(child)))
    evidence = {"seeds": seeds, "diffs": [c - p for c, p in zip(child, PARENT, strict=False)]}
    return implausible_findings(tree, tree.nodes["n1"], config, noise, evidence)


@pytest.mark.parametrize(("bounds", "message"), [
    ([1, 0], "bounds: low (1.0) must be below high (0.0)"),
    ([None, None], "bounds [null, null] bounds nothing"),
])
def test_bounds_that_bound_nothing_are_refused(bounds: list[float | None], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        CampaignConfig.model_validate({
            "name": "t", "project": "/p", "entrypoint": {"train": "x"},
            "metrics": {"acc": {"direction": "max", "role": "objective", "bounds": bounds}},
            "search": {"proposers": [{"type": "random"}]},
        })


def test_a_plausible_gain_breaks_no_rule() -> None:
    assert _findings([0.43, 0.46, 0.41, 0.45, 0.42]) == []


def test_a_gain_far_beyond_the_noise_is_suspect() -> None:
    child = [1.90, 1.93, 1.88, 1.92, 1.89]
    (finding,) = _findings(child, bounds=(0, 10))
    assert finding["rule"] == "gain_beyond_noise"
    # sigma_d from the baseline's replicates: sqrt(2) x their sd (0.0158) = 0.0224.
    assert finding["sigma_d"] == pytest.approx(0.02236, rel=1e-3)
    assert finding["sigmas"] == pytest.approx(1.5 / 0.02236, rel=1e-2) and finding["limit"] == 50
    assert _findings(child, bounds=(0, 10), suspect_sigma=70.0) == []
    # A real gain of tens of sigma_d is not suspect by default.
    assert _findings([0.90, 0.93, 0.88, 0.92, 0.89]) == []


def test_a_metric_that_no_longer_varies_with_the_seed_is_suspect() -> None:
    (finding,) = _findings([0.45] * 5)
    assert finding["rule"] == "zero_variance" and finding["value"] == 0.45 and finding["seeds"] == 5


def test_a_metric_at_its_declared_bound_is_suspect() -> None:
    rules = {f["rule"]: f for f in _findings([0.98, 1.0, 0.97, 0.99, 0.96])}
    assert rules["at_bound"]["values"] == [1.0] and rules["at_bound"]["bounds"] == [0, 1]


def test_judge_child_makes_an_implausible_promotion_suspect_with_its_figures() -> None:
    tree, config = _tree([1.90, 1.93, 1.88, 1.92, 1.89]), _config((0, 10))
    noise = NoiseModel()
    noise.add_replicates("acc:" + tree.trials["n0-s0"].result.fingerprint.comparability_key(), ROOT_ID, PARENT)  # type: ignore[union-attr]
    verdict = judge_child(tree, tree.nodes["n1"], config, noise)
    assert verdict.status is NodeStatus.SUSPECT
    assert verdict.reason.startswith("suspect, not promoted: gain +1.5")
    assert verdict.evidence["suspect"][0]["rule"] == "gain_beyond_noise" and verdict.evidence["p_value"] < 0.05


# ----- a self-reported campaign, end to end without Ray ------------------------------------
ITEMS = [
    {"id": "tamper", "aspect": "loss", "hypothesis": "average the loss over fewer batches",
     "diff": self_reported_diff("    return sum(losses) / len(losses)\n", "    return 0.02\n")},
    {"id": "constant", "aspect": "other", "hypothesis": "print a fixed loss",
     "diff": self_reported_diff('print("loss:", evaluate(train(params, seed)))', 'print("loss:", 0.02)')},
    {"id": "rewrite", "aspect": "regularization", "hypothesis": "rewrite the scorer while training",
     "diff": self_reported_diff(
         'print("loss:", evaluate(train(params, seed)))\n',
         'print("loss:", evaluate(train(params, seed)))\n'
         'source = open(__file__).read()\n'
         'open(__file__, "w").write(source.replace("sum(losses) / len(losses)", "0.0"))\n')},
    {"id": "better", "aspect": "architecture", "hypothesis": "a larger weight bonus",
     "diff": self_reported_diff("bonus = 0.0", "bonus = 0.5")},
]


def _run_until_suspect(service: SearchService) -> None:
    """Run trials one at a time until a node turns suspect (then the campaign stops there)."""
    for _ in range(200):
        if service.tree.suspect_nodes():
            return
        dispatch = service.suggest()
        assert dispatch != FINISHED, "the campaign finished without a suspect node"
        _run_one(service, dispatch)
    raise AssertionError("no node turned suspect")


def _run_one(service: SearchService, dispatch: object) -> None:
    assert isinstance(dispatch, dict), "the service asked to wait with nothing running"
    spec = TrialSpec.from_dict(dispatch["spec"])
    assert service.complete(spec.trial_id, dispatch["token"], run_trial(spec, service.bundle_bytes).to_dict())


def _drive(service: SearchService) -> None:
    for _ in range(300):
        dispatch = service.suggest()
        if dispatch == FINISHED:
            return
        _run_one(service, dispatch)
    raise AssertionError("the campaign did not finish")


def _arborist(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ARBORIST, *args], capture_output=True, text=True, timeout=600)


def _node_of(tree: SearchTree, source_id: str) -> str:
    return next(n.node_id for n in tree.nodes.values() if n.change is not None and n.change.source_id == source_id)


@pytest.mark.parametrize("verdict", ["approve", "reject"])
def test_a_constant_metric_is_suspect_until_a_person_decides(tmp_path: Path, verdict: str) -> None:
    # One change under test at a time: the suspect turns up while later items still wait, so the
    # campaign is running when the verdict comes.
    search = {"proposers": [{"type": "queue", "path": str(tmp_path / "hypotheses.yaml")}], "max_open_nodes": 1}
    config = load_config(write_self_reported_config(tmp_path, ITEMS, integration={"enabled": False}, search=search))
    campaign_dir = str(config.campaign_dir)
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    _run_until_suspect(service)
    service.close()

    tree = report.load_tree(config)
    (suspect,) = tree.suspect_nodes()
    assert suspect.node_id == _node_of(tree, "constant")
    rules = {f["rule"] for f in (suspect.decision or {})["evidence"]["suspect"]}
    assert rules == {"zero_variance", "gain_beyond_noise"}
    assert tree.incumbent_id != suspect.node_id and suspect.node_id not in branch_winners(tree, config)
    assert not suspect.status.expandable
    rejected = {p.change.source_id: p.reason for p in tree.proposals if p.verdict == "rejected"}
    assert "changes protected definition train.py::evaluate" in rejected["tamper"]

    notebook = report.notebook(config, tree)
    assert notebook.index("## Suspect results") < notebook.index("## Decisions")
    assert f"arborist approve {campaign_dir} {suspect.node_id}" in notebook and "rule `zero_variance`" in notebook
    status = _arborist("status", campaign_dir)
    assert status.returncode == 0 and f"suspect: 1 node(s) await a verdict ({suspect.node_id})" in status.stdout

    wrong = _arborist(verdict, campaign_dir, "n0")
    assert wrong.returncode == 2 and "n0 is BASELINE, not SUSPECT" in wrong.stderr
    given = _arborist(verdict, campaign_dir, suspect.node_id)
    assert given.returncode == 0, given.stderr
    again = _arborist(verdict, campaign_dir, suspect.node_id)
    assert again.returncode == 2 and "already has a verdict waiting" in again.stderr

    resumed = SearchService(config.model_dump(mode="json"), None)
    _drive(resumed)
    resumed.close()
    tree = report.load_tree(config)
    node = tree.nodes[suspect.node_id]
    decision = node.decision or {}
    assert decision["verdict"] == verdict and "@" in decision["by"] and decision["at"] > 0
    assert decision["evidence"]["suspect"], "the suspect figures stay with the decision"
    if verdict == "approve":
        assert node.status is NodeStatus.PROMOTED and tree.incumbent_id == node.node_id
    else:
        assert node.status is NodeStatus.PRUNED and tree.incumbent_id != node.node_id

    rewrite = tree.node_trials(_node_of(tree, "rewrite"))
    messages = [r.result.message for r in rewrite if r.state is TrialState.INVALID and r.result is not None]
    assert any("protected definition train.py::evaluate changed" in m for m in messages)
