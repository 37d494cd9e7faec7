"""Admission: screening as a value (admission.screen), and through the search service without Ray."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import admission
from orchestrator.admission import Admission, screen
from orchestrator.campaign import prepare
from orchestrator.change import Change
from orchestrator.config import CampaignConfig, load_config
from orchestrator.memory import Memory
from orchestrator.search import FINISHED, SearchService
from orchestrator.tree import ROOT_ID, Node
from tests.toy import bonus_diff, write_config
from trials.runner import run_trial
from trials.spec import TrialSpec


def test_an_oversized_diff_is_rejected_before_the_memory_reads_it_and_a_mode_change_is_noted(
    tmp_path: Path,
) -> None:
    (tmp_path / "huge.diff").write_text(
        "diff --git a/gen.py b/gen.py\nnew file mode 100644\n--- /dev/null\n+++ b/gen.py\n@@ -0,0 +1,100000 @@\n"
        + "".join(f"+x{i} = {i}\n" for i in range(100_000))
    )
    executable = bonus_diff("0.2").replace(
        "diff --git a/model.py b/model.py\n", "diff --git a/model.py b/model.py\nold mode 100644\nnew mode 100755\n"
    )
    queue = tmp_path / "big.yaml"
    queue.write_text(yaml.safe_dump([
        {"id": "huge", "aspect": "data", "hypothesis": "generated features", "diff_file": "huge.diff"},
        {"id": "exec", "aspect": "architecture", "hypothesis": "a larger bonus helps", "diff": executable},
    ], sort_keys=False))
    config = load_config(write_config(tmp_path, search={"proposers": [{"type": "queue", "path": str(queue)}]}))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    slowest = 0.0
    proposals: list[dict[str, object]] = []
    while len(proposals) < 2:
        started = time.perf_counter()
        dispatch = service.suggest()
        slowest = max(slowest, time.perf_counter() - started)
        assert dispatch != FINISHED and isinstance(dispatch, dict), "the campaign ended before both items were screened"
        spec = TrialSpec.from_dict(dispatch["spec"])
        assert service.complete(spec.trial_id, dispatch["token"], run_trial(spec, service.bundle_bytes).to_dict())
        proposals = [e.data for e in service.ledger.load_events() if e.type == "proposal"]
    service.close()

    by_source = {p["change"]["source_id"]: p for p in proposals}  # type: ignore[index]
    rejected = by_source["huge"]
    size = len((tmp_path / "huge.diff").read_bytes())
    assert rejected["verdict"] == "rejected"
    assert rejected["reason"] == (
        f"the diff is {size} bytes, more than limits.max_diff_bytes=200000; propose a smaller change "
        "that alters one aspect"
    )
    # The memory never built an entry for it: no key, no verdict.
    assert rejected["memory_key"] == "" and rejected["memory"] == {}
    assert slowest < 5.0, f"a suggest took {slowest:.1f} s"
    accepted = by_source["exec"]
    assert accepted["verdict"] == "accepted"
    assert accepted["notes"] == ["sets the executable bit of model.py (mode 100644 -> 100755)"]


# ----- admission.screen as a value ------------------------------------------------------------
PARAMS = {
    "x": {"type": "float", "low": 0.0, "high": 6.0, "default": 1.0},
    "layers": {"type": "int", "low": 1, "high": 8, "default": 2},
    "opt": {"type": "choice", "values": ["adam", "sgd"], "default": "adam"},
    "width": {"type": "choice", "values": [1, 2], "default": 1},
}


class _Workspace:
    """Says whether a code change applies; records what screening asked of it."""

    def __init__(self, problem: str = "") -> None:
        self.problem = problem
        self.asked: list[str] = []

    def check(self, parent: Node, change: Change) -> str:
        self.asked.append("check")
        return self.problem

    def sources(self, parent: Node, change: Change) -> dict[str, tuple[str, str]] | None:
        self.asked.append("sources")
        return None

    def commit(self, parent: Node, node_id: str, change: Change, params: dict[str, Any]) -> str:
        raise AssertionError("screening never makes a node")


@pytest.fixture
def config() -> CampaignConfig:
    return CampaignConfig.model_validate({
        "name": "screen", "project": "/nonexistent", "entrypoint": {"train": "true"},
        "metrics": {"score": {"direction": "max", "role": "objective"}},
        "params": PARAMS, "search": {"proposers": [{"type": "random"}]},
    })


def _root(config: CampaignConfig) -> Node:
    return Node(ROOT_ID, None, None, "c0", config.default_params(), [], "root")


def _params(**params: Any) -> Change:
    return Change(kind="params", aspect=next(iter(params)), hypothesis="h", proposer="queue", params=params)


def _code(diff: str, aspect: str = "architecture", proposer: str = "queue") -> Change:
    return Change(kind="code", aspect=aspect, hypothesis="a larger bonus helps", proposer=proposer, diff=diff)


def _screen(
    config: CampaignConfig, change: Change, memory: Memory | None = None, invalid: dict[str, str] | None = None,
    workspace: _Workspace | None = None,
) -> Admission:
    """Screen, and check that screening changed nothing: it only says what the engine should do."""
    memory = memory if memory is not None else Memory(config.memory)
    invalid = invalid if invalid is not None else {}
    remembered, invalid_before = len(memory), dict(invalid)
    verdict = screen(config, memory, invalid, workspace or _Workspace(), _root(config), change)
    assert len(memory) == remembered and invalid == invalid_before
    return verdict


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"x": 2.0, "layers": 3}, "changes 2 hyperparameters at once; a change alters exactly one hyperparameter"),
        ({"depth": 3}, "unknown hyperparameter 'depth': not declared in the config (declared: layers, opt, width, x)"),
        ({"x": 600.0}, "x=600.0 is outside [0.0, 6.0]"),
        ({"x": "three"}, "x='three' is outside [0.0, 6.0]: a number is expected"),
        ({"x": float("nan")}, "x=nan is outside [0.0, 6.0]: a number is expected"),
        ({"x": True}, "x=True is outside [0.0, 6.0]: a number is expected"),
        ({"layers": 2.5}, "layers=2.5 is not whole: an integer is expected"),
        ({"opt": "adagrad"}, "opt='adagrad' is not one of ['adam', 'sgd']"),
        ({"width": True}, "width=True is not one of [1, 2]"),
    ],
)
def test_an_invalid_params_change_is_rejected_and_only_its_key_is_blocked(
    config: CampaignConfig, params: dict[str, Any], reason: str
) -> None:
    verdict = _screen(config, _params(**params))
    assert not verdict.accepted and verdict.reason == reason
    assert verdict.invalid and verdict.remember is None and verdict.duplicate_of is None
    assert verdict.key.startswith("params:") and verdict.memory["kind"] == "new"  # the memory was asked first


def test_an_admissible_change_is_accepted_and_to_be_remembered(config: CampaignConfig) -> None:
    verdict = _screen(config, _params(layers=4))
    assert verdict.accepted and verdict.reason == "" and not verdict.invalid
    assert verdict.remember is not None and verdict.remember.key == verdict.key
    workspace = _Workspace()
    verdict = _screen(config, _code(bonus_diff("0.2")), workspace=workspace)
    assert verdict.accepted and verdict.notes == () and workspace.asked == ["sources", "check"]


def test_a_repeat_of_a_remembered_idea_is_a_duplicate(config: CampaignConfig) -> None:
    memory = Memory(config.memory)
    first = _screen(config, _params(x=2.0), memory)
    assert first.remember is not None
    memory.remember(first.remember, "p1")
    again = _screen(config, _params(x=2.0), memory)
    assert not again.accepted and again.duplicate_of == "p1" and again.reason.startswith("duplicate of p1: ")
    # Still remembered: a duplicate is an idea the memory has judged.
    assert again.remember is not None and not again.invalid
    assert again.memory["kind"] == "repeat" and again.memory["level"] == "exact"


def test_a_repeat_of_an_invalid_proposal_is_rejected_without_screening_it_again(config: CampaignConfig) -> None:
    first = _screen(config, _params(x=600.0))
    workspace = _Workspace()
    again = _screen(config, _params(x=600.0), invalid={first.key: "p3"}, workspace=workspace)
    assert again.reason == "repeats p3, which was rejected as invalid"
    assert again.remember is None and not again.invalid and again.duplicate_of is None


def test_an_oversized_diff_is_rejected_before_the_memory_or_the_workspace_reads_it(config: CampaignConfig) -> None:
    diff = "diff --git a/gen.py b/gen.py\n--- a/gen.py\n+++ b/gen.py\n@@ -0,0 +1,1 @@\n+" + "x" * 300_000 + "\n"
    workspace = _Workspace()
    verdict = _screen(config, _code(diff), workspace=workspace)
    assert verdict.reason.startswith("the diff is ") and "limits.max_diff_bytes=200000" in verdict.reason
    assert verdict.key == "" and verdict.memory == {} and verdict.remember is None and not verdict.invalid
    assert workspace.asked == []


@pytest.mark.parametrize(
    ("aspect", "reason"),
    [
        ("loss and data", "declares several aspects (data, loss); a change has exactly one aspect"),
        ("vibes", "aspect 'vibes' is not one of optimizer, lr_schedule, architecture, regularization, data, loss"),
    ],
)
def test_a_code_change_declares_one_known_aspect(config: CampaignConfig, aspect: str, reason: str) -> None:
    workspace = _Workspace()
    verdict = _screen(config, _code(bonus_diff("0.2"), aspect=aspect), workspace=workspace)
    assert verdict.reason.startswith(reason) and verdict.invalid
    assert "check" not in workspace.asked  # no git work for a change that breaks the rules anyway


def test_the_workspace_has_the_last_word_on_a_code_change(config: CampaignConfig) -> None:
    verdict = _screen(config, _code(bonus_diff("0.2")), workspace=_Workspace("the diff does not apply"))
    assert verdict.reason == "the diff does not apply" and verdict.invalid


def test_a_graft_is_not_judged_by_the_memory_and_may_combine_parameters(config: CampaignConfig) -> None:
    graft = Change(kind="params", aspect="integration", hypothesis="graft n3", proposer="integration",
                   params={"x": 2.0, "layers": 3})
    verdict = _screen(config, graft)
    assert verdict.accepted and verdict.key == "" and verdict.memory == {} and verdict.remember is None
    out_of_range = Change(kind="params", aspect="integration", hypothesis="graft n4", proposer="integration",
                          params={"x": 2.0, "layers": 30})
    assert _screen(config, out_of_range).reason == "layers=30 is outside [1.0, 8.0]"


def test_the_value_checks_are_shared_and_type_the_value_as_declared(config: CampaignConfig) -> None:
    spec = config.params
    assert admission.param_problem(spec, "x", 9.5, number=admission.compact) == "x=9.5 is outside [0, 6]"
    assert admission.value_fault(spec["layers"], 3.0) is None
    layers, x = admission.declared_value(spec["layers"], 3.0), admission.declared_value(spec["x"], 2)
    assert (layers, type(layers), x, type(x)) == (3, int, 2.0, float)
    assert admission.declared_value(spec["width"], 2) == 2
    several = admission.aspect_problem(["architecture", "loss"])
    assert several.startswith("declares several aspects (architecture, loss)")
    assert admission.aspect_problem(None) == (
        "missing aspect; use one of optimizer, lr_schedule, architecture, regularization, data, loss, other"
    )
    assert admission.aspect_problem("loss") == ""
