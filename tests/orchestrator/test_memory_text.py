"""Lexical similarity of hypotheses: what a hypothesis changes, which way, and the labelled pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrator.memory.lexicon import stem
from orchestrator.memory.text import analyze, conflict, similarity

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
from bench_memory import load_pairs, scores


def test_targets_replacements_and_directions() -> None:
    text = analyze("Switch the optimizer from SGD to AdamW")
    assert text.targets == {"adamw"} and text.replaced == {"sgd"} and text.direction == "replace"
    text = analyze("Use GELU instead of ReLU")
    assert text.targets == {"gelu"} and text.replaced == {"relu"}
    assert analyze("Raise the learning rate from 1e-3 to 3e-3").direction == "up"
    assert analyze("Use a weaker weight decay (1e-5 instead of 1e-4)").direction == "down"
    assert analyze("Use 1e-5 weight decay instead of 1e-4").direction == "down"  # from the numbers
    assert analyze("Remove dropout entirely").direction == "remove"
    assert analyze("Set the dropout probability to zero").direction == "remove"


def test_the_clause_that_says_what_to_do_decides() -> None:
    # A reason names other things; the action clause holds the target.
    text = analyze("Images vary a lot in brightness; standardize each image by its own mean and std")
    assert text.targets == {"per_image"}
    text = analyze("The loss oscillates heavily, so lower the learning rate")
    assert text.targets == {"lr"} and text.direction == "down"
    # A purpose is not a move: "to reduce overfitting" does not make this a decrease.
    text = analyze("Add dropout of 0.3 to reduce overfitting")
    assert text.targets == {"dropout"} and text.direction == "add"
    # Nor is a prediction.
    assert analyze("A wider hidden layer should reduce the training loss").direction == "up"


def test_context_is_not_a_target() -> None:
    text = analyze("Add cosine annealing of the learning rate")
    assert text.targets == {"cosine"} and "lr" in text.context
    text = analyze("Add weight decay to the Adam optimizer")
    assert text.targets == {"weight_decay"} and "adam" in text.context
    text = analyze("Add one more Linear+ReLU block")  # what the new layer is made of is part of the idea
    assert text.targets == {"depth"} and text.direction == "up"


def test_gates() -> None:
    assert conflict(analyze("Increase the learning rate"), analyze("Decrease the learning rate")) == (
        "opposite directions")
    assert conflict(analyze("Increase dropout"), analyze("Increase weight decay")) == "other targets"
    assert conflict(analyze("Switch from SGD to Adam"), analyze("Switch from SGD to AdamW")) == "other targets"
    assert conflict(analyze("Clip the gradients by global norm"), analyze("Clip the gradients by value")) == (
        "other alternatives")
    assert conflict(analyze("Add dropout to the attention weights"), analyze("Add dropout to the hidden layers")) == (
        "other places")
    assert conflict(analyze("Use AdamW instead of SGD"), analyze("Replace SGD with AdamW")) == ""


def test_similarity_is_one_only_for_the_same_words() -> None:
    same = analyze("Use label smoothing of 0.1")
    assert similarity(same, analyze("use label smoothing of 0.1")) == 1.0
    assert 0.45 <= similarity(same, analyze("Add label smoothing (0.1) to the cross-entropy loss")) < 1.0


def test_stemming_is_light_and_symmetric() -> None:
    assert stem("shuffling") == stem("shuffle") == stem("shuffled")
    assert stem("normalisation") == stem("normalization") == stem("normalize")
    assert stem("layers") == stem("layer") and stem("classes") == "class" and stem("loss") == "loss"


def test_odd_inputs_do_not_break_the_analysis() -> None:
    for text in ("", "   ", "???", "x" * 5000, "1e-3 → 3e-3 ±5%", "ÄÖÜ über-schnell", "a; ; , : b", "C=0.1 (C)"):
        analyze(text)


# ----- the labelled pairs --------------------------------------------------------------------
# Measured by scripts/bench_memory.py (docs/benchmarks.md). These floors guard against a
# regression; the target (recall >= 0.90 at precision >= 0.95 on test) is not met.
def test_labelled_pairs_hold_their_measured_quality() -> None:
    pairs = load_pairs()
    assert len(pairs) >= 200
    assert {p["split"] for p in pairs} == {"dev", "test"}
    dev = scores([p for p in pairs if p["split"] == "dev"])
    test = scores([p for p in pairs if p["split"] == "test"])
    assert dev["precision"] >= 0.97 and dev["recall"] >= 0.72, dev
    assert test["precision"] >= 0.93 and test["recall"] >= 0.49, test


@pytest.mark.xfail(strict=True, reason="the lexical and n-gram levels reach recall 0.500 at precision 0.941 on "
                   "test, at thresholds chosen on real logs (docs/benchmarks.md); an embedding model is the way "
                   "to the target")
def test_labelled_pairs_meet_the_target_on_the_test_split() -> None:
    test = scores([p for p in load_pairs() if p["split"] == "test"])
    assert test["precision"] >= 0.95 and test["recall"] >= 0.90, test
