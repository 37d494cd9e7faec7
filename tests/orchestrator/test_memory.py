"""The anti-repetition memory: exact (AST), structural and text levels, and the labelled pairs."""

from __future__ import annotations

import difflib
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.change import Change
from orchestrator.config import MemoryConfig
from orchestrator.memory import Memory
from orchestrator.memory_code import code_key

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
from bench_memory import load_pairs, scores


def _params(hypothesis: str = "", **kw: object) -> Change:
    name = next(iter(kw))
    return Change(kind="params", aspect=name, hypothesis=hypothesis or f"set {name} from 1 to {kw[name]}",
                  proposer="t", params=dict(kw))


def _code(diff: str = "", hypothesis: str = "h", aspect: str = "data") -> Change:
    diff = diff or f"+x = {hypothesis!r}\n"  # a diff of its own: these tests are about the hypothesis
    return Change(kind="code", aspect=aspect, hypothesis=hypothesis, proposer="t", diff=diff)


BASE = textwrap.dedent('''
    import numpy as np


    def fit(data, lr):
        """Fit the model."""
        total = 0.0
        for row in data:
            total += row * lr
        return total
''')


def _diff(before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), "a/m.py", "b/m.py"))


def _key(after: str) -> str:
    return code_key(_diff(BASE, after), {"m.py": (BASE, after)})


SCALED = BASE.replace("total += row * lr", "total += row * lr * 2")


def test_code_keys_ignore_comments_whitespace_renamed_locals_and_independent_order() -> None:
    reference = _key(SCALED)
    commented = SCALED.replace("total += row * lr * 2", "total += row*lr*2  # twice as strong")
    renamed = SCALED.replace("total", "acc")
    assert _key(commented) == reference
    assert _key(renamed) == reference
    # Two independent assignments added in either order are one change.
    a = BASE.replace("    total = 0.0\n", "    total = 0.0\n    scale = 2\n    offset = 1\n")
    b = BASE.replace("    total = 0.0\n", "    total = 0.0\n    offset = 1\n    scale = 2\n")
    assert _key(a) == _key(b)


def test_code_keys_tell_different_edits_apart() -> None:
    reference = _key(SCALED)
    assert _key(BASE.replace("total += row * lr", "total += row * lr * 3")) != reference
    assert _key(BASE.replace("total += row * lr", "total -= row * lr")) != reference
    # Dependent statements keep their order: swapping them is another program.
    a = BASE.replace("    total = 0.0\n", "    total = 0.0\n    scale = 2\n    scale = scale + 1\n")
    b = BASE.replace("    total = 0.0\n", "    total = 0.0\n    scale = scale + 1\n    scale = 2\n")
    assert _key(a) != _key(b)


def test_without_sources_the_diff_text_is_normalized() -> None:
    diff = "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    spaced = "--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n-x  =  1\n+x = 2   # faster\n+# why: faster\n"
    assert code_key(diff, None) == code_key(spaced, None)
    assert code_key(diff, None) != code_key(diff.replace("x = 2", "x = 3"), None)


def test_exact_duplicates_point_at_the_first_proposal() -> None:
    memory = Memory()
    memory.remember(memory.entry(_params(lr=0.1), "n0", {"lr": 1.0}), "p1")
    verdict = memory.check(memory.entry(_params(lr=0.1000000001), "n3", {"lr": 1.0}))
    assert verdict.kind == "exact" and verdict.duplicate_of == "p1" and "p1" in verdict.reason
    assert not memory.check(memory.entry(_params(alpha=0.1), "n0", {})).duplicate


def test_params_values_within_the_tolerance_are_one_change() -> None:
    memory = Memory(MemoryConfig(param_tolerance=0.05))
    memory.remember(memory.entry(_params(lr=0.0100), "n0", {"lr": 0.001}), "p1")
    near = memory.check(memory.entry(_params(lr=0.0102), "n0", {"lr": 0.001}))
    assert near.kind == "structural" and near.duplicate_of == "p1" and "within 5%" in near.reason
    # Bayesian exploration of clearly different values is not a repeat.
    assert not memory.check(memory.entry(_params(lr=0.02), "n0", {"lr": 0.001})).duplicate
    assert not memory.check(memory.entry(_params(lr=0.005), "n0", {"lr": 0.001})).duplicate


def test_the_same_move_on_the_same_parent_is_a_structural_duplicate() -> None:
    memory = Memory()
    first = _code(hypothesis="increase the hidden size to 128", aspect="architecture")
    memory.remember(memory.entry(first, "n2", {}), "p4")
    again = _code(hypothesis="a wider MLP: 256 hidden units", aspect="architecture")
    verdict = memory.check(memory.entry(again, "n2", {}))
    assert verdict.kind == "structural" and verdict.duplicate_of == "p4"
    # On another parent (after the incumbent moved) the same move is a new question.
    assert memory.check(memory.entry(again, "n5", {})).kind != "structural"


@pytest.mark.parametrize(
    ("first", "second", "duplicate"),
    [
        ("Use cosine annealing for the learning rate", "Switch the LR schedule to a cosine decay", True),
        ("Increase the learning rate", "Decrease the learning rate", False),  # opposite direction
        ("Increase the learning rate", "Increase the weight decay", False),  # another parameter
        ("Use a cosine learning rate schedule", "Use a step decay learning rate schedule", False),
    ],
)
def test_text_similarity_catches_paraphrases_not_near_misses(first: str, second: str, duplicate: bool) -> None:
    memory = Memory()
    memory.remember(memory.entry(_code(hypothesis=first, aspect="optimizer"), "n0", {}), "p1")
    verdict = memory.check(memory.entry(_code(hypothesis=second, aspect="optimizer"), "n1", {}))
    assert verdict.duplicate is duplicate, verdict
    if duplicate:
        assert verdict.kind == "text" and first in verdict.reason


def test_embeddings_catch_what_words_miss() -> None:
    # A deterministic embedding of the meaning: both sentences land on one vector.
    def embed(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0] if "ema" in t.lower() or "moving average" in t.lower() else [0.0, 1.0] for t in texts]

    memory = Memory(MemoryConfig(embedding_model="fake"), embed=embed)
    memory.remember(memory.entry(_code(hypothesis="Keep an EMA of the weights", aspect="other"), "n0", {}), "p1")
    verdict = memory.check(memory.entry(
        _code(hypothesis="Evaluate with a moving average of past parameters", aspect="other"), "n0", {}))
    assert verdict.kind == "embedding" and verdict.duplicate_of == "p1"
    # An embedder that is down leaves the lexical levels in charge.
    down = Memory(MemoryConfig(embedding_model="fake"), embed=lambda texts: [])
    down.remember(down.entry(_code(hypothesis="Keep an EMA of the weights"), "n0", {}), "p1")
    assert not down.check(down.entry(_code(hypothesis="Evaluate with a moving average"), "n0", {})).duplicate


def test_new_proposals_report_their_nearest_neighbour() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code(hypothesis="Use dropout in the hidden layer"), "n0", {}), "p1")
    other = _code(hypothesis="Tune the dropout probability by a validation sweep")
    verdict = memory.check(memory.entry(other, "n0", {}))
    assert not verdict.duplicate and verdict.nearest == "p1" and 0 < verdict.score < 0.4
    assert memory.similar("dropout in the hidden layer")[0][0] == "p1"


def test_labelled_pairs_hold_their_measured_quality() -> None:
    """Regression guard on the figures in docs/benchmarks.md (measured by scripts/bench_memory.py)."""
    pairs = load_pairs()
    everything = scores(pairs)
    assert everything["precision"] >= 0.95
    tuned = scores([p for p in pairs if p["split"] in ("dev", "test")])
    assert tuned["recall"] >= 0.85
    holdout = scores([p for p in pairs if p["split"] == "holdout"])
    assert holdout["precision"] >= 0.95 and holdout["recall"] >= 0.6
