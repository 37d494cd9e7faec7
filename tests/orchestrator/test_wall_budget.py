"""The wall-clock budget holds: no trial starts once it is spent, and a trial still running
`budget.grace_s` later is stopped and recorded as STOPPED. Real trials, no Ray; the campaign runs
on a clock the test moves, so the budget runs out where the test says, not where the machine's
speed puts it."""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import Any

from orchestrator import report
from orchestrator.campaign import prepare
from orchestrator.config import load_config
from orchestrator.search import FINISHED, SearchService
from orchestrator.tree import Event, NodeStatus, Phase
from tests.orchestrator.test_search import drive
from tests.toy import gate_at, gated, write_config
from tests.waiting import wait_for
from trials.layout import TrialPaths
from trials.runner import run_trial
from trials.spec import TrialResult, TrialSpec, TrialState

START = 1_800_000_000.0


class FakeClock:
    """The campaign's clock: it moves only when the test moves it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _started_ts(events: list[Event]) -> list[float]:
    return [e.ts for e in events if e.type == "trial_started"]


def _session_start(events: list[Event]) -> float:
    return next(e.ts for e in events if e.type == "session_started")


def test_no_trial_starts_once_the_wall_clock_budget_is_spent(tmp_path: Path) -> None:
    config = load_config(write_config(
        tmp_path, budget={"max_trials": 200, "max_wall_s": 10, "grace_s": 15}, integration={"enabled": False},
        ray={"max_concurrent": 4},
    ))
    clock = FakeClock()
    service = SearchService(config.model_dump(mode="json"), prepare(config, None), clock=clock)
    # Up to four trials in flight, as on a cluster, finishing one every 3 s of the campaign's time:
    # the baseline ends at 9 s, its first children's trials are requested and four start at once;
    # the budget runs out at 10 s with those running and more waiting.
    in_flight: deque[dict[str, Any]] = deque()
    while True:
        while len(in_flight) < config.ray.max_concurrent:
            dispatch = service.suggest()
            if not isinstance(dispatch, dict):
                break
            in_flight.append(dispatch)
        if not in_flight:
            assert dispatch == FINISHED, "the service asked to wait with nothing running"
            break
        clock.advance(3.0)
        done = in_flight.popleft()
        result = run_trial(TrialSpec.from_dict(done["spec"]), service.bundle_bytes)
        assert service.complete(done["spec"]["trial_id"], done["token"], result.to_dict())
        assert clock() < START + 200, "the wall-clock budget did not stop the search"
    service.close()
    events = service.ledger.load_events()
    start = _session_start(events)
    assert max(_started_ts(events)) <= start + 10
    # The four running at 10 s finished within the grace (at 12, 15, 18 and 21 s); the trials
    # waiting then never started.
    late = [e.ts - start for e in events if e.type == "trial_finished" and e.ts > start + 10]
    assert late == [12.0, 15.0, 18.0, 21.0]
    tree = report.load_tree(config)
    assert tree.phase is Phase.DONE and "wall-clock budget reached (10 s)" in (tree.finished_reason or "")
    counts = tree.counts()["trials"]
    assert counts.get("NOT_RUN", 0) > 0 and "STOPPED" not in counts
    stop = report.summary(config, tree)["search_stopped"]
    assert stop["wall_spent_at"] == start + 10 and stop["stopped_trials"] == []
    assert "wall-clock budget reached" in stop["reason"]
    notebook = report.notebook(config, tree)
    assert "Wall-clock budget of 10 s spent at" in notebook and "no trial of the search started after it" in notebook


def test_a_trial_still_running_after_the_grace_is_stopped_by_the_budget(tmp_path: Path) -> None:
    config = load_config(write_config(
        tmp_path, **gated(tmp_path), budget={"max_trials": 200, "max_wall_s": 100, "grace_s": 30},
        integration={"enabled": False},
    ))
    clock = FakeClock()
    service = SearchService(config.model_dump(mode="json"), prepare(config, None), clock=clock)
    gate_at(tmp_path).touch()
    assert drive(service, stop_after=3) == 3  # the baseline
    gate_at(tmp_path).unlink()  # the next trial's train step waits at the gate until it is stopped
    dispatch = service.suggest()
    assert isinstance(dispatch, dict)
    trial_id, token = dispatch["spec"]["trial_id"], dispatch["token"]
    stop = threading.Event()
    ended: dict[str, TrialResult] = {}

    def work() -> None:
        ended["result"] = run_trial(TrialSpec.from_dict(dispatch["spec"]), service.bundle_bytes, stop=stop)

    worker = threading.Thread(target=work)
    worker.start()
    train_log = TrialPaths.for_trial(Path(str(config.ray.scratch_dir)), trial_id).log("train")
    wait_for(train_log.exists, "the trial's train step to start", alive=worker.is_alive)

    clock.advance(100)  # the budget is spent: nothing more starts, the running trial has its grace
    assert service.suggest() is None
    assert not service.should_stop(trial_id)
    clock.advance(29)
    assert not service.should_stop(trial_id)
    clock.advance(1)  # the grace is over
    assert service.should_stop(trial_id)
    stop.set()  # what a worker does when the tree actor says so
    worker.join(timeout=120)
    assert not worker.is_alive(), "the stopped trial's process did not end"
    result = ended["result"]
    assert result.state is TrialState.STOPPED and "during its train step" in result.message
    # The worker's own report comes after the budget's record: taken once, silently ignored.
    assert not service.complete(trial_id, token, result.to_dict())
    assert service.suggest() == FINISHED
    service.close()

    events = service.ledger.load_events()
    assert max(_started_ts(events)) <= _session_start(events) + 100
    assert not [e for e in events if e.type == "note" and "refused" in e.data["message"]]
    tree = report.load_tree(config)
    record = tree.trials[trial_id]
    assert record.state is TrialState.STOPPED and record.result is not None
    assert "budget.grace_s" in record.result.message and "not a failure of the change" in record.result.message
    assert record.result.duration_s == 130.0  # on the campaign's clock: dispatched at 0, stopped at 130
    # Not charged to any change: the children under test (the stopped trial's node, or the children
    # it was the control of) are UNDECIDED, none FAILED or PRUNED.
    children = [n for n in tree.nodes.values() if n.parent_id is not None]
    assert children and all(n.status is NodeStatus.UNDECIDED for n in children)
    assert all("wall-clock budget reached" in str((n.decision or {})["reason"]) for n in children)
    summary: dict[str, Any] = report.summary(config, tree)
    stopped = summary["search_stopped"]["stopped_trials"]
    assert [t["trial_id"] for t in stopped] == [trial_id]
    assert summary["search_stopped"]["wall_spent_at"] == START + 100
    assert len(summary["fingerprints"]) == 1  # a stopped trial has none: it adds no cohort
    notebook = report.notebook(config, tree)
    assert f"{trial_id} (ran 130 s)" in notebook and "Stopped by the budget" in notebook
    assert f"### {trial_id}" not in notebook  # not listed among the failed trials


def test_a_budget_spent_before_the_baseline_ends_the_campaign_without_a_trial(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, budget={"max_trials": 50, "max_wall_s": 20, "grace_s": 5}))
    clock = FakeClock()
    service = SearchService(config.model_dump(mode="json"), prepare(config, None), clock=clock)
    clock.advance(20)
    assert service.suggest() == FINISHED
    service.close()
    tree = report.load_tree(config)
    assert not _started_ts(service.ledger.load_events())
    assert "before the baseline was measured" in (tree.finished_reason or "")
    assert tree.root.status is NodeStatus.UNDECIDED
    assert "before the baseline was measured" in report.notebook(config, tree)
