"""The search service end to end without Ray: real trials, run one at a time."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from orchestrator import blocks, report
from orchestrator.campaign import prepare
from orchestrator.config import load_config
from orchestrator.search import FINISHED, SearchService
from orchestrator.tree import NodeStatus, Phase
from tests.toy import queue_items, write_config
from trials.runner import run_trial
from trials.spec import TrialSpec


def drive(service: SearchService, limit: int = 500, stop_after: int | None = None) -> int:
    """Run the service's trials in order until it finishes; returns trials run."""
    ran = 0
    while ran < limit:
        dispatch = service.suggest()
        if dispatch == FINISHED:
            return ran
        assert isinstance(dispatch, dict), "the service asked to wait with nothing running"
        result = run_trial(TrialSpec.from_dict(dispatch["spec"]), service.bundle_bytes)
        assert service.complete(dispatch["spec"]["trial_id"], dispatch["token"], result.to_dict())
        ran += 1
        if stop_after is not None and ran >= stop_after:
            return ran
    raise AssertionError("the campaign did not finish")


def _by_source(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["source_id"]: d for d in summary["decisions"] if d["origin"] == "search"}


def test_toy_campaign_decides_each_change_for_the_right_reason(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    ran = drive(service)
    closing = service.close()
    # The tree actor's own time per trial (its suggest and complete calls), one figure per trial.
    serial = closing["tree_actor_ms_per_trial"]
    assert serial["trials"] == ran > 0
    assert 0 < serial["p50"] <= serial["p99"] <= serial["max"]
    tree = report.load_tree(config)
    assert tree.phase is Phase.DONE
    summary = report.summary(config, tree)
    queue = _by_source(summary)
    assert queue["better"]["status"] == "PROMOTED"
    assert queue["better"]["gain"] > 0.15 and queue["better"]["ci_low"] > 0
    assert queue["extra"]["status"] == "PROMOTED"
    assert queue["worse"]["status"] == "PRUNED" and "worse than the parent" in queue["worse"]["reason"]
    assert queue["breaks"]["status"] == "FAILED" and "stage run" in queue["breaks"]["reason"]
    rejected = {p["source_id"]: p["reason"] for p in summary["rejected_proposals"]}
    assert "protected path evaluate.py" in rejected["tamper"]
    # Grid proposals move x towards 3: some param change is promoted.
    promoted_params = [
        d for d in summary["decisions"] if d["status"] == "PROMOTED" and d["change"].startswith("params")
    ]
    assert promoted_params
    integration = summary["integration"]
    assert len(integration["winners"]) >= 2
    assert summary["incumbent"]["node_id"] == integration["final"]
    # Every promoted node's recorded evidence satisfies the rule that promoted it.
    for node in tree.nodes.values():
        if node.status is NodeStatus.PROMOTED:
            evidence = node.decision["evidence"]  # type: ignore[index]
            # The test's e-value reached one over the level the node was granted...
            assert evidence["rule"] == "e-value" and evidence["e_value"] >= evidence["threshold"]
            assert evidence["p_value"] <= evidence["level"] == node.level and evidence["mean"] > 0
            # ...on blocks run after its screening (search nodes), never on the screening's seeds.
            if node.origin == "search":
                screened = set(evidence["screening"]["seeds"])
                assert screened and not screened & set(evidence["test_seeds"])
    notebook = report.notebook(config, tree)
    assert "## Decisions" in notebook and "protected path evaluate.py" in notebook
    # Grid values of x after the first are steps of one sweep, each linked to the earlier results.
    steps = [link for link in summary["memory_links"] if link["kind"] == "sweep-step"]
    assert steps and all(link["knob"] == "x" and link["earlier"] for link in steps)
    for link in steps:
        assert all(e["change"].startswith("params x=") and e["status"] != "REJECTED" for e in link["earlier"])
    assert summary["proposers"]["grid"]["sweep_steps"] == len(steps)
    assert "## Revisits and sweep steps" in notebook and "sweep step on x" in notebook


def test_integration_keeps_a_graft_that_helps(tmp_path: Path) -> None:
    queue = tmp_path / "two.yaml"
    queue.write_text(yaml.safe_dump(queue_items()[:2]))
    config = load_config(write_config(tmp_path, search={"proposers": [{"type": "queue", "path": str(queue)}]}))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    drive(service)
    service.close()
    tree = report.load_tree(config)
    summary = report.summary(config, tree)
    integration = summary["integration"]
    # Both improvements are siblings under the root: two branches, grafted into one.
    assert len(integration["winners"]) == 2
    (graft,) = integration["grafts"]
    assert graft["status"] == "PROMOTED", graft
    final = tree.nodes[integration["final"]]
    assert final.origin == "integration" and summary["incumbent"]["node_id"] == final.node_id
    assert summary["incumbent"]["gain_vs_baseline"]["mean"] > 0.25  # +0.2 and +0.1 together
    # The graft's commit holds both code changes.
    repo = tmp_path / "campaign" / "repo"
    def show(path: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "show", f"{final.commit}:{path}"], capture_output=True, text=True, check=True
        ).stdout

    assert "BONUS = 0.2" in show("model.py") and "EXTRA = 0.1" in show("features.py")
    # The ablation table shows each winner alone and in the combination.
    first, second = integration["ablation"]
    assert first["kept"] and second["kept"] and second["conflict"] is None
    assert second["in_combination"]["mean"] > 0 and second["alone"]["ci_low"] > 0
    assert "### Ablation" in report.notebook(config, tree)


def test_every_child_runs_on_its_parents_seeds(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    drive(service)
    service.close()
    tree = report.load_tree(config)
    compared = 0
    for node in tree.nodes.values():
        evidence = (node.decision or {}).get("evidence") or {}
        if node.parent_id is None or "seeds" not in evidence:
            continue
        # The seeds a decision used completed on both the child and its parent.
        child_done = tree.completed_values(node.node_id, "score")
        parent_done = tree.completed_values(node.parent_id, "score")
        assert set(evidence["seeds"]) <= set(child_done) & set(parent_done)
        # A test's pairs ran in one block: the child's and the parent's trial on one fresh seed, close
        # in time. Screening may instead reuse the parent's recent trials, within a wider window.
        screening = evidence.get("test") == "screening"
        for block in evidence["blocks"]:
            mine = tree.trials[f"{node.node_id}-s{block['seed']}"]
            if not screening:
                assert tree.trials[f"{node.parent_id}-s{block['seed']}"].block == block["block"] == mine.block
            limit = blocks.screen_window(config) if screening else blocks.window(config)
            assert block["apart"] <= limit
        if evidence.get("test") == "e-process":
            assert evidence["n"] == len(evidence["test_seeds"]) <= len(evidence["seeds"])
        compared += 1
    assert compared >= 5


def test_stopping_midway_and_resuming_repeats_no_trial(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    first = SearchService(config.model_dump(mode="json"), prepare(config, None))
    drive(first, stop_after=4)  # the baseline and the first trial of the first block
    # Hand out two trials and then "crash": they never report back.
    lost = [first.suggest(), first.suggest()]
    assert all(isinstance(s, dict) for s in lost)
    crashed_at = first.tree.last_ts
    del first  # no close(): as after kill -9, only the journal holds the tail
    resumed = SearchService(config.model_dump(mode="json"), None)
    drive(resumed)
    resumed.close()
    tree = report.load_tree(config)
    assert tree.phase is Phase.DONE
    started = [e for e in resumed.ledger.load_events() if e.type == "trial_finished"]
    finished_ids = [e.data["result"]["trial_id"] for e in started]
    assert len(finished_ids) == len(set(finished_ids)), "a completed trial ran twice"
    for dispatch in lost:
        assert isinstance(dispatch, dict)
        assert tree.trials[dispatch["spec"]["trial_id"]].state.is_finished(), "a cut-off trial was not run again"
    assert len(tree.sessions) == 2
    # The resume marks the cut-off trials lost in its own session: the first one ends where the
    # crash left it, so the time in between is charged to neither.
    assert tree.sessions[0]["last_ts"] == crashed_at


def test_budget_stops_the_search(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, budget={"max_trials": 8}, integration={"enabled": False}))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    ran = drive(service)
    service.close()
    tree = report.load_tree(config)
    assert ran == 8
    assert "trial budget reached" in (tree.finished_reason or "")
    assert not tree.open_nodes()


def test_failed_baseline_stops_with_a_clear_reason(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["entrypoint"]["train"] = "python -c 'raise SystemExit(3)'"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    drive(service)
    service.close()
    tree = report.load_tree(config)
    assert tree.phase is Phase.DONE
    assert "baseline failed" in (tree.finished_reason or "")
    assert "exit" in (tree.finished_reason or "").lower()


def test_a_hypotheses_file_broken_mid_campaign_is_noted_and_skipped(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    drive(service, stop_after=4)
    (tmp_path / "hypotheses.yaml").write_text("- id: [unclosed\n")
    drive(service)
    service.close()
    tree = report.load_tree(config)
    assert tree.phase is Phase.DONE
    notes = [e.data["message"] for e in service.ledger.load_events() if e.type == "note"]
    assert any("proposer queue skipped" in n and "not valid YAML" in n for n in notes)
    assert any(n.change is not None and n.change.proposer == "grid" for n in tree.nodes.values())


def test_a_broken_hypotheses_file_stops_the_start(tmp_path: Path) -> None:
    import pytest

    from orchestrator.proposers.queue import QueueFileError

    config = load_config(write_config(tmp_path))
    (tmp_path / "hypotheses.yaml").write_text("- id: a\n  hypothesis: h\n")
    with pytest.raises(QueueFileError, match=r"hypotheses\.yaml:1: item 0 \(a\): give exactly one of diff"):
        prepare(config, None)
    assert not (tmp_path / "campaign" / "campaign.json").exists()


def test_a_budget_that_runs_out_leaves_undecided_nodes_and_no_pending_trials(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, budget={"max_trials": 9}, integration={"enabled": False}))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    assert drive(service) == 9
    service.close()
    tree = report.load_tree(config)
    assert tree.phase is Phase.DONE and tree.trials_spent() == 9
    undecided = [n for n in tree.nodes.values() if n.status is NodeStatus.UNDECIDED]
    assert undecided, "the budget ran out with no node under test: make it smaller"
    for node in undecided:
        assert "still under test when the search stopped" in (node.decision or {})["reason"]
    # Nothing decided for lack of budget is called pruned, and no trial is left "pending".
    assert not any(
        n.status is NodeStatus.PRUNED and "search stopped" in (n.decision or {})["reason"] for n in tree.nodes.values()
    )
    counts = tree.counts()
    assert "PENDING" not in counts["trials"] and "RUNNING" not in counts["trials"]
    assert counts["nodes"]["UNDECIDED"] == len(undecided)
    assert "undecided" in report.notebook(config, tree)


def test_the_same_change_after_the_incumbent_moved_is_a_revisit_linked_to_its_result(tmp_path: Path) -> None:
    queue = tmp_path / "revisit.yaml"
    items = queue_items()
    worse, better = items[2], items[0]
    queue.write_text(yaml.safe_dump([worse, better], sort_keys=False))
    config = load_config(write_config(
        tmp_path, search={"proposers": [{"type": "queue", "path": str(queue)}, {"type": "grid"}], "max_children": 10},
        integration={"enabled": False}, budget={"max_trials": 60},
    ))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    # Run until "better" is the incumbent, then ask for "worse" again: on the new incumbent it is
    # tried in a new context, on the root it would be a repeat.
    while not any(n.status is NodeStatus.PROMOTED for n in service.tree.nodes.values()):
        assert drive(service, stop_after=1) == 1
    again = {**worse, "id": "worse-again"}
    queue.write_text(yaml.safe_dump([worse, better, again], sort_keys=False))
    drive(service)
    service.close()
    tree = report.load_tree(config)
    proposal = next(p for p in tree.proposals if p.change.source_id == "worse-again")
    first = next(p for p in tree.proposals if p.change.source_id == "worse")
    assert proposal.verdict == "accepted" and proposal.parent_id != first.parent_id
    assert proposal.memory["kind"] == "revisit" and proposal.memory["earlier"] == first.proposal_id
    summary = report.summary(config, tree)
    (link,) = [link for link in summary["memory_links"] if link["node_id"] == proposal.node_id]
    (earlier,) = link["earlier"]
    assert earlier["node_id"] == first.node_id and earlier["status"] == "PRUNED" and earlier["gain"] < 0
    assert summary["proposers"]["queue"]["revisits"] == 1
    notebook = report.notebook(config, tree)
    assert f"| {proposal.node_id} | {proposal.parent_id} | revisit |" in notebook
    assert f"{first.node_id} on {first.parent_id}" in notebook

