"""The contract every proposer type keeps, checked on every type in the registry.

Each type is built the way a campaign builds it (its registered builder, from a config) with real
parts: a hypotheses file for the queue, a tiny params space, Optuna through Ray Tune's
OptunaSearch for bayes and hybrid (no Ray cluster needed), and for the LLM types the drafting
service talking HTTP through litellm to a scripted server on loopback. A type registered later is
checked too: the cases come from the registry. Its spec is SPEC below (every field a type may
read); a type that needs more sets it in SPEC_FOR.

The contract:
- propose answers a Change or a Signal (NOTHING, WAIT, FINISHED); once FINISHED, always FINISHED;
- a change changes one aspect: a params change exactly one declared key, within its domain and
  not the parent's value; a code change a non-empty diff of one known aspect;
- a change carries a valid claim (a params change's follows from its delta and the parent);
- name is set, and is what its changes name as their proposer;
- observe accepts every outcome (PROMOTED, PRUNED, FAILED, REJECTED, SUSPECT, UNDECIDED);
- drain_events returns (type, data) pairs that JSON can carry to the journal;
- two instances built alike propose the same sequence;
- restore(change) keeps a fresh instance from proposing that change again.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.campaign import prepare
from orchestrator.change import DIRECTIONS, Change, claim_dict, read_claim
from orchestrator.config import ASPECTS, CampaignConfig, ConfigError, ParamConfig, load_config
from orchestrator.engine import FINISHED as DONE
from orchestrator.engine import SearchEngine
from orchestrator.proposers import registry
from orchestrator.proposers.base import (
    FINISHED,
    NOTHING,
    WAIT,
    Answer,
    Outcome,
    ProposalContext,
    Proposer,
    ProposerEvent,
    Signal,
)
from orchestrator.proposers.service import DraftService
from orchestrator.simulator import METRIC, Scenario, sim_config
from orchestrator.tree import ROOT_ID, Event, Node, Phase, SearchTree
from tests.llm_server import ScriptedLLMServer, Step
from tests.toy import bonus_diff, extra_diff, train_diff, write_config
from tests.waiting import wait_for
from trials.spec import TrialResult, TrialState

TYPES = registry.known_types()
SPACE: dict[str, dict[str, Any]] = {
    "x": {"type": "float", "low": 0.0, "high": 6.0, "default": 1.0},
    "layers": {"type": "int", "low": 1, "high": 4, "default": 2},
    "act": {"type": "choice", "values": ["relu", "tanh"], "default": "relu"},
}
# Every field a built-in type reads; the small numbers make each type reach its interesting
# states (FINISHED, a hybrid's switches both ways) within a few proposals.
SPEC: dict[str, Any] = {"max_proposals": 10, "k": 2, "ready": 2, "max_repairs": 0, "stall_after": 1,
                        "fallback_after": 1}
SPEC_FOR: dict[str, dict[str, Any]] = {
    "queue": {"path": "contract-queue.yaml"},
    # Four scripted LLM calls at most (the parent never changes), two proposals each: a cap
    # below that is reached, so FINISHED is seen.
    "llm_params": {"max_proposals": 6},
    "llm_code": {"max_proposals": 6},
}
ROUNDS = 12  # changes asked of one instance at most
OUTCOMES = (
    Outcome("PROMOTED", 0.1),
    Outcome("PRUNED", -0.05, "no gain"),
    Outcome("FAILED", None, "the trial failed at stage run"),
    Outcome("REJECTED", None, "does not apply to the parent's files"),
    Outcome("SUSPECT", 9.0, "a gain of 90 sigma is implausible"),
    Outcome("UNDECIDED", 0.01, "still under test when the search stopped"),
)
KEY_ENV = "ARBORIST_TEST_LLM_KEY"

QUEUE = [
    {"id": "bonus", "aspect": "architecture", "hypothesis": "a larger bonus helps", "diff": bonus_diff("0.2"),
     "claim": {"knob": "bonus", "from": 0.0, "to": 0.2, "direction": "up", "scope": "model"}},
    {"id": "x-up", "hypothesis": "a larger x", "params": {"x": 2.5}},
    {"id": "extra", "aspect": "data", "hypothesis": "an extra feature helps", "diff": extra_diff("0.1"),
     "claim": {"knob": "extra_feature", "direction": "add", "scope": "features"}},
    {"id": "tanh", "hypothesis": "a smoother activation", "params": {"act": "tanh"},
     "claim": {"knob": "act", "to": "tanh", "scope": "mlp"}},
    {"id": "penalty", "aspect": "loss", "hypothesis": "a penalty hurts",
     "diff": train_diff("+ shared + own\n", "+ shared + own - 0.2\n"),
     "claim": {"knob": "score_penalty", "from": 0.0, "to": -0.2, "direction": "down"}},
    {"id": "deeper", "hypothesis": "more layers", "params": {"layers": 3}},
]


# ----- building instances with real parts --------------------------------------------------
def _drafter(body: dict[str, Any], call: int) -> str:
    """The scripted LLM: batch `call` of two new proposals, code or params as the prompt asks."""
    system = body["messages"][0]["content"]
    proposals: list[dict[str, Any]] = []
    for j in (1, 2):
        if "training code" in system:
            value = f"0.{call}{j}"
            proposals.append({
                "aspect": "architecture", "hypothesis": f"raise the model bonus to {value}", "diff": bonus_diff(value),
                "claim": {"knob": "bonus", "from": 0.0, "to": float(value), "direction": "up", "scope": "model"},
            })
        else:
            x = 1.0 + 0.25 * (2 * call - 2 + j)
            proposals.append({"param": "x", "value": x, "hypothesis": f"x near {x} scores better",
                              "claim": {"knob": "x", "from": 1.0, "to": x, "direction": "up", "scope": ""}})
    return json.dumps({"proposals": proposals})


@dataclass
class Built:
    proposer: Proposer
    context: ProposalContext
    config: CampaignConfig


class Factory:
    """Instances of one type, each in its own folder, with its own LLM server and drafting service."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._count = 0
        self._closers: list[Callable[[], None]] = []

    def build(self, type_: str) -> Built:
        from cluster.tune import make_suggester  # Optuna through Tune's OptunaSearch: no Ray cluster

        self._count += 1
        root = self._root / f"instance-{self._count}"
        server = ScriptedLLMServer()
        server.start()
        self._closers.append(server.stop)
        calls = itertools.count(1)
        server.default = Step(handler=lambda body: _drafter(body, next(calls)))
        root.mkdir(parents=True)
        (root / "contract-queue.yaml").write_text(yaml.safe_dump(QUEUE, sort_keys=False))
        spec = {"type": type_, **SPEC, **SPEC_FOR.get(type_, {})}
        if "path" in spec:
            spec["path"] = str(root / spec["path"])
        config = load_config(write_config(
            root, params=SPACE, search={"proposers": [spec]},
            llm={"model": "openai/scripted", "api_base": server.url, "api_key_env": KEY_ENV, "max_retries": 0,
                 "backoff_s": 0.0, "timeout_s": 10, "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
        ))
        commit = ""
        if type_ in registry.llm_types():
            commit = prepare(config, None)["snapshot_commit"]  # the repository code drafts are checked on
        drafts = DraftService(config.model_dump(mode="json"))
        self._closers.append(drafts.close)
        (proposer,) = registry.build_proposers(config, make_suggester, drafts)
        context = ProposalContext(parent_id=ROOT_ID, parent_params=config.default_params(), parent_commit=commit)
        return Built(proposer, context, config)

    def close(self) -> None:
        for close in reversed(self._closers):
            close()


# ----- driving one instance ----------------------------------------------------------------
@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)  # every answer, WAITs included
    changes: list[Change] = field(default_factory=list)
    events: list[ProposerEvent] = field(default_factory=list)
    after_finished: list[Answer] = field(default_factory=list)  # asked again once FINISHED

    @property
    def settled(self) -> list[Answer]:
        """The answers without the WAITs, whose number depends on how fast the LLM replies."""
        return [a for a in self.answers if a is not WAIT]


def _settle(built: Built, run: Run) -> Answer:
    """Ask until the answer is not WAIT: a WAIT promises that an answer is being prepared."""

    def answered() -> bool:
        run.answers.append(built.proposer.propose(built.context))
        run.events.extend(built.proposer.drain_events())
        return run.answers[-1] is not WAIT

    if not answered():
        wait_for(answered, f"{built.proposer.name} to answer other than WAIT", seen=lambda: run.answers[-3:],
                 every_s=0.02)
    return run.answers[-1]


def drive(built: Built, run: Run | None = None) -> Run:
    """Ask for up to ROUNDS changes, observing each with the next outcome of OUTCOMES in turn;
    stop at NOTHING (the context never changes) or FINISHED (then ask a few times more)."""
    run = run or Run()
    while len(run.changes) < ROUNDS:
        answer = _settle(built, run)
        if isinstance(answer, Change):
            built.proposer.observe(answer, OUTCOMES[len(run.changes) % len(OUTCOMES)])
            run.changes.append(answer)
            run.events.extend(built.proposer.drain_events())
            continue
        if answer is FINISHED:
            run.after_finished = [built.proposer.propose(built.context) for _ in range(3)]
        break
    return run


@dataclass
class Contract:
    type_: str
    first: Built
    run: Run  # the first instance's proposals
    again: Run  # a second instance built alike
    restored: list[Change]  # the first half of `run`, restored into a third instance
    resumed: Run  # what that third instance proposed then


@pytest.fixture(scope="module", params=TYPES)
def contract(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Contract]:
    type_ = str(request.param)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, "sk-test-contract")
        factory = Factory(tmp_path_factory.mktemp(f"contract-{type_}"))
        try:
            first = factory.build(type_)
            run = drive(first)
            again = drive(factory.build(type_))
            third = factory.build(type_)
            restored = run.changes[: len(run.changes) // 2]
            for i, change in enumerate(restored):  # as the engine replays a journal
                third.proposer.restore(change)
                third.proposer.observe(change, OUTCOMES[i % len(OUTCOMES)])
            third.proposer.drain_events()  # replay's events are in the journal already
            yield Contract(type_, first, run, again, restored, drive(third))
        finally:
            factory.close()


# ----- the contract --------------------------------------------------------------------------
def test_the_setup_exercises_the_proposer(contract: Contract) -> None:
    # A change for every outcome of OUTCOMES, so each was observed.
    assert len(contract.run.changes) >= len(OUTCOMES), contract.run.answers


def test_answers_are_changes_or_signals(contract: Contract) -> None:
    for run in (contract.run, contract.again, contract.resumed):
        for answer in run.answers + run.after_finished:
            assert isinstance(answer, Change | Signal), answer


def test_once_finished_always_finished(contract: Contract) -> None:
    for run in (contract.run, contract.again, contract.resumed):
        if FINISHED in run.answers:
            assert run.answers[-1] is FINISHED and run.after_finished == [FINISHED] * 3


def test_every_change_changes_one_aspect_and_claims_it(contract: Contract) -> None:
    context = contract.first.context
    space = contract.first.config.params
    for change in contract.run.changes + contract.again.changes + contract.resumed.changes:
        assert change.proposer == contract.first.proposer.name
        assert change.claim is not None, change
        assert change.claim.direction in ("", *DIRECTIONS)
        if change.kind == "params":
            ((param, value),) = change.params.items()
            assert change.aspect == param and not change.diff
            assert _in_domain(space[param], value) and value != context.parent_params[param], change
            # The claim is the delta's: the parameter, the parent's value, the new one.
            assert read_claim(claim_dict(change.claim), delta=change.params, parent_params=context.parent_params) \
                == (change.claim, "")
            assert (change.claim.knob, change.claim.before, change.claim.after) == \
                (param, context.parent_params[param], value)
        else:
            assert change.kind == "code" and change.aspect in ASPECTS and not change.params
            assert change.diff.strip() and change.diff.endswith("\n")
            assert read_claim(claim_dict(change.claim)) == (change.claim, "")


def test_name_is_set(contract: Contract) -> None:
    # One proposer of its type in the config: it is named after the type.
    assert contract.first.proposer.name == contract.type_


def test_events_can_be_journaled(contract: Contract) -> None:
    for run in (contract.run, contract.again, contract.resumed):
        for event in run.events:
            assert isinstance(event, tuple) and len(event) == 2
            type_, data = event
            assert isinstance(type_, str) and type_ and isinstance(data, dict)
            assert json.loads(json.dumps(data)) == data


def test_two_instances_built_alike_propose_the_same_sequence(contract: Contract) -> None:
    assert contract.again.settled == contract.run.settled


def test_restore_keeps_a_fresh_instance_from_proposing_a_change_again(contract: Contract) -> None:
    assert contract.restored, "nothing to restore: the setup got no change"
    restored = {change.source_id: change for change in contract.restored}
    for change in contract.resumed.changes:
        assert change.source_id not in restored and change not in contract.restored, change


def _in_domain(spec: ParamConfig, value: Any) -> bool:
    if spec.type == "choice":
        return any(isinstance(v, bool) == isinstance(value, bool) and v == value for v in spec.values or [])
    assert spec.low is not None and spec.high is not None
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    whole = spec.type != "int" or isinstance(value, int)
    return number and whole and spec.low <= value <= spec.high


# ----- the registry ----------------------------------------------------------------------------
def test_an_unknown_type_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    path = write_config(tmp_path, search={"proposers": [{"type": "bayesian"}]})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "unknown proposer type 'bayesian'" in message
    assert all(type_ in message for type_ in TYPES)


class _Echo(Proposer):
    """A proposer a project could add: it sets the parameter `x` to each of its values in turn."""

    def __init__(self, name: str, values: list[float]) -> None:
        self.name = name
        self._values = values

    def propose(self, context: ProposalContext) -> Answer:
        if not self._values:
            return FINISHED
        return Change(kind="params", aspect="x", hypothesis="echo", proposer=self.name,
                      params={"x": self._values.pop(0)})


def test_a_registered_type_is_configured_and_built_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the new type lives in this test only

    @registry.register("echo")
    def _echo(parts: registry.Parts) -> Proposer:
        return _Echo(parts.name, [2.0, 3.0])

    assert registry.known_types()[-1] == "echo"
    config = load_config(write_config(tmp_path, search={"proposers": [{"type": "echo"}, {"type": "echo"}]}))
    first, second = registry.build_proposers(config, None)
    assert (first.name, second.name) == ("echo", "echo-1")
    with pytest.raises(ValueError, match="registered already"):
        registry.register("echo")(_echo)


# ----- how the search reads the answers ------------------------------------------------------
class _Scripted(Proposer):
    """Answers from a list (the last one repeats), counting how often it is asked."""

    def __init__(self, name: str, answers: list[Answer]) -> None:
        self.name = name
        self._answers = answers
        self.asked = 0

    def propose(self, context: ProposalContext) -> Answer:
        self.asked += 1
        return self._answers[min(self.asked, len(self._answers)) - 1]


class _NoWorkspace:
    """The baseline needs no workspace: these tests admit no change."""

    def check(self, parent: Node, change: Change) -> str:
        raise AssertionError("no change is admitted here")

    def commit(self, parent: Node, node_id: str, change: Change, params: dict[str, Any]) -> str:
        raise AssertionError("no change is admitted here")

    def sources(self, parent: Node, change: Change) -> dict[str, tuple[str, str]] | None:
        raise AssertionError("no change is admitted here")


def _searching(proposers: list[Proposer], events: list[Event]) -> SearchEngine:
    """An engine that has measured its baseline and asked the proposers once."""
    config = sim_config(Scenario(name="signals", budget=50))
    engine = SearchEngine(config, SearchTree(sink=events.append, clock=lambda: 0.0), proposers, _NoWorkspace())
    engine.start({}, "root")
    seed = itertools.count()
    while engine.tree.phase is Phase.BASELINE:
        dispatch = engine.next_trial()
        assert dispatch is not None and not isinstance(dispatch, str)
        record = dispatch.record
        result = TrialResult(record.trial_id, record.node_id, record.seed, TrialState.COMPLETE,
                             metrics={METRIC: 1.0 + 0.01 * next(seed)})
        engine.record_result(record.trial_id, dispatch.token, result.to_dict())
    return engine


def test_the_search_waits_while_a_proposer_waits_and_ends_when_none_has_anything() -> None:
    waiting = _Scripted("drafting", [WAIT, WAIT, NOTHING])
    done = _Scripted("done", [FINISHED])
    engine = _searching([done, waiting], [])
    assert engine.tree.phase is Phase.SEARCH and waiting.asked == 1  # WAIT, with nothing running: it waits
    assert engine.next_trial() is None and engine.tree.phase is Phase.SEARCH and waiting.asked == 2
    assert engine.next_trial() == DONE  # NOTHING from every proposer, nothing running: the search ends
    assert "no proposer has anything left to try" in (engine.tree.finished_reason or "")
    assert done.asked == 1  # once FINISHED, never asked again


def test_a_broken_proposer_counts_as_nothing() -> None:
    class Broken(Proposer):
        name = "broken"

        def propose(self, context: ProposalContext) -> Answer:
            raise ValueError("the hypotheses file is not valid YAML")

    events: list[Event] = []
    engine = _searching([Broken()], events)
    assert engine.tree.phase is Phase.DONE
    notes = [e.data["message"] for e in events if e.type == "note"]
    assert any(re.search(r"proposer broken skipped: .*not valid YAML", m) for m in notes), notes
