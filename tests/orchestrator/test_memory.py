"""The anti-repetition memory: its levels in order, verdicts, reasons, and the API the engine uses."""

from __future__ import annotations

import difflib
import json
import textwrap

from orchestrator.change import Change
from orchestrator.config import MemoryConfig
from orchestrator.memory import Memory


def _params(hypothesis: str = "", **kw: object) -> Change:
    name = next(iter(kw))
    return Change(kind="params", aspect=name, hypothesis=hypothesis or f"set {name} from 1 to {kw[name]}",
                  proposer="t", params=dict(kw))


def _code(hypothesis: str, aspect: str = "optimizer", diff: str = "") -> Change:
    return Change(kind="code", aspect=aspect, hypothesis=hypothesis, proposer="t", diff=diff)


BASE = textwrap.dedent('''
    def train(data, lr):
        total = 0.0
        for row in data:
            total += row * lr
        return total


    def evaluate(data):
        return sum(data)
''')


def _sources(after: str) -> tuple[str, dict[str, tuple[str, str]]]:
    diff = "".join(difflib.unified_diff(BASE.splitlines(True), after.splitlines(True), "a/m.py", "b/m.py"))
    return diff, {"m.py": (BASE, after)}


# ----- exact ---------------------------------------------------------------------------------
def test_exact_params_duplicates_point_at_the_first_proposal() -> None:
    memory = Memory()
    memory.remember(memory.entry(_params(lr=0.1), "n0", {"lr": 1.0}), "p1")
    verdict = memory.check(memory.entry(_params(lr=0.1000000001), "n3", {"lr": 1.0}))
    assert verdict.kind == "exact" and verdict.duplicate_of == "p1" and verdict.score == 1.0
    assert verdict.reason.startswith("repeats p1 (") and "lr=0.1" in verdict.reason
    assert not memory.check(memory.entry(_params(alpha=0.1), "n0", {})).duplicate


def test_exact_code_duplicates_through_the_ast() -> None:
    memory = Memory()
    first, first_sources = _sources(BASE.replace("total += row * lr", "total += row * lr * 2"))
    memory.remember(memory.entry(_code("Double the step", diff=first), "n0", {}, first_sources), "p1")
    # Another hypothesis, other local names and a comment: the same edit.
    again = BASE.replace("total += row * lr", "total += row * lr * 2  # stronger").replace("total", "acc")
    diff, sources = _sources(again)
    verdict = memory.check(memory.entry(_code("Scale the updates", diff=diff), "n0", {}, sources))
    assert verdict.kind == "exact" and verdict.duplicate_of == "p1" and "Double the step" in verdict.reason


def test_a_key_given_for_replay_is_used_as_is() -> None:
    memory = Memory()
    entry = memory.entry(_code("Anything", diff="+x = 1\n"), "n0", {}, key="code:abc")
    assert entry.key == "code:abc"
    memory.remember(entry, "p1")
    assert memory.check(memory.entry(_code("Else", diff="+y = 2\n"), "n4", {}, key="code:abc")).kind == "exact"


# ----- structural ----------------------------------------------------------------------------
def test_params_values_within_the_tolerance_are_one_change() -> None:
    memory = Memory(MemoryConfig(param_tolerance=0.05))
    memory.remember(memory.entry(_params(lr=0.0100), "n0", {"lr": 0.001}), "p1")
    near = memory.check(memory.entry(_params(lr=0.0102), "n0", {"lr": 0.001}))
    assert near.kind == "structural" and near.duplicate_of == "p1" and "within 5%" in near.reason
    assert "up from the parent" in near.reason
    # Bayesian exploration of clearly different values is not a repeat.
    assert not memory.check(memory.entry(_params(lr=0.02), "n0", {"lr": 0.001})).duplicate
    assert not memory.check(memory.entry(_params(lr=0.0095), "n0", {"lr": 0.001})).duplicate
    # Negative and zero values are compared on a linear scale.
    memory.remember(memory.entry(_params(shift=-1.0), "n0", {}), "p2")
    assert memory.check(memory.entry(_params(shift=-1.04), "n0", {})).kind == "structural"
    assert not memory.check(memory.entry(_params(shift=1.0), "n0", {})).duplicate


def test_params_deltas_of_several_values_and_non_numeric_values() -> None:
    memory = Memory()
    def delta(**params: object) -> Change:
        return Change(kind="params", aspect="opt", hypothesis="set opt", proposer="t", params=dict(params))

    memory.remember(memory.entry(delta(opt="adam", lr=0.01), "n0", {}), "p1")
    assert memory.check(memory.entry(delta(opt="adam", lr=0.0101), "n0", {})).kind == "structural"
    assert not memory.check(memory.entry(delta(opt="sgd", lr=0.01), "n0", {})).duplicate


def test_no_tolerance_leaves_params_to_the_exact_level() -> None:
    memory = Memory(MemoryConfig(param_tolerance=0.0))
    memory.remember(memory.entry(_params(lr=0.0100), "n0", {}), "p1")
    assert not memory.check(memory.entry(_params(lr=0.0100001), "n0", {})).duplicate


def test_the_same_move_on_the_same_parent_is_a_structural_duplicate() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Increase the hidden size to 128", "architecture"), "n2", {}), "p4")
    again = _code("A wider MLP: 256 hidden units", "architecture")
    verdict = memory.check(memory.entry(again, "n2", {}))
    assert verdict.kind == "structural" and verdict.duplicate_of == "p4"
    assert "the same move on n2" in verdict.reason and "width" in verdict.reason
    # On another parent (after the incumbent moved) the same move is not a structural repeat.
    assert memory.check(memory.entry(again, "n5", {})).kind != "structural"
    # Nor is the opposite move, or the same move on another knob.
    assert not memory.check(memory.entry(_code("Shrink the hidden size to 32", "architecture"), "n2", {})).duplicate
    assert not memory.check(memory.entry(_code("Increase the number of layers", "architecture"), "n2", {})).duplicate


def test_structural_duplicates_need_the_same_code_when_sources_tell() -> None:
    memory = Memory(MemoryConfig(text_threshold=1.0))  # the text level would catch these: look at structure
    in_train, train_sources = _sources(BASE.replace("total += row * lr", "total += row * lr * 2"))
    memory.remember(memory.entry(_code("Increase the learning rate", diff=in_train), "n0", {}, train_sources), "p1")
    in_eval, eval_sources = _sources(BASE.replace("return sum(data)", "return sum(data) * 2"))
    elsewhere = memory.entry(_code("Raise the learning rate", diff=in_eval), "n0", {}, eval_sources)
    assert elsewhere.touched == {"m.py:evaluate"}
    assert memory.check(elsewhere).kind != "structural"
    same_place, sources = _sources(BASE.replace("total += row * lr", "total += row * lr * 3"))
    assert memory.check(memory.entry(_code("Raise the learning rate", diff=same_place), "n0", {}, sources)).kind == (
        "structural")


def test_structure_can_be_switched_off() -> None:
    memory = Memory(MemoryConfig(structural=False, text_threshold=1.0))
    memory.remember(memory.entry(_code("Increase the hidden size to 128", "architecture"), "n2", {}), "p4")
    assert not memory.check(memory.entry(_code("A wider MLP: 256 hidden units", "architecture"), "n2", {})).duplicate
    memory.remember(memory.entry(_params(lr=0.0100), "n0", {}), "p1")
    assert not memory.check(memory.entry(_params(lr=0.0102), "n0", {})).duplicate


# ----- text ----------------------------------------------------------------------------------
def test_a_paraphrase_is_caught_by_the_text_level() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Use AdamW instead of SGD"), "n0", {}), "p1")
    verdict = memory.check(memory.entry(
        _code("Switch the optimizer from plain SGD to AdamW with decoupled weight decay", "regularization"), "n3", {}))
    assert verdict.kind == "text" and verdict.duplicate_of == "p1" and verdict.score >= 0.45
    assert verdict.reason.startswith("repeats p1 ('Use AdamW instead of SGD'): the hypotheses say the same")


def test_near_misses_are_not_duplicates() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Increase the learning rate to 3e-3"), "n0", {}), "p1")
    opposite = memory.check(memory.entry(_code("Decrease the learning rate to 3e-4"), "n1", {}))
    other_parameter = memory.check(memory.entry(_code("Increase the momentum to 0.95"), "n1", {}))
    assert not opposite.duplicate and not other_parameter.duplicate
    memory.remember(memory.entry(_code("Use a cosine learning rate schedule", "lr_schedule"), "n0", {}), "p2")
    step = _code("Use a step decay learning rate schedule", "lr_schedule")
    assert not memory.check(memory.entry(step, "n1", {})).duplicate


def test_generated_params_hypotheses_are_not_compared_as_text() -> None:
    memory = Memory()
    memory.remember(memory.entry(_params(lr=0.01), "n0", {"lr": 0.001}), "p1")
    assert memory.entry(_params(lr=0.05), "n0", {}).text is None
    assert not memory.check(memory.entry(_params(lr=0.05), "n0", {})).duplicate


def test_params_with_a_written_hypothesis_meet_code_changes_not_other_values() -> None:
    memory = Memory()
    memory.remember(memory.entry(_params("Raise the learning rate to speed up convergence", lr=0.01), "n0", {}), "p1")
    # Another value of the same knob is another experiment, whatever its hypothesis says.
    assert not memory.check(memory.entry(_params("Raise the learning rate a bit more", lr=0.03), "n0", {})).duplicate
    # A code change that makes the same move is a repeat of the params change.
    verdict = memory.check(memory.entry(_code("Use a higher learning rate in train.py"), "n0", {}))
    assert verdict.kind == "text" and verdict.duplicate_of == "p1"
    assert memory.describe("p1") == "lr=0.01: Raise the learning rate to speed up convergence"


def test_a_new_proposal_reports_its_nearest_neighbour() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Add dropout to the hidden layer", "regularization"), "n0", {}), "p1")
    memory.remember(memory.entry(_code("Use label smoothing", "loss"), "n0", {}), "p2")
    verdict = memory.check(memory.entry(_code("Tune the dropout probability by a validation sweep"), "n0", {}))
    assert not verdict.duplicate and verdict.nearest == "p1" and 0 < verdict.score < 0.45 and verdict.reason == ""
    assert memory.similar("dropout in the hidden layer")[0][0] == "p1"
    assert memory.similar("something else entirely") == []


# ----- embedding -----------------------------------------------------------------------------
def _meaning(texts: list[str]) -> list[list[float]]:
    """A deterministic stand-in for an embedding model: one axis per idea it knows."""
    ideas = (("ema", "moving average"), ("learning rate",), ("dropout",))
    return [[1.0 if any(w in t.lower() for w in words) else 0.0 for words in ideas] + [0.1] for t in texts]


def test_embeddings_catch_what_words_miss() -> None:
    memory = Memory(MemoryConfig(embedding_model="fake"), embed=_meaning)
    memory.remember(memory.entry(_code("Keep an EMA of the weights", "other"), "n0", {}), "p1")
    verdict = memory.check(memory.entry(_code("Evaluate with a moving average of past parameters", "other"), "n0", {}))
    assert verdict.kind == "embedding" and verdict.duplicate_of == "p1" and verdict.score >= 0.9
    assert "mean the same" in verdict.reason


def test_embeddings_keep_the_gates() -> None:
    memory = Memory(MemoryConfig(embedding_model="fake"), embed=_meaning)
    memory.remember(memory.entry(_code("Increase the learning rate"), "n0", {}), "p1")
    # Cosine 1.0 with the fake model, but the opposite move on the same target: not a repeat.
    assert not memory.check(memory.entry(_code("Decrease the learning rate"), "n1", {})).duplicate


def test_an_embedder_that_is_down_leaves_the_lexical_levels_in_charge() -> None:
    calls: list[list[str]] = []

    def down(texts: list[str]) -> list[list[float]]:
        calls.append(texts)
        return []

    memory = Memory(MemoryConfig(embedding_model="fake"), embed=down)
    memory.remember(memory.entry(_code("Keep an EMA of the weights", "other"), "n0", {}), "p1")
    assert not memory.check(memory.entry(_code("Evaluate with a moving average", "other"), "n0", {})).duplicate
    assert calls  # it was asked


def test_each_hypothesis_is_embedded_once() -> None:
    calls: list[str] = []

    def counting(texts: list[str]) -> list[list[float]]:
        calls.extend(texts)
        return _meaning(texts)

    memory = Memory(MemoryConfig(embedding_model="fake"), embed=counting)
    memory.remember(memory.entry(_code("Keep an EMA of the weights", "other"), "n0", {}), "p1")
    entry = memory.entry(_code("Add dropout to the head", "regularization"), "n0", {})
    memory.check(entry)
    memory.remember(entry, "p2")
    assert calls.count("Add dropout to the head") == 1


# ----- the API -------------------------------------------------------------------------------
def test_verdicts_are_json_safe_and_remembering_twice_is_harmless() -> None:
    memory = Memory()
    entry = memory.entry(_code("Use GELU instead of ReLU", "architecture"), "n0", {})
    first = memory.check(entry)
    assert first.kind == "new" and first.duplicate_of is None and not first.duplicate
    memory.remember(entry, "p1")
    memory.remember(entry, "p1")
    assert len(memory) == 1
    verdict = memory.check(memory.entry(_code("Swap the ReLU nonlinearity for GELU", "architecture"), "n1", {}))
    data = verdict.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"kind", "duplicate_of", "score", "reason", "nearest"}
    assert memory.describe("p1") == "Use GELU instead of ReLU" and memory.describe("p9") == ""


def test_long_hypotheses_are_quoted_briefly() -> None:
    memory = Memory()
    long = "Add dropout to the hidden layers " + "because the model overfits " * 10
    memory.remember(memory.entry(_code(long, "regularization"), "n0", {}), "p1")
    assert len(memory.describe("p1")) == 120 and memory.describe("p1").endswith("…")
