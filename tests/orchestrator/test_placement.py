"""Where trials ran: the report's Placement section, the trials table's placement columns, and
the placement a lost trial's report carries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator import placement, report
from orchestrator.campaign import prepare
from orchestrator.config import load_config
from orchestrator.ledger import PLACEMENT_COLUMNS, Ledger, open_filesystem, read_table
from orchestrator.search import SearchService
from orchestrator.tree import ROOT_ID, Event, SearchTree
from tests.toy import write_config
from trials.spec import Fingerprint, Placement, TrialResult, TrialState

T0 = datetime(2024, 3, 1, 9, 0, 0, tzinfo=UTC).timestamp()
NODE_A = "a1" * 28  # Ray node ids are 56 hex digits
NODE_B = "b2" * 28
ON_A = Placement(NODE_A, "10.0.0.1", "gpu-1", "0", "H100")
ON_B = Placement(NODE_B, "10.0.0.2", "gpu-2", "1", "A100")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _start(tree: SearchTree, trial_id: str) -> None:
    record = tree.trials[trial_id]
    tree.record("trial_started", trial_id=trial_id, node_id=record.node_id, seed=record.seed)


def _finish(tree: SearchTree, trial_id: str, where: Placement, state: TrialState = TrialState.COMPLETE) -> None:
    record = tree.trials[trial_id]
    result = TrialResult(trial_id, record.node_id, record.seed, state, metrics={"score": 0.5, "size": 1.0},
                         fingerprint=Fingerprint(python="3.11"), worker=where.hostname, placement=where)
    tree.record("trial_finished", result=result.to_dict())


def _campaign() -> tuple[SearchTree, list[Event]]:
    """Session 1: s0 on A; s1 lost on A, then run on B; s2 fails on B; s3 cut off by the stop.
    Session 2 (a resume): s3 runs on A with another GPU; s4 is lost on B and not run again."""
    journal: list[Event] = []
    clock = Clock()
    tree = SearchTree(sink=journal.append, clock=clock)
    tree.record("session_started", ts=T0, resumed=False)
    tree.record("node_created", node_id=ROOT_ID, parent_id=None, change=None, commit="c", params={}, origin="root")
    tree.record("seeds_requested", node_id=ROOT_ID, seeds=[0, 1, 2, 3, 4])
    _start(tree, "n0-s0")
    _finish(tree, "n0-s0", ON_A)
    _start(tree, "n0-s1")
    tree.record("trial_lost", trial_id="n0-s1", reason="worker lost", placement=ON_A.to_dict())
    _start(tree, "n0-s1")
    _finish(tree, "n0-s1", ON_B)
    _start(tree, "n0-s2")
    _finish(tree, "n0-s2", ON_B, TrialState.FAIL)
    _start(tree, "n0-s3")
    tree.record("trial_lost", trial_id="n0-s3", reason="campaign stopped while it ran")
    clock.now = T0 + 999  # the resume, a quarter of an hour later
    tree.record("session_started", ts=T0 + 1000, resumed=True)
    _start(tree, "n0-s3")
    _finish(tree, "n0-s3", Placement(NODE_A, "10.0.0.1", "gpu-1", "1", "H100"))
    _start(tree, "n0-s4")
    tree.record("trial_lost", trial_id="n0-s4", reason="worker lost", placement={"ray_node_id": NODE_B})
    return tree, journal


def test_the_placement_section_counts_each_machine_its_lost_trials_and_the_sessions(tmp_path: Path) -> None:
    tree, _ = _campaign()
    data = placement.summary(tree)
    rows = {row["node"]: row for row in data["nodes"]}
    assert list(rows) == [NODE_A, NODE_B, None]  # by host name, the unknown machine last
    a, b, unknown = rows[NODE_A], rows[NODE_B], rows[None]
    assert (a["run"], a["finished"], a["failed"], a["lost"], a["retried"]) == (3, 2, 0, 1, 1)
    assert (b["run"], b["finished"], b["failed"], b["lost"], b["retried"]) == (3, 1, 1, 1, 1)
    assert (unknown["run"], unknown["lost"]) == (1, 1)
    assert a["gpu_ids"] == ["0", "1"] and a["accelerators"] == ["H100"] and a["node_ip"] == "10.0.0.1"
    assert b["hostname"] == "gpu-2" and b["accelerators"] == ["A100"]
    lost = [(r["trial_id"], r["on"], r["session"], r["retried_on"], r["retried_state"]) for r in data["lost"]]
    assert lost == [
        ("n0-s1", NODE_A, 1, NODE_B, "COMPLETE"),
        ("n0-s3", None, 1, NODE_A, "COMPLETE"),
        ("n0-s4", NODE_B, 2, None, "PENDING"),
    ]
    sessions = [(s["session"], s["resumed"], s["started"], s["finished"], s["lost"]) for s in data["sessions"]]
    assert sessions == [(1, False, 5, 3, 2), (2, True, 2, 1, 1)]
    # The first session ends at its last event, not at the resume's start.
    first, second = data["sessions"]
    assert T0 < first["end"] < second["start"] == T0 + 1000 < second["end"]

    config = load_config(write_config(tmp_path))
    summary = report.summary(config, tree)
    assert json.loads(json.dumps(summary))["placement"] == json.loads(json.dumps(data))
    notebook = report.notebook(config, tree)
    section = notebook.split("## Placement", 1)[1].split("\n## ", 1)[0]
    assert f"| {NODE_A} | 10.0.0.1 | gpu-1 | H100 | 0; 1 | 3 | 2 | 0 | 1 | 1 |" in section
    assert f"| {NODE_B} | 10.0.0.2 | gpu-2 | A100 | 1 | 3 | 1 | 1 | 1 | 1 |" in section
    assert "| unknown | – | – | – | – | 1 | 0 | 0 | 1 | 0 |" in section
    assert f"| n0-s1 | 2024-03-01 09:00:07 | 1 | {NODE_A} | worker lost | {NODE_B} (COMPLETE) |" in section
    assert f"| n0-s3 | 2024-03-01 09:00:13 | 1 | unknown | campaign stopped while it ran | {NODE_A} (COMPLETE) |" \
        in section
    assert f"| n0-s4 | 2024-03-01 09:16:44 | 2 | {NODE_B} | worker lost | not yet |" in section
    assert "| 1 | 2024-03-01 09:00:00 | 2024-03-01 09:00:13 | no | 5 | 3 | 2 |" in section
    assert "| 2 | 2024-03-01 09:16:40 | 2024-03-01 09:16:44 | yes | 2 | 1 | 1 |" in section


def test_a_campaign_with_no_trials_has_an_empty_placement_section() -> None:
    tree = SearchTree(clock=Clock())
    tree.record("session_started", ts=T0, resumed=False)
    lines = placement.section(placement.summary(tree))
    assert "No trial has run yet." in lines and "None." in lines
    assert lines[-2] == "| 1 | 2024-03-01 09:00:00 | 2024-03-01 09:00:01 | no | 0 | 0 | 0 |"


def test_the_trials_table_says_where_each_trial_ran(tmp_path: Path) -> None:
    tree, journal = _campaign()
    ledger = Ledger(str(tmp_path / "ledger"), tmp_path / "journal.wal")
    for event in journal:
        ledger.append(event)
    ledger.close(trials=tree.trials)
    fs, root = open_filesystem(str(tmp_path / "ledger"))
    rows = {r["trial_id"]: r for r in read_table(fs, root, "trials").to_pylist()}
    assert tuple(Placement().to_dict()) == PLACEMENT_COLUMNS
    assert {name: rows["n0-s1"][name] for name in PLACEMENT_COLUMNS} == ON_B.to_dict()
    assert rows["n0-s3"]["gpu_ids"] == "1" and rows["n0-s0"]["ray_node_id"] == NODE_A
    # A part written before the placement columns reads them null.
    old = pa.table({"trial_id": ["n0-s9"], "seed": [9], "event_seq": [999]})
    pq.write_table(old.replace_schema_metadata({"arborist_schema_version": "4"}),
                   f"{root}/trials/part-000000000999-000000000999.parquet", filesystem=fs)
    row = next(r for r in read_table(fs, root, "trials").to_pylist() if r["trial_id"] == "n0-s9")
    assert all(row[name] is None for name in PLACEMENT_COLUMNS)


def test_a_lost_trial_keeps_where_it_ran_and_a_malformed_placement_is_not_recorded(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    first = service.suggest()
    assert isinstance(first, dict)
    trial_id, token = first["spec"]["trial_id"], first["token"]
    assert service.complete(trial_id, token, None, True, ON_A.to_dict())
    again = service.suggest()
    assert isinstance(again, dict) and again["spec"]["trial_id"] == trial_id  # lost: it runs again
    assert service.complete(trial_id, again["token"], None, True, {"ray_node_id": 5, "rack": "r1"})
    third = service.suggest()
    assert isinstance(third, dict) and third["spec"]["trial_id"] == trial_id
    forged = TrialResult(trial_id, ROOT_ID, first["spec"]["seed"], TrialState.COMPLETE,
                         metrics={"score": 1.0, "size": 1.0}).to_dict()
    forged["placement"] = {"ray_node_id": ["x"], "rack": "r1"}
    assert service.complete(trial_id, third["token"], forged)
    service.close()
    tree = report.load_tree(config)
    assert [lost.get("placement") for lost in tree.lost] == [ON_A.to_dict(), None]
    record = tree.trials[trial_id]
    assert record.state is TrialState.FAIL and record.result is not None
    assert "placement ray_node_id is ['x'], not text" in record.result.message
    assert "placement field 'rack' is unknown" in record.result.message


def test_each_bundle_fetch_is_journaled_with_the_node_and_counted_per_node(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    bundle_id = service.tree.meta["bundle_id"]
    data = service.bundle_bytes(bundle_id, ON_A.to_dict())
    service.bundle_bytes(bundle_id, {"ray_node_id": NODE_B, "node_ip": "10.0.0.2"})
    service.bundle_bytes(bundle_id, {"ray_node_id": NODE_B, "node_ip": "10.0.0.2"})  # its cache was lost
    service.bundle_bytes(bundle_id, {"ray_node_id": 5})  # not a placement: the fetch counts, on no node
    service.bundle_bytes(bundle_id)  # a caller that does not say where it runs
    service.close()
    tree = report.load_tree(config)
    fetches = [(f["bundle_id"], f["bytes"], f.get("placement")) for f in tree.bundle_fetches]
    assert fetches == [
        (bundle_id, len(data), ON_A.to_dict()),
        (bundle_id, len(data), {"ray_node_id": NODE_B, "node_ip": "10.0.0.2"}),
        (bundle_id, len(data), {"ray_node_id": NODE_B, "node_ip": "10.0.0.2"}),
        (bundle_id, len(data), None),
        (bundle_id, len(data), None),
    ]
    rows = {row["node"]: row for row in placement.summary(tree)["nodes"]}
    assert {node: (row["bundles"], row["run"]) for node, row in rows.items()} == {
        NODE_A: (1, 0), NODE_B: (2, 0), None: (2, 0),
    }
    section = "\n".join(placement.section(placement.summary(tree)))
    assert f"| {NODE_B} | 10.0.0.2 | – | – | – | 0 | 0 | 0 | 0 | 0 | 2 |" in section
