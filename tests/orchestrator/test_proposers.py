"""Proposers: each proposal is one change of one aspect; the queue file is checked with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.config import ParamConfig
from orchestrator.proposers.base import Outcome, ProposalContext
from orchestrator.proposers.params import GridSource, ParamsProposer, RandomSource, grid_values
from orchestrator.proposers.queue import QueueFileError, QueueProposer, load_queue
from tests.toy import queue_items

SPACE = {
    "lr": ParamConfig(type="float", low=1e-4, high=1e-1, log=True, default=1e-3),
    "layers": ParamConfig(type="int", low=1, high=4, default=2),
    "act": ParamConfig(type="choice", values=["relu", "tanh"], default="relu"),
}
PARENT = {"lr": 1e-3, "layers": 2, "act": "relu"}


def _context() -> ProposalContext:
    return ProposalContext(parent_id="n0", parent_params=dict(PARENT))


def test_random_proposals_change_exactly_one_param_within_its_domain() -> None:
    proposer = ParamsProposer("random", SPACE, RandomSource(SPACE, seed=1), seed=1, max_proposals=30)
    seen = set()
    while (change := proposer.propose(_context())) is not None:
        (name, value), = change.params.items()
        assert change.kind == "params" and change.aspect == name
        assert value != PARENT[name]
        spec = SPACE[name]
        if spec.type == "choice":
            assert value in (spec.values or [])
        else:
            assert spec.low is not None and spec.high is not None
            assert spec.low <= value <= spec.high
            assert isinstance(value, int) == (spec.type == "int")
        seen.add(name)
    assert seen == set(SPACE)
    assert proposer.exhausted()


def test_random_proposals_are_reproducible_and_restorable() -> None:
    first = ParamsProposer("random", SPACE, RandomSource(SPACE, seed=7), seed=7)
    a = [first.propose(_context()) for _ in range(6)]
    second = ParamsProposer("random", SPACE, RandomSource(SPACE, seed=7), seed=7)
    for change in a[:3]:
        assert change is not None
        second.restore(change)
    assert [second.propose(_context()) for _ in range(3)] == a[3:]


def test_grid_covers_each_axis_then_stops() -> None:
    proposer = ParamsProposer("grid", SPACE, GridSource(SPACE), seed=0)
    changes = []
    while (change := proposer.propose(_context())) is not None:
        changes.append(change)
    expected = sum(len([v for v in grid_values(s) if v != PARENT[n]]) for n, s in SPACE.items())
    assert len(changes) == expected
    assert grid_values(SPACE["layers"]) == [1, 2, 3, 4]


def test_observe_accepts_outcomes() -> None:
    proposer = ParamsProposer("random", SPACE, RandomSource(SPACE, seed=1), seed=1)
    change = proposer.propose(_context())
    assert change is not None
    proposer.observe(change, Outcome("PROMOTED", 0.1))


def _queue_file(tmp_path: Path, items: object) -> Path:
    path = tmp_path / "hypotheses.yaml"
    path.write_text(yaml.safe_dump(items, sort_keys=False))
    return path


def test_queue_proposes_items_in_order_and_picks_up_appended_ones(tmp_path: Path) -> None:
    items = queue_items()
    path = _queue_file(tmp_path, items[:2])
    proposer = QueueProposer([path])
    first = proposer.propose(_context())
    assert first is not None and first.source_id == "better" and first.kind == "code"
    assert first.diff.endswith("\n")
    second = proposer.propose(_context())
    assert second is not None and second.source_id == "extra"
    assert proposer.propose(_context()) is None and proposer.exhausted()
    path.write_text(yaml.safe_dump(items, sort_keys=False))  # a person appends while it runs
    assert not proposer.exhausted()
    third = proposer.propose(_context())
    assert third is not None and third.source_id == "worse"


def test_queue_restore_skips_consumed_items(tmp_path: Path) -> None:
    path = _queue_file(tmp_path, queue_items())
    first = QueueProposer([path]).propose(_context())
    assert first is not None
    resumed = QueueProposer([path])
    resumed.restore(first)
    nxt = resumed.propose(_context())
    assert nxt is not None and nxt.source_id == "extra"


def test_queue_params_item(tmp_path: Path) -> None:
    path = _queue_file(tmp_path, [{"id": "lr-up", "hypothesis": "more lr", "params": {"lr": 0.01}}])
    change = QueueProposer([path]).propose(_context())
    assert change is not None and change.kind == "params" and change.params == {"lr": 0.01}


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ({"id": "x"}, "YAML list"),
        ([{"hypothesis": "h", "diff": "d"}], "missing id"),
        ([{"id": "a", "hypothesis": "h"}], "exactly one of diff, diff_file or params"),
        ([{"id": "a", "hypothesis": "h", "params": {"lr": 1, "x": 2}}], "exactly one hyperparameter"),
        ([{"id": "a", "hypothesis": "h", "diff": "d"}], "needs an aspect"),
        ([{"id": "a", "hypothesis": "h", "aspect": "data", "diff_file": "nope.diff"}], "does not exist"),
        ([{"id": "a", "hypothesis": "h", "aspect": "data", "diff": "d"}] * 2, "duplicate id"),
    ],
)
def test_queue_file_errors_name_file_item_and_line(tmp_path: Path, items: object, words: str) -> None:
    path = _queue_file(tmp_path, items)
    with pytest.raises(QueueFileError) as info:
        load_queue(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_queue_file_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    path.write_text("- id: a\n  diff: [unclosed\n")
    with pytest.raises(QueueFileError, match=r"h.yaml:\d+: not valid YAML"):
        load_queue(path)
