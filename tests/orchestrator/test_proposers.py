"""Proposers: each proposal is one change of one aspect; the queue file is checked with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.change import DIRECTIONS, Change, Claim, read_claim
from orchestrator.config import ParamConfig
from orchestrator.proposers.base import FINISHED, NOTHING, Outcome, ProposalContext
from orchestrator.proposers.params import GridSource, ParamsProposer, RandomSource, grid_values
from orchestrator.proposers.queue import QueueFileError, QueueProposer, load_queue
from tests.toy import queue_items

SPACE = {
    "lr": ParamConfig(type="float", low=1e-4, high=1e-1, log=True, default=1e-3),
    "layers": ParamConfig(type="int", low=1, high=4, default=2),
    "act": ParamConfig(type="choice", values=["relu", "tanh"], default="relu"),
}
PARENT = {"lr": 1e-3, "layers": 2, "act": "relu"}
CODE_ITEM = {"id": "a", "hypothesis": "h", "aspect": "data", "diff": "d"}


def _context() -> ProposalContext:
    return ProposalContext(parent_id="n0", parent_params=dict(PARENT))


def test_random_proposals_change_exactly_one_param_within_its_domain() -> None:
    proposer = ParamsProposer("random", SPACE, RandomSource(SPACE, seed=1), seed=1, max_proposals=30)
    seen = set()
    while isinstance(change := proposer.propose(_context()), Change):
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
        # The claim follows from the delta and the parent: the parameter, from and to.
        assert change.claim is not None
        assert (change.claim.knob, change.claim.before, change.claim.after) == (name, PARENT[name], value)
        expected = "set" if spec.type == "choice" else "up" if value > PARENT[name] else "down"
        assert change.claim.direction == expected
        seen.add(name)
    assert seen == set(SPACE)
    assert change is FINISHED


def test_random_proposals_are_reproducible_and_restorable() -> None:
    first = ParamsProposer("random", SPACE, RandomSource(SPACE, seed=7), seed=7)
    a = [first.propose(_context()) for _ in range(6)]
    second = ParamsProposer("random", SPACE, RandomSource(SPACE, seed=7), seed=7)
    for change in a[:3]:
        assert isinstance(change, Change)
        second.restore(change)
    assert [second.propose(_context()) for _ in range(3)] == a[3:]


def test_grid_covers_each_axis_then_stops() -> None:
    proposer = ParamsProposer("grid", SPACE, GridSource(SPACE), seed=0)
    changes = []
    while isinstance(change := proposer.propose(_context()), Change):
        changes.append(change)
    assert change is FINISHED
    expected = sum(len([v for v in grid_values(s) if v != PARENT[n]]) for n, s in SPACE.items())
    assert len(changes) == expected
    assert grid_values(SPACE["layers"]) == [1, 2, 3, 4]


def test_observe_accepts_outcomes() -> None:
    proposer = ParamsProposer("random", SPACE, RandomSource(SPACE, seed=1), seed=1)
    change = proposer.propose(_context())
    assert isinstance(change, Change)
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
    assert isinstance(first, Change) and first.source_id == "better" and first.kind == "code"
    assert first.diff.endswith("\n")
    second = proposer.propose(_context())
    assert isinstance(second, Change) and second.source_id == "extra"
    assert proposer.propose(_context()) is NOTHING  # not FINISHED: a person may append more
    path.write_text(yaml.safe_dump(items, sort_keys=False))  # a person appends while it runs
    third = proposer.propose(_context())
    assert isinstance(third, Change) and third.source_id == "worse"


def test_queue_restore_skips_consumed_items(tmp_path: Path) -> None:
    path = _queue_file(tmp_path, queue_items())
    first = QueueProposer([path]).propose(_context())
    assert isinstance(first, Change)
    resumed = QueueProposer([path])
    resumed.restore(first)
    nxt = resumed.propose(_context())
    assert isinstance(nxt, Change) and nxt.source_id == "extra"


def test_queue_params_item(tmp_path: Path) -> None:
    path = _queue_file(tmp_path, [{"id": "lr-up", "hypothesis": "more lr", "params": {"lr": 0.01}}])
    change = QueueProposer([path]).propose(_context())
    assert isinstance(change, Change) and change.kind == "params" and change.params == {"lr": 0.01}


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
        ([{**CODE_ITEM, "claim": "more data"}], "claim must be a mapping"),
        ([{**CODE_ITEM, "claim": {"knob": "rows", "direction": "more"}}], "claim.direction 'more' is not one of"),
        ([{**CODE_ITEM, "claim": {"knob": "rows", "form": 1}}], "unknown field(s) form"),
        ([{"id": "a", "hypothesis": "h", "params": {"lr": 0.01}, "claim": {"knob": "layers"}}],
         "claim.knob 'layers' is not the parameter the change sets (lr)"),
        ([{"id": "a", "hypothesis": "h", "params": {"lr": 0.01}, "claim": {"knob": "lr", "to": 0.1}}],
         "claim.to 0.1 is not the value the change sets"),
    ],
)
def test_queue_file_errors_name_file_item_and_line(tmp_path: Path, items: object, words: str) -> None:
    path = _queue_file(tmp_path, items)
    with pytest.raises(QueueFileError) as info:
        load_queue(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_a_bad_claim_is_named_by_file_line_and_item(tmp_path: Path) -> None:
    path = _queue_file(tmp_path, [
        {"id": "fine", "aspect": "data", "hypothesis": "h", "diff": "d", "claim": {"knob": "rows", "direction": "up"}},
        {"id": "bad", "aspect": "data", "hypothesis": "h", "diff": "d", "claim": {"knob": "rows", "direction": "more"}},
    ])
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "id: bad" in text)
    with pytest.raises(QueueFileError, match=rf"hypotheses.yaml:{line}: item 1 \(bad\): claim.direction 'more'"):
        load_queue(path)


def test_queue_items_carry_their_claims(tmp_path: Path) -> None:
    path = _queue_file(tmp_path, [
        {"id": "bonus", "aspect": "architecture", "hypothesis": "a larger bonus", "diff": "d",
         "claim": {"knob": "Model Bonus", "from": 0.0, "to": 0.2, "direction": "up", "scope": "model"}},
        {"id": "plain", "aspect": "data", "hypothesis": "an extra feature helps", "diff": "d"},
        {"id": "lr", "hypothesis": "a larger step", "params": {"lr": 0.01}},
        {"id": "act", "hypothesis": "smoother", "params": {"act": "tanh"}, "claim": {"knob": "act", "scope": "mlp"}},
    ])
    proposer = QueueProposer([path])
    bonus, plain, lr, act = (proposer.propose(_context()) for _ in range(4))
    assert isinstance(bonus, Change) and bonus.claim == Claim("model_bonus", 0.0, 0.2, "up", "model")
    assert isinstance(plain, Change) and plain.claim is None  # said nothing: read from the hypothesis
    assert isinstance(lr, Change) and lr.claim == Claim("lr", 1e-3, 0.01, "up")  # derived from the parent
    assert isinstance(act, Change) and act.claim == Claim("act", "relu", "tanh", "set", "mlp")
    # The claim travels with the change through the journal.
    assert Change.from_dict(bonus.to_dict()) == bonus


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"knob": ""}, "claim.knob must be a non-empty name"),
        ({"knob": "x" * 65}, "a knob is a name of at most 64"),
        ({"knob": "lr", "from": [1, 2]}, "claim.from must be a number, a short text, true/false or null"),
        ({"knob": "lr", "to": float("nan")}, "claim.to must be a finite number"),
        ({"knob": "lr", "to": "y" * 201}, "claim.to is text of more than 200"),
        ({"knob": "lr", "direction": "sideways"}, f"not one of {', '.join(DIRECTIONS)}"),
        ({"knob": "lr", "scope": 3}, "claim.scope must be a short text"),
        (["lr", "up"], "claim must be a mapping"),
    ],
)
def test_invalid_claims_say_what_is_wrong(raw: object, words: str) -> None:
    claim, problem = read_claim(raw)
    assert claim is None and words in problem


def test_a_params_claim_must_match_its_delta_and_is_derived() -> None:
    parent = {"lr": 1e-3, "flag": True}
    assert read_claim(None, delta={"lr": 1e-4}, parent_params=parent) == (Claim("lr", 1e-3, 1e-4, "down"), "")
    # What the proposal said of from and direction gives way to the parent and the delta.
    claim, problem = read_claim({"knob": "lr", "from": 5.0, "to": 1e-4, "direction": "up"}, delta={"lr": 1e-4},
                                parent_params=parent)
    assert problem == "" and claim == Claim("lr", 1e-3, 1e-4, "down")
    # A flag is not the number 1.
    assert "not the value" in read_claim({"knob": "flag", "to": 1}, delta={"flag": True}, parent_params=parent)[1]


def test_queue_file_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    path.write_text("- id: a\n  diff: [unclosed\n")
    with pytest.raises(QueueFileError, match=r"h.yaml:\d+: not valid YAML"):
        load_queue(path)
