"""Results the search service takes: only from a trial dispatched in this session, with its
token, and only once they make sense; everything else leaves the tree as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign import prepare
from orchestrator.config import load_config
from orchestrator.engine import MAX_REFUSAL_NOTES
from orchestrator.search import SearchService
from orchestrator.tree import Event
from tests.toy import write_config
from trials.runner import run_trial
from trials.spec import Fingerprint, TrialResult, TrialSpec, TrialState


@pytest.fixture
def service(tmp_path: Path) -> SearchService:
    config = load_config(write_config(tmp_path))
    return SearchService(config.model_dump(mode="json"), prepare(config, None))


def dispatch(service: SearchService) -> tuple[str, str, dict[str, Any]]:
    """The next trial handed out: its id, its token and its spec."""
    handed = service.suggest()
    assert isinstance(handed, dict), handed
    return handed["spec"]["trial_id"], handed["token"], handed["spec"]


def promotable(trial_id: str, node_id: str = "n0", seed: int = 0) -> dict[str, Any]:
    """A result a forger would want recorded: far better than anything the toy can score."""
    return TrialResult(trial_id, node_id, seed, TrialState.COMPLETE, metrics={"score": 99.0, "size": 1.0},
                       finished_at=1.0).to_dict()


def notes(service: SearchService) -> list[str]:
    return [e.data["message"] for e in service.ledger.load_events() if e.type == "note"]


def finished(events: list[Event]) -> list[str]:
    return [e.data["result"]["trial_id"] for e in events if e.type == "trial_finished"]


def test_forged_results_change_nothing_and_the_genuine_one_is_recorded_once(service: SearchService) -> None:
    first, first_token, first_spec = dispatch(service)
    second, second_token, _ = dispatch(service)
    pending = next(r for r in service.tree.trials.values() if r.state is TrialState.PENDING)
    seq = service.tree.last_seq
    forgeries: list[tuple[str, Any, str]] = [
        (pending.trial_id, "0" * 32, "it is not running in this session"),  # never dispatched
        (first, "0" * 32, "the token does not match its dispatch"),
        (first, second_token, "the token does not match its dispatch"),  # a token replayed from another trial
        (first, None, "the token does not match its dispatch"),
        ("n7-s1", first_token, "no such trial in this campaign"),
    ]
    for trial_id, token, _ in forgeries:
        record = service.tree.trials.get(trial_id)
        assert not service.complete(trial_id, token, promotable(trial_id, record.node_id if record else "n7"))
    assert service.tree.trials[pending.trial_id].state is TrialState.PENDING
    assert service.tree.trials[first].state is TrialState.RUNNING
    assert service.tree.trials[second].state is TrialState.RUNNING
    new = [e for e in service.ledger.load_events() if e.seq > seq]
    assert [e.type for e in new] == ["note"] * len(forgeries), "a refused result changed the tree"
    for event, (trial_id, _, why) in zip(new, forgeries, strict=True):
        assert event.data["message"].startswith(f"refused a result for trial '{trial_id}': {why}")
        assert "0" * 32 not in event.data["message"] and second_token not in event.data["message"]

    genuine = run_trial(TrialSpec.from_dict(first_spec), service.bundle_bytes)
    assert genuine.state is TrialState.COMPLETE
    assert service.complete(first, first_token, genuine.to_dict())
    quiet = service.tree.last_seq
    # Ray retries a call whose reply it lost: the same report again is taken once, silently.
    assert not service.complete(first, first_token, genuine.to_dict())
    assert service.tree.last_seq == quiet
    # A forger who learns a finished trial's id cannot overwrite its result.
    assert not service.complete(first, "0" * 32, promotable(first))
    assert notes(service)[-1] == (
        f"refused a result for trial '{first}': it has finished already; nothing was recorded for it"
    )
    service.close()
    events = service.ledger.load_events()
    assert finished(events) == [first]
    result = next(e.data["result"] for e in events if e.type == "trial_finished")
    assert result["metrics"] == genuine.metrics and result["metrics"]["score"] < 2
    # Trials handed out when the campaign stops run again on resume, with new tokens: the old
    # token no longer counts.
    assert not SearchService(service.config.model_dump(mode="json"), None).complete(
        second, second_token, promotable(second)
    )


def _nan(result: dict[str, Any]) -> None:
    result["metrics"]["score"] = float("nan")


def _no_objective(result: dict[str, Any]) -> None:
    del result["metrics"]["score"]


def _unknown_field(result: dict[str, Any]) -> None:
    result["promote"] = True


def _not_finished(result: dict[str, Any]) -> None:
    result["state"] = "RUNNING"


def _unknown_state(result: dict[str, Any]) -> None:
    result["state"] = "PROMOTED"


def _fingerprint_type(result: dict[str, Any]) -> None:
    result["fingerprint"] = {**Fingerprint().to_dict(), "gpu_count": "8"}


def _infinite_time(result: dict[str, Any]) -> None:
    result["finished_at"] = float("inf")


def _metric_text(result: dict[str, Any]) -> None:
    result["metrics"]["size"] = "1.0"


@pytest.mark.parametrize(("spoil", "says"), [
    (_nan, "metric 'score' is nan, not a finite number"),
    (_no_objective, "a COMPLETE result lacks the objective or guard metric(s) score"),
    (_unknown_field, "unknown fields 'promote'"),
    (_not_finished, "state 'RUNNING' is not one of"),
    (_unknown_state, "state 'PROMOTED' is not one of"),
    (_fingerprint_type, "fingerprint gpu_count is '8', not int"),
    (_infinite_time, "finished_at is inf, not a finite number of seconds"),
    (_metric_text, "metric 'size' is '1.0', not a finite number"),
])
def test_an_insane_result_is_recorded_as_a_metrics_failure(
    service: SearchService, spoil: Any, says: str
) -> None:
    trial_id, token, spec = dispatch(service)
    result = TrialResult(trial_id, spec["node_id"], spec["seed"], TrialState.COMPLETE,
                         metrics={"score": 0.6, "size": 1.0}, log_tail="evaluate said hello").to_dict()
    spoil(result)
    assert service.complete(trial_id, token, result)
    recorded = service.tree.trials[trial_id].result
    assert recorded is not None and recorded.state is TrialState.FAIL
    assert recorded.failure_stage is not None and recorded.failure_stage.value == "metrics"
    assert recorded.message.startswith("the reported result was malformed, so it was not recorded: ")
    assert says in recorded.message
    assert recorded.metrics == {}
    service.close()  # the ledger takes it: no field it would choke on
    assert finished(service.ledger.load_events()) == [trial_id]


def test_a_result_for_another_trial_is_not_recorded_under_this_one(service: SearchService) -> None:
    first, first_token, first_spec = dispatch(service)
    second, _, second_spec = dispatch(service)
    theirs = run_trial(TrialSpec.from_dict(second_spec), service.bundle_bytes)
    assert service.complete(first, first_token, theirs.to_dict())
    recorded = service.tree.trials[first].result
    assert recorded is not None and recorded.state is TrialState.FAIL
    assert f"trial_id is '{second}', but the dispatched trial's is '{first}'" in recorded.message
    assert f"seed is {second_spec['seed']}, but the dispatched trial's is {first_spec['seed']}" in recorded.message
    assert service.tree.trials[second].state is TrialState.RUNNING
    assert service.tree.trials[second].result is None


def test_a_flood_of_forgeries_journals_a_bounded_number_of_notes(service: SearchService) -> None:
    trial_id, _, _ = dispatch(service)
    for attempt in range(MAX_REFUSAL_NOTES + 50):
        assert not service.complete(trial_id, f"{attempt:032x}", promotable(trial_id))
    refused = [n for n in notes(service) if n.startswith("refused a result")]
    assert len(refused) == MAX_REFUSAL_NOTES
    assert refused[-1].endswith("further ones are not journaled)")
    assert service.tree.trials[trial_id].state is TrialState.RUNNING
