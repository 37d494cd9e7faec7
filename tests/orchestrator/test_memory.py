"""The anti-repetition memory: its levels in order, verdicts, reasons, and the API the engine uses."""

from __future__ import annotations

import difflib
import json
import textwrap

import pytest

from orchestrator.change import Change, Claim
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
def test_the_same_params_delta_on_the_same_parent_is_a_repeat_and_elsewhere_a_revisit() -> None:
    memory = Memory()
    memory.remember(memory.entry(_params(lr=0.1), "n0", {"lr": 1.0}), "p1", "n1")
    again = memory.check(memory.entry(_params(lr=0.1000000001), "n0", {"lr": 1.0}))
    assert again.kind == "repeat" and again.level == "exact" and again.duplicate_of == "p1" and again.score == 1.0
    assert again.reason.startswith("repeats p1 (") and "lr=0.1" in again.reason
    # After the incumbent moved (another parent), the same delta is a revisit: allowed, linked.
    elsewhere = memory.check(memory.entry(_params(lr=0.1), "n3", {"lr": 1.0}))
    assert elsewhere.kind == "revisit" and elsewhere.earlier == "p1" and not elsewhere.duplicate
    assert elsewhere.duplicate_of is None and "tried on n0, now on n3" in elsewhere.reason
    assert memory.check(memory.entry(_params(alpha=0.1), "n0", {})).kind == "new"


def test_a_change_already_in_the_parent_is_a_repeat_wherever_it_is_proposed() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Use GELU instead of ReLU", "architecture"), "n0", {}), "p1", "n1")
    # n1 (made by p1) is an ancestor of n4: GELU is already there.
    verdict = memory.check(memory.entry(_code("Swap ReLU for GELU", "architecture"), "n4", {}, lineage=["n1", "n4"]))
    assert verdict.kind == "repeat" and "already in n4" in verdict.reason


def test_exact_code_duplicates_through_the_ast() -> None:
    memory = Memory()
    first, first_sources = _sources(BASE.replace("total += row * lr", "total += row * lr * 2"))
    memory.remember(memory.entry(_code("Double the step", diff=first), "n0", {}, first_sources), "p1")
    # Another hypothesis, other local names and a comment: the same edit.
    again = BASE.replace("total += row * lr", "total += row * lr * 2  # stronger").replace("total", "acc")
    diff, sources = _sources(again)
    verdict = memory.check(memory.entry(_code("Scale the updates", diff=diff), "n0", {}, sources))
    assert verdict.kind == "repeat" and verdict.level == "exact" and "Double the step" in verdict.reason


def test_a_key_given_for_replay_is_used_as_is() -> None:
    memory = Memory()
    entry = memory.entry(_code("Anything", diff="+x = 1\n"), "n0", {}, key="code:abc")
    assert entry.key == "code:abc"
    memory.remember(entry, "p1")
    verdict = memory.check(memory.entry(_code("Else", diff="+y = 2\n"), "n0", {}, key="code:abc"))
    assert verdict.kind == "repeat" and verdict.level == "exact"


# ----- failures ------------------------------------------------------------------------------
def test_a_change_whose_trial_failed_may_be_retried_once_on_its_parent() -> None:
    memory = Memory(MemoryConfig(max_retries=1))
    memory.remember(memory.entry(_code("Train with MXFP8 matmuls via torchao"), "n0", {}), "p1", "n1")
    memory.failed("n1")
    retry = memory.entry(_code("Train with MXFP8 matmuls via torchao (kernels rebuilt)"), "n0", {})
    first = memory.check(retry)
    assert first.kind == "revisit" and "a retry after its trial failed" in first.reason
    memory.remember(retry, "p2", "n2", earlier=first.earlier)
    memory.failed("n2")
    assert memory.check(memory.entry(_code("Train with MXFP8 matmuls via torchao again"), "n0", {})).kind == "repeat"
    # A tried (not failed) change is not retried.
    memory.remember(memory.entry(_code("Use label smoothing of 0.1", "loss"), "n0", {}), "p3", "n3")
    assert memory.check(memory.entry(_code("Label smoothing 0.1", "loss"), "n0", {})).kind == "repeat"


# ----- claims: values decide -----------------------------------------------------------------
def test_params_values_within_the_tolerance_are_one_value_and_others_a_sweep() -> None:
    memory = Memory(MemoryConfig(param_tolerance=0.05))
    memory.remember(memory.entry(_params(lr=0.0100), "n0", {"lr": 0.001}), "p1")
    near = memory.check(memory.entry(_params(lr=0.0102), "n0", {"lr": 0.001}))
    assert near.kind == "repeat" and near.level == "claims" and near.duplicate_of == "p1"
    step = memory.check(memory.entry(_params(lr=0.02), "n0", {"lr": 0.001}))
    assert step.kind == "sweep-step" and step.earlier == "p1" and step.sweep == ("p1",) and step.knob == "lr"
    assert "another step on lr: 0.02 after 0.01" in step.reason and not step.duplicate
    memory.remember(memory.entry(_params(lr=0.02), "n0", {"lr": 0.001}), "p2")
    third = memory.check(memory.entry(_params(lr=0.0095 / 2), "n0", {"lr": 0.001}))
    assert third.kind == "sweep-step" and third.sweep == ("p1", "p2") and "step 3" in third.reason
    # Negative and zero values are compared on a linear scale.
    memory.remember(memory.entry(_params(shift=-1.0), "n0", {}), "p3")
    assert memory.check(memory.entry(_params(shift=-1.04), "n0", {})).kind == "repeat"
    assert memory.check(memory.entry(_params(shift=1.0), "n0", {})).kind == "sweep-step"


def test_params_deltas_of_several_values_and_non_numeric_values() -> None:
    memory = Memory()

    def delta(**params: object) -> Change:
        return Change(kind="params", aspect="opt", hypothesis="set opt", proposer="t", params=dict(params))

    memory.remember(memory.entry(delta(opt="adam", lr=0.01), "n0", {}), "p1")
    assert memory.check(memory.entry(delta(opt="adam", lr=0.0101), "n0", {})).kind == "repeat"
    assert memory.check(memory.entry(delta(opt="sgd", lr=0.01), "n0", {})).kind == "sweep-step"


def test_no_tolerance_leaves_only_equal_values_the_same() -> None:
    memory = Memory(MemoryConfig(param_tolerance=0.0))
    memory.remember(memory.entry(_params(lr=0.0100), "n0", {}), "p1")
    assert memory.check(memory.entry(_params(lr=0.0100001), "n0", {})).kind == "sweep-step"


@pytest.mark.parametrize(("first", "second"), [
    ("A 0.0 to 0.05", "A 0.05 to 0.03"),
    ("depth 12->10", "depth 4->3"),
    ("x=6", "x=9"),
    ("TOTAL_BATCH_SIZE 2^14", "TOTAL_BATCH_SIZE 2^13"),
    ("batch 65K->32K", "batch 8K"),
    ("MATRIX_LR 0.03→0.04 (hypothesis: faster convergence)", "MATRIX_LR 0.04→0.05 (hypothesis: even faster)"),
    ("softcap 30 to 15", "softcap from 15 to 10"),
    ("Increase the learning rate", "Decrease the learning rate"),
])
def test_another_value_of_the_same_knob_is_a_sweep_step(first: str, second: str) -> None:
    memory = Memory()
    memory.remember(memory.entry(_code(first), "n0", {}), "p1")
    verdict = memory.check(memory.entry(_code(second), "n0", {}))
    assert verdict.kind == "sweep-step" and verdict.earlier == "p1", verdict


@pytest.mark.parametrize(("first", "second"), [
    ("TOTAL_BATCH_SIZE 2^16", "TOTAL_BATCH_SIZE=65536"),
    ("batch size 64K", "batch_size: 65536"),
    ("WARMDOWN_RATIO 0.4→0.3: val_bpb 1.28→1.30 WORSE", "warmdown ratio from 0.4 to 0.3 (retry; loss 3.1 -> 2.9)"),
    ("halve the batch size", "batch size x0.5"),
])
def test_the_same_value_in_another_notation_is_the_same_change(first: str, second: str) -> None:
    memory = Memory(notes=["val_bpb"])
    memory.remember(memory.entry(_code(first), "n0", {}), "p1")
    verdict = memory.check(memory.entry(_code(second), "n0", {}))
    assert verdict.kind == "repeat" and verdict.earlier == "p1", verdict


def test_knobs_with_a_name_of_their_own_are_not_one_knob() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("MATRIX_LR 0.03 -> 0.04"), "n0", {}), "p1")
    for other in ("EMBEDDING_LR 0.03 -> 0.04", "FINAL_LR_FRAC 0.03 -> 0.04", "UNEMBEDDING_LR 0.03 -> 0.04"):
        assert memory.check(memory.entry(_code(other), "n0", {})).kind == "new", other


def test_a_claim_the_proposer_stated_is_used_as_given() -> None:
    memory = Memory()
    said = Change(kind="code", aspect="optimizer", hypothesis="A bolder optimizer setting", proposer="t",
                  claim=Claim("muon_momentum", 0.95, 0.97, "up"))
    memory.remember(memory.entry(said, "n0", {}), "p1")
    assert memory.check(memory.entry(_code("muon momentum 0.95 -> 0.99"), "n0", {})).kind == "sweep-step"
    assert memory.check(memory.entry(_code("muon_momentum=0.97"), "n0", {})).kind == "repeat"


# ----- structure -----------------------------------------------------------------------------
def test_the_same_move_in_other_words_is_one_change() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Increase the hidden size", "architecture"), "n2", {}), "p4")
    again = _code("A wider MLP", "architecture")
    verdict = memory.check(memory.entry(again, "n2", {}))
    assert verdict.kind == "repeat" and verdict.duplicate_of == "p4" and "width" in verdict.reason
    # On another parent (after the incumbent moved) the same move is a revisit.
    assert memory.check(memory.entry(again, "n5", {})).kind == "revisit"
    # The opposite move is another step; the same move on another knob is new.
    assert memory.check(memory.entry(_code("Shrink the hidden size", "architecture"), "n2", {})).kind == "sweep-step"
    assert memory.check(memory.entry(_code("Increase the number of layers", "architecture"), "n2", {})).kind == "new"


def test_structural_duplicates_need_the_same_code_when_sources_tell() -> None:
    memory = Memory(MemoryConfig(text_threshold=1.0, ngram_threshold=1.0))  # the text level would catch these
    in_train, train_sources = _sources(BASE.replace("total += row * lr", "total += row * lr * 2"))
    memory.remember(memory.entry(_code("Increase the learning rate", diff=in_train), "n0", {}, train_sources), "p1")
    in_eval, eval_sources = _sources(BASE.replace("return sum(data)", "return sum(data) * 2"))
    elsewhere = memory.entry(_code("Raise the learning rate", diff=in_eval), "n0", {}, eval_sources)
    assert elsewhere.touched == {"m.py:evaluate"}
    assert memory.check(elsewhere).kind == "new"
    same_place, sources = _sources(BASE.replace("total += row * lr", "total += row * lr * 3"))
    verdict = memory.check(memory.entry(_code("Raise the learning rate", diff=same_place), "n0", {}, sources))
    assert verdict.kind == "repeat" and verdict.level == "structure"


def test_structure_can_be_switched_off() -> None:
    memory = Memory(MemoryConfig(structural=False, text_threshold=1.0, ngram_threshold=1.0))
    memory.remember(memory.entry(_code("Increase the hidden size", "architecture"), "n2", {}), "p4")
    assert memory.check(memory.entry(_code("A wider MLP", "architecture"), "n2", {})).kind == "new"


# ----- text ----------------------------------------------------------------------------------
def test_a_paraphrase_is_caught_by_the_text_level() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Use AdamW instead of SGD"), "n0", {}), "p1")
    verdict = memory.check(memory.entry(
        _code("Switch the optimizer from plain SGD to AdamW with decoupled weight decay", "regularization"), "n0", {}))
    assert verdict.kind == "repeat" and verdict.level == "text" and verdict.duplicate_of == "p1"
    assert verdict.score >= 0.45
    assert verdict.reason.startswith("repeats p1 ('Use AdamW instead of SGD'): the hypotheses say the same")


def test_wording_no_vocabulary_knows_is_caught_by_character_ngrams() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Zeroth-order SPSA perturbation estimator with antithetic pairs"), "n0", {}),
                    "p1")
    verdict = memory.check(memory.entry(_code("antithetic-pair SPSA zeroth order perturbation estimate"), "n0", {}))
    assert verdict.kind == "repeat" and verdict.level == "text" and "n-gram" in verdict.reason
    assert memory.check(memory.entry(_code("Rademacher probes for the Hutchinson trace estimate"), "n0", {})).kind == (
        "new")


def test_abbreviations_the_campaign_defines_are_read_as_their_long_form() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Add value embeddings (VE) on alternate layers"), "n0", {}), "p1")
    assert memory.abbreviations.known == {"VE": "value embeddings"}
    verdict = memory.check(memory.entry(_code("VE on alternate layers"), "n0", {}))
    assert verdict.kind == "repeat" and verdict.earlier == "p1"


def test_result_notes_do_not_make_two_changes_alike() -> None:
    memory = Memory(notes=["val_bpb"])
    note = ": val_bpb 1.283 -> 1.295 WORSE. Smaller batch hurts convergence without improving throughput at all."
    memory.remember(memory.entry(_code("Switch the attention to sliding windows" + note), "n0", {}), "p1")
    verdict = memory.check(memory.entry(_code("Tie the input and output embeddings" + note), "n0", {}))
    assert verdict.kind == "new"


def test_near_misses_are_not_duplicates() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Increase the learning rate to 3e-3"), "n0", {}), "p1")
    opposite = memory.check(memory.entry(_code("Decrease the learning rate to 3e-4"), "n1", {}))
    other_parameter = memory.check(memory.entry(_code("Increase the momentum to 0.95"), "n1", {}))
    assert opposite.kind == "sweep-step" and other_parameter.kind == "new"
    memory.remember(memory.entry(_code("Use a cosine learning rate schedule", "lr_schedule"), "n0", {}), "p2")
    step = _code("Use a step decay learning rate schedule", "lr_schedule")
    assert memory.check(memory.entry(step, "n1", {})).kind == "new"


def test_generated_params_hypotheses_are_not_compared_as_text() -> None:
    memory = Memory()
    memory.remember(memory.entry(_params(lr=0.01), "n0", {"lr": 0.001}), "p1")
    assert memory.entry(_params(lr=0.05), "n0", {}).text is None
    assert memory.check(memory.entry(_params(lr=0.05), "n0", {})).kind == "sweep-step"


def test_params_with_a_written_hypothesis_meet_code_changes_not_other_values() -> None:
    memory = Memory()
    memory.remember(memory.entry(_params("Raise the learning rate to speed up convergence", lr=0.01), "n0", {}), "p1")
    # Another value of the same knob is another experiment, whatever its hypothesis says.
    assert memory.check(memory.entry(_params("Raise the learning rate a bit more", lr=0.03), "n0", {})).kind == (
        "sweep-step")
    # A code change that makes the same move is a repeat of the params change.
    verdict = memory.check(memory.entry(_code("Use a higher learning rate in train.py"), "n0", {}))
    assert verdict.kind == "repeat" and verdict.duplicate_of == "p1"
    assert memory.describe("p1") == "lr=0.01: Raise the learning rate to speed up convergence"


def test_a_new_proposal_reports_its_nearest_neighbour() -> None:
    memory = Memory()
    memory.remember(memory.entry(_code("Add dropout to the hidden layer", "regularization"), "n0", {}), "p1")
    memory.remember(memory.entry(_code("Use label smoothing", "loss"), "n0", {}), "p2")
    verdict = memory.check(memory.entry(_code("Tune the dropout probability by a validation sweep"), "n0", {}))
    assert verdict.kind == "new" and verdict.nearest == "p1" and 0 < verdict.score < 0.45 and verdict.reason == ""
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
    assert verdict.kind == "repeat" and verdict.level == "embedding" and verdict.duplicate_of == "p1"
    assert verdict.score >= 0.9
    assert "mean the same" in verdict.reason


def test_embeddings_keep_the_gates() -> None:
    memory = Memory(MemoryConfig(embedding_model="fake"), embed=_meaning)
    memory.remember(memory.entry(_code("Increase the learning rate"), "n0", {}), "p1")
    # Cosine 1.0 with the fake model, but the opposite move on the same target: not a repeat.
    assert memory.check(memory.entry(_code("Decrease the learning rate"), "n1", {})).kind == "sweep-step"


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
    assert set(data) == {"kind", "earlier", "score", "reason", "nearest", "level", "sweep", "knob"}
    assert data["kind"] == "revisit" and data["earlier"] == "p1"
    assert memory.describe("p1") == "Use GELU instead of ReLU" and memory.describe("p9") == ""


def test_long_hypotheses_are_quoted_briefly() -> None:
    memory = Memory()
    long = "Add dropout to the hidden layers " + "because the model overfits " * 10
    memory.remember(memory.entry(_code(long, "regularization"), "n0", {}), "p1")
    assert len(memory.describe("p1")) == 120 and memory.describe("p1").endswith("…")
