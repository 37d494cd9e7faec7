"""The report's control chart, its controls and drift section, and the blocks behind each decision."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator import blocks, chart, drift, report
from orchestrator.change import Change
from orchestrator.config import CampaignConfig, load_config
from orchestrator.ledger import Ledger, open_filesystem, read_table
from orchestrator.tree import ROOT_ID, Event, SearchTree
from tests.toy import write_config
from trials.spec import Fingerprint, TrialResult, TrialState

SVG = "{http://www.w3.org/2000/svg}"
FP = Fingerprint(gpu_model="A100", python="3.11", budget_s=60.0)
T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
BASELINE = [0.50, 0.52, 0.48]  # sd 0.02: the seed noise every shift is measured in
CONTROLS = [0.50, 0.51, 0.60, 0.61]  # the baseline re-run in blocks 1-4: it drifts up by block 3


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _node(tree: SearchTree, node_id: str, parent: str | None) -> None:
    change = (
        None
        if parent is None
        else Change(
            kind="params", aspect="x", hypothesis=f"x for {node_id}", proposer="queue", params={"x": 2.0}
        ).to_dict()
    )
    tree.record(
        "node_created",
        node_id=node_id,
        parent_id=parent,
        change=change,
        commit="c",
        params={},
        origin="root" if parent is None else "search",
    )


def _run(tree: SearchTree, clock: Clock, trial_id: str, value: float, at: float) -> None:
    record = tree.trials[trial_id]
    clock.now = at
    tree.record("trial_started", trial_id=trial_id, node_id=record.node_id, seed=record.seed)
    result = TrialResult(
        trial_id, record.node_id, record.seed, TrialState.COMPLETE, metrics={"score": value}, fingerprint=FP
    )
    tree.record("trial_finished", result=result.to_dict())


def _block(tree: SearchTree, clock: Clock, block: int, parent: str, values: dict[str, float], at: float) -> None:
    """A block requested at `at`; its trials start one second apart, in the block's order."""
    children = [node_id for node_id in values if node_id != parent]
    clock.now = at
    seed = tree.next_seed(0)
    order = [parent, *children] if block % 2 else [*children[::-1], parent]  # fixed, so times are known
    tree.record("block_requested", block=block, parent_id=parent, node_ids=children, seed=seed, order=order)
    for position, node_id in enumerate(order):
        _run(tree, clock, f"{node_id}-s{seed}", values[node_id], at + 1 + position)


def _evidence(tree: SearchTree, config: CampaignConfig, node_id: str, **figures: object) -> dict[str, object]:
    node = tree.nodes[node_id]
    assert node.parent_id is not None
    pairs = blocks.paired(tree, node, tree.nodes[node.parent_id], "score", config)
    return {**figures, "n": len(pairs.seeds), "blocks": blocks.block_times(tree, node, pairs)}


def _campaign(tmp_path: Path) -> tuple[CampaignConfig, SearchTree, list[Event]]:
    """The baseline on 3 seeds; n1 and n2 in blocks 1-2 (n2 screened out), n1 alone in blocks 3-4
    while the baseline's controls drift, n1 promoted, then n1 as the control of n3 in blocks 5-6."""
    config = load_config(write_config(tmp_path, stats={"drift_window": 2, "drift_z": 3.0}))
    clock = Clock()
    journal: list[Event] = []
    tree = SearchTree(sink=journal.append, clock=clock)
    tree.record("session_started", ts=T0)
    _node(tree, ROOT_ID, None)
    tree.record("seeds_requested", node_id=ROOT_ID, seeds=[0, 1, 2])
    for seed, value in enumerate(BASELINE):
        _run(tree, clock, f"{ROOT_ID}-s{seed}", value, T0 + 10 + seed)
    tree.record("decision", node_id=ROOT_ID, status="BASELINE", reason="measured", evidence={})
    _node(tree, "n1", ROOT_ID)
    _node(tree, "n2", ROOT_ID)
    for block, at in ((1, T0 + 60), (2, T0 + 200)):
        control = CONTROLS[block - 1]
        _block(tree, clock, block, ROOT_ID, {ROOT_ID: control, "n1": control + 0.05, "n2": control - 0.01}, at)
    tree.record(
        "decision",
        node_id="n2",
        status="PRUNED",
        reason="screened out: z -1.2 below 0.5",
        evidence=_evidence(tree, config, "n2", test="screening", rule="screened out", mean=-0.01),
    )
    tree.record("test_started", node_id="n1", test=1, level=1 / 120, pool=None, screen={"z": 3.0})
    for block, at in ((3, T0 + 330), (4, T0 + 460)):
        control = CONTROLS[block - 1]
        _block(tree, clock, block, ROOT_ID, {ROOT_ID: control, "n1": control + 0.05}, at)
    finding = drift.detect(tree, config, ROOT_ID)
    assert finding is not None
    tree.record("drift_detected", **finding.to_dict())
    tree.record(
        "decision",
        node_id="n1",
        status="PROMOTED",
        reason="e-value 150 reached 120",
        evidence=_evidence(
            tree,
            config,
            "n1",
            test="e-process",
            e_value=150.0,
            threshold=120.0,
            mean=0.05,
            ci_low=0.01,
            ci_high=0.09,
            p_value=1 / 150,
        ),
    )
    tree.record("incumbent_changed", node_id="n1")
    _node(tree, "n3", "n1")
    _block(tree, clock, 5, "n1", {"n1": 0.66, "n3": 0.64}, T0 + 600)
    _block(tree, clock, 6, "n1", {"n1": 0.67, "n3": 0.65}, T0 + 700)
    return config, tree, journal


def _row(notebook: str, node_id: str) -> str:
    return next(line for line in notebook.splitlines() if line.startswith(f"| {node_id} | n0 |"))


def test_the_notebook_links_a_chart_of_every_control_node_and_drift(tmp_path: Path) -> None:
    config, tree, _ = _campaign(tmp_path)
    assert config.campaign_dir is not None
    Path(config.campaign_dir).mkdir(parents=True)
    path = report.write_notebook(config, tree)
    notebook = path.read_text()
    assert "## Controls and drift" in notebook
    assert "![control chart](control_chart.svg)" in notebook
    svg = ET.parse(path.parent / "control_chart.svg").getroot()
    series = {line.get("data-node"): line.get("points", "").split() for line in svg.iter(f"{SVG}polyline")}
    assert {node_id: len(points) for node_id, points in series.items()} == {ROOT_ID: 7, "n1": 6}
    drifts = [line for line in svg.iter(f"{SVG}line") if line.get("class") == "drift"]
    assert len(drifts) == 1
    references = {line.get("data-node") for line in svg.iter(f"{SVG}line") if line.get("class") == "reference"}
    assert references == {ROOT_ID, "n1"}
    labels = [text.text for text in svg.iter(f"{SVG}text") if text.get("class") == "drift-label"]
    (event,) = tree.drift_events
    assert labels == [f"drift n0 (z {event['z']:+.1f})"]


def test_the_decisions_table_shows_the_blocks_each_decision_read(tmp_path: Path) -> None:
    config, tree, _ = _campaign(tmp_path)
    notebook = report.notebook(config, tree)
    # n1's blocks started at 12:01:01, 12:03:22 (second in block 2's order), 12:05:31, 12:07:41;
    # each of its trials started one dispatch from its control.
    promoted = _row(notebook, "n1")
    assert "| 4 blocks 12:01:01-12:07:41, <=1 apart |" in promoted
    assert "| e 150 / 120 |" in promoted
    # n2 ran last in block 1 and first in block 2: two dispatches from the control each time.
    screened = _row(notebook, "n2")
    assert "| screened out | 2 blocks 12:01:01-12:03:21, <=2 apart |" in screened
    decisions = {d["node_id"]: d for d in report.summary(config, tree)["decisions"]}
    assert decisions["n1"]["blocks"] == {"count": 4, "first_ts": T0 + 61, "last_ts": T0 + 461, "max_apart": 1}
    assert (decisions["n1"]["e_value"], decisions["n1"]["threshold"]) == (150.0, 120.0)
    assert decisions["n2"]["screened_out"] and not decisions["n1"]["screened_out"]


def test_the_summary_has_the_controls_and_drift_computed_by_hand(tmp_path: Path) -> None:
    config, tree, _ = _campaign(tmp_path)
    data = json.loads(json.dumps(report.summary(config, tree)))
    controls = data["controls"]
    assert controls["window"] == 2 and controls["baseline_sd"] == pytest.approx(0.02)
    n0, n1 = controls["nodes"]
    # n0: the baseline's seeds, then its controls in blocks 1-4.
    assert (n0["node_id"], n0["controls"]) == (ROOT_ID, 7)
    assert n0["first_mean"] == pytest.approx((0.50 + 0.52) / 2)
    assert n0["last_mean"] == pytest.approx((0.60 + 0.61) / 2)
    assert n0["shift_sds"] == pytest.approx((0.605 - 0.51) / 0.02)
    # n1: its trials as a child in blocks 1-4, then as the control of blocks 5-6.
    assert (n1["node_id"], n1["controls"]) == ("n1", 6)
    assert n1["first_mean"] == pytest.approx(0.555)
    assert n1["last_mean"] == pytest.approx(0.665)
    assert n1["shift_sds"] == pytest.approx(0.11 / 0.02)
    (event,) = data["drift_events"]
    # The clock (trials finished when each started; one at a time): the baseline 0-2, block 1 3-5,
    # block 2 6-8, block 3 9-10, block 4 11-12 (n0 last).
    assert (event["node_id"], event["since_order"], event["at_order"]) == (ROOT_ID, 0, 12)
    assert event["shift"] == pytest.approx(0.095)
    values = [*BASELINE, *CONTROLS]  # the baseline's controls in dispatch order, its noise from their steps
    assert event["z"] == pytest.approx(0.095 / drift.successive_spread(values))
    assert event["shift_sds"] == pytest.approx(4.75)
    notebook = report.notebook(config, tree)
    assert "| n0 | 7 | 0.51 | 0.605 | +4.75 |" in notebook
    assert f"| n0 | 12 | 0 | +0.095 | +4.75 | {event['z']:+.4g} |" in notebook  # shift in baseline sds, then z


def test_a_campaign_without_drift_says_so(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    tree = SearchTree(clock=Clock())
    _node(tree, ROOT_ID, None)
    tree.record("seeds_requested", node_id=ROOT_ID, seeds=[0])
    notebook = report.notebook(config, tree)
    assert "No drift detected." in notebook
    svg = ET.fromstring(report.control_chart(config, tree))
    assert [line.get("data-node") for line in svg.iter(f"{SVG}polyline")] == []
    assert report.summary(config, tree)["controls"]["nodes"] == [
        {"node_id": ROOT_ID, "controls": 0, "first_mean": None, "last_mean": None, "shift_sds": None, "fingerprints": 0}
    ]


def _points(svg: ET.Element, node_id: str) -> list[tuple[float, float]]:
    line = next(line for line in svg.iter(f"{SVG}polyline") if line.get("data-node") == node_id)
    return [(float(x), float(y)) for x, y in (p.split(",") for p in line.get("points", "").split())]


def test_a_hundred_thousand_controls_are_drawn_as_min_and_max_per_pixel_column() -> None:
    values = [0.5 + 0.01 * math.sin(i) for i in range(100_000)]
    values[55_555] = 2.0  # one spike up and one down: averaging or striding would lose both
    values[77_777] = -1.0
    points = [(float(i + 1), v) for i, v in enumerate(values)]
    svg = ET.fromstring(chart.control_chart([chart.Series(ROOT_ID, points, 0.5)], title="big", y_label="score"))
    drawn = _points(svg, ROOT_ID)
    assert len(drawn) <= 2 * chart.PLOT_WIDTH
    assert [x for x, _ in drawn] == sorted(x for x, _ in drawn)
    top, bottom = chart.MARGIN_TOP, chart.MARGIN_TOP + chart.PLOT_HEIGHT
    padding = 0.05 / 1.1 * chart.PLOT_HEIGHT  # the frame's 5 % above the highest value and below the lowest
    assert min(y for _, y in drawn) == pytest.approx(top + padding, abs=0.01)
    assert max(y for _, y in drawn) == pytest.approx(bottom - padding, abs=0.01)
    assert not list(svg.iter(f"{SVG}circle"))  # no dot per point at this size


def test_downsampling_keeps_each_columns_extremes_in_order() -> None:
    points = [(float(x), float(v)) for x, v in enumerate([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8])]
    # Columns of 11/3 dispatches: x 0-3, 4-7, 8-11; each keeps its lowest and highest, left to right.
    kept = chart.downsample(points, 0.0, 11.0, columns=3)
    assert kept == [(1.0, 1.0), (2.0, 4.0), (5.0, 9.0), (6.0, 2.0), (9.0, 3.0), (11.0, 8.0)]
    assert chart.downsample(points, 0.0, 11.0, columns=6) == points  # they fit: all drawn


@pytest.mark.parametrize(
    "points", [[], [(4.0, 0.7)], [(1.0, 0.3), (2.0, 0.3), (3.0, 0.3)], [(1.0, float("nan")), (2.0, 0.4)]]
)
def test_small_and_flat_charts_are_well_formed(points: list[tuple[float, float]]) -> None:
    text = chart.control_chart([chart.Series(ROOT_ID, points, 0.3 if points else None)], title="t", y_label="y")
    svg = ET.fromstring(text)
    assert "nan" not in text.lower() and "inf" not in text.lower()
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks and all(t is not None and t.strip() for t in ticks)
    drawn = _points(svg, ROOT_ID) if any(math.isfinite(v) for _, v in points) else []
    assert len(drawn) == sum(math.isfinite(v) for _, v in points)


def test_the_chart_is_deterministic_and_escapes_text() -> None:
    series = [chart.Series("n<1>&", [(1.0, 0.5), (3.0, 0.6)], 0.55), chart.Series(ROOT_ID, [(2.0, 0.4)])]
    markers = [chart.Marker(2.0, 'drift "n<1>&"')]
    first = chart.control_chart(series, markers, title="a <b> & c", y_label="y")
    assert first == chart.control_chart(series, markers, title="a <b> & c", y_label="y")
    svg = ET.fromstring(first)
    assert svg.findtext(f"{SVG}title") == "a <b> & c"
    assert [line.get("data-node") for line in svg.iter(f"{SVG}polyline")] == ["n<1>&", ROOT_ID]
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "drift-label"] == ['drift "n<1>&"']


def test_replay_accepts_a_confirmation_request_from_an_older_ledger() -> None:
    def journal(with_confirmation: bool) -> list[Event]:
        events = [
            Event(
                1,
                T0,
                "node_created",
                {"node_id": ROOT_ID, "parent_id": None, "change": None, "commit": "c", "params": {}, "origin": "root"},
            ),
            Event(
                2,
                T0,
                "node_created",
                {
                    "node_id": "n1",
                    "parent_id": ROOT_ID,
                    "change": None,
                    "commit": "c",
                    "params": {},
                    "origin": "search",
                },
            ),
            Event(3, T0, "seeds_requested", {"node_id": "n1", "seeds": [0, 1]}),
        ]
        if with_confirmation:
            events.append(
                Event(
                    4,
                    T0,
                    "confirmation_requested",
                    {"node_id": "n1", "seeds": [2], "reason": "crossed the boundary", "evidence": {"mean": 0.1}},
                )
            )
        events.append(Event(5, T0, "seeds_requested", {"node_id": "n1", "seeds": [2]}))
        return events

    old, new = SearchTree.replay(journal(True)), SearchTree.replay(journal(False))
    assert old.nodes == new.nodes and old.trials == new.trials
    assert old.nodes["n1"].seeds == [0, 1, 2] and old.last_seq == 5


def test_the_trials_table_has_each_trials_block_and_dispatch_order(tmp_path: Path) -> None:
    _, tree, journal = _campaign(tmp_path)
    ledger = Ledger(str(tmp_path / "ledger"), tmp_path / "journal.wal")
    for event in journal:
        ledger.append(event)
    ledger.close(trials=tree.trials)
    fs, root = open_filesystem(str(tmp_path / "ledger"))
    rows = {r["trial_id"]: (r["block"], r["started_order"]) for r in read_table(fs, root, "trials").to_pylist()}
    assert rows["n0-s0"] == (0, 0)
    assert rows["n1-s3"] == (1, 4) and rows["n0-s6"] == (4, 12)
    assert rows == {tid: (r.block, r.started_order) for tid, r in tree.trials.items()}


def test_trials_parts_written_before_the_block_columns_read_them_null(tmp_path: Path) -> None:
    fs, root = open_filesystem(str(tmp_path / "ledger"))
    fs.create_dir(f"{root}/trials", recursive=True)
    old = pa.table({"trial_id": ["n0-s0"], "seed": [0], "event_seq": [1]})
    pq.write_table(
        old.replace_schema_metadata({"arborist_schema_version": "2"}),
        f"{root}/trials/part-000000000001-000000000001.parquet",
        filesystem=fs,
    )
    (row,) = read_table(fs, root, "trials").to_pylist()
    assert row["trial_id"] == "n0-s0" and row["block"] is None and row["started_order"] is None
