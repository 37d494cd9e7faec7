"""SearchTree: nodes, trials and decisions, rebuilt by replaying its event journal.

Every state change is an Event; `apply` is the only mutator, so replaying the journal of a
crashed or resumed campaign gives back exactly the state it had.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orchestrator.change import Change
from trials.spec import TrialResult, TrialState

ROOT_ID = "n0"
NOT_RUN = "NOT_RUN"  # in counts: a trial requested but never started before the campaign finished


class NodeStatus(StrEnum):
    OPEN = "OPEN"  # being evaluated
    BASELINE = "BASELINE"  # the root, once measured
    PROMOTED = "PROMOTED"  # significantly better than its parent
    PRUNED = "PRUNED"  # worse, or no better at the seed cap
    FAILED = "FAILED"  # a trial failed, timed out or was invalid
    UNDECIDED = "UNDECIDED"  # still under test when the search stopped: no verdict either way
    SUSPECT = "SUSPECT"  # would be promoted, but its results are implausible: waits for a person's verdict

    @property
    def expandable(self) -> bool:
        return self in (NodeStatus.BASELINE, NodeStatus.PROMOTED)


class Phase(StrEnum):
    BASELINE = "baseline"
    SEARCH = "search"
    INTEGRATION = "integration"
    DONE = "done"


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a replay allocates millions of objects that all stay
    alive: each full collection would walk all of them again, for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class Event:
    seq: int
    ts: float
    type: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "type": self.type, "data": self.data}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(seq=int(raw["seq"]), ts=float(raw["ts"]), type=str(raw["type"]), data=raw["data"])


@dataclass
class Node:
    node_id: str
    parent_id: str | None
    change: Change | None
    commit: str
    params: dict[str, Any]
    chain: list[str]  # node ids from the root's first child down to this node
    origin: str  # root | search | integration
    status: NodeStatus = NodeStatus.OPEN
    seeds: list[int] = field(default_factory=list)
    decision: dict[str, Any] | None = None
    children: list[str] = field(default_factory=list)
    test: int = 0  # its number in the campaign's stream of tests (0: screening, or not tested)
    level: float = 0.0  # the level the stream granted its test
    test_pool: tuple[float, float] | None = None  # the pooled noise (ss, df) frozen when its test began
    test_seq: int = 0  # journal position of its test's start: only blocks requested later are its test's
    created_seq: int = 0
    decided_seq: int = 0

    @property
    def depth(self) -> int:
        return len(self.chain)


@dataclass
class TrialRecord:
    trial_id: str
    node_id: str
    seed: int
    state: TrialState = TrialState.PENDING
    attempts: int = 0
    result: TrialResult | None = None
    block: int = 0  # the block it belongs to (0: the baseline's first seeds)
    requested_seq: int = 0  # journal position of its request: trials are dispatched in request order
    position: int = 0  # its place in that request
    started_order: int = 0  # how many trials of the campaign had finished when it last started
    started_ts: float = 0.0


@dataclass
class Proposal:
    proposal_id: str
    parent_id: str
    change: Change
    verdict: str  # accepted | rejected
    reason: str
    node_id: str | None
    duplicate_of: str | None
    memory_key: str = ""  # the memory's exact key, so a resume need not recompute it
    memory: dict[str, Any] = field(default_factory=dict)  # the memory's verdict: kind, earlier, sweep...


def trial_id_for(node_id: str, seed: int) -> str:
    return f"{node_id}-s{seed}"


class SearchTree:
    def __init__(self, sink: Callable[[Event], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.nodes: dict[str, Node] = {}
        self.trials: dict[str, TrialRecord] = {}
        self.proposals: list[Proposal] = []
        self.imported: list[dict[str, Any]] = []  # rows of experiment logs brought in (history_imported)
        self.meta: dict[str, Any] = {}
        self.phase = Phase.BASELINE
        self.incumbent_id: str | None = None
        self.finished_reason: str | None = None
        self.winners: list[str] = []  # branch winners, ranked, when integration began
        self.screenings: dict[str, dict[str, Any]] = {}  # node -> its screening evidence, when its test began
        self.blocks: dict[int, dict[str, Any]] = {}  # block -> parent, children, seed, order, requested_seq
        self.drift_events: list[dict[str, Any]] = []
        self.search_stopped: dict[str, Any] | None = None  # why and when the search stopped (search_stopped)
        # Trials finished so far: the campaign's clock for pairing. Counting finishes, not starts,
        # keeps a crash out of it: a trial cut off and run again after a resume starts at the same
        # count as it would have without the crash (one at a time).
        self.finished_count = 0
        self.max_seed: int | None = None
        self.sessions: list[dict[str, Any]] = []  # ts, resumed, last_ts, and the trials started, finished, lost
        self.lost: list[dict[str, Any]] = []  # trial_lost events: trial_id, reason, placement, seq, ts, session
        self.bundle_fetches: list[dict[str, Any]] = []  # bundle_sent events: bundle_id, bytes, placement, seq, ts
        self.incumbent_changes: list[dict[str, Any]] = []  # node_id, ts, elapsed_s and trials finished by then
        self.llm_usd = 0.0  # spend of every LLM call, from llm_call events
        self.llm_calls = 0
        self.llm_by_proposer: dict[str, dict[str, float]] = {}  # calls, failed, tokens, usd
        self.proposer_modes: dict[str, str] = {}  # hybrid proposer -> its current mode
        self.switches: list[dict[str, Any]] = []
        self.last_seq = 0
        self.last_ts = 0.0
        self._applying = 0  # seq of the event being applied
        self._applying_ts = 0.0
        self._sink = sink
        self.clock = clock  # stamps events; a simulated campaign runs on simulated time
        # Kept as events apply, as every step of the engine reads them: scanning every node and
        # trial instead costs milliseconds per call once a campaign holds 100,000 nodes.
        self._running = 0  # trials in the RUNNING state
        self._open: dict[str, Node] = {}  # OPEN nodes, in creation order
        self._expandable: dict[str, Node] = {}  # BASELINE and PROMOTED nodes
        self.decided: dict[str, Node] = {}  # nodes decided, oldest decision first (a re-decided node moves last)
        self.decision_log: list[str] = []  # the node of every decision event, in journal order
        self._pending: dict[str, TrialRecord] = {}  # trials in the PENDING state
        self._spent = {False: 0, True: 0}  # trials started (not PENDING), of the search and of integration
        self._trial_states: dict[TrialState, int] = {}
        self._node_statuses: dict[NodeStatus, int] = {}
        self.trial_seconds = 0.0  # duration of every finished trial with a result, summed
        # What the policy derives from a node's finished trials (its paired gain over its parent,
        # the estimate along its chain, its mean duration), kept until a trial it reads finishes.
        self.derived: dict[str, dict[str, Any]] = {}
        # Nodes whose derived figures, children or status changed, in order, repeats included:
        # the policy's rankings key again only these (orchestrator/policy.py Ranking).
        self.touched: list[str] = []

    # ----- writing -----------------------------------------------------------------------
    def record(self, type_: str, **data: Any) -> Event:
        """Apply a new event and hand it to the journal sink."""
        event = Event(seq=self.last_seq + 1, ts=self.clock(), type=type_, data=data)
        self.apply(event)
        if self._sink is not None:
            self._sink(event)
        return event

    @classmethod
    def replay(
        cls,
        events: Iterable[Event],
        sink: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> SearchTree:
        tree = cls(clock=clock)
        with paused_gc():
            for event in sorted(events, key=lambda e: e.seq):
                tree.apply(event)
        tree._sink = sink
        return tree

    def apply(self, event: Event) -> None:
        if event.seq <= self.last_seq:
            return  # already applied: replays and retried writes are idempotent
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is None:
            raise ValueError(f"unknown event type {event.type!r} (seq {event.seq})")
        self._applying = event.seq
        self._applying_ts = event.ts
        handler(event.data)
        if self.sessions:
            self.sessions[-1]["last_ts"] = event.ts
        self.last_seq = event.seq
        self.last_ts = event.ts

    # ----- event handlers ----------------------------------------------------------------
    def _on_campaign_started(self, data: dict[str, Any]) -> None:
        self.meta = dict(data)

    def _on_session_started(self, data: dict[str, Any]) -> None:
        self.sessions.append({**data, "ts": data["ts"], "started": 0, "finished": 0, "lost": 0})

    def _count_in_session(self, what: str) -> None:
        if self.sessions:
            self.sessions[-1][what] += 1

    def _on_node_created(self, data: dict[str, Any]) -> None:
        change = Change.from_dict(data["change"]) if data.get("change") else None
        parent_id = data.get("parent_id")
        parent_chain = self.nodes[parent_id].chain if parent_id else []
        node = Node(
            node_id=data["node_id"],
            parent_id=parent_id,
            change=change,
            commit=data["commit"],
            params=dict(data["params"]),
            chain=[*parent_chain, data["node_id"]] if parent_id else [],
            origin=data["origin"],
            created_seq=self._applying,
        )
        self.nodes[node.node_id] = node
        self._open[node.node_id] = node
        self._count_status(node.status, 1)
        if parent_id:
            self.nodes[parent_id].children.append(node.node_id)
            self.touched.append(parent_id)

    def _on_seeds_requested(self, data: dict[str, Any]) -> None:
        for position, seed in enumerate(data["seeds"]):
            self._add_trial(data["node_id"], seed, 0, position)

    def _on_block_requested(self, data: dict[str, Any]) -> None:
        self.blocks[int(data["block"])] = {**data, "requested_seq": self._applying, "ts": self._applying_ts}
        for position, node_id in enumerate(data["order"]):
            self._add_trial(node_id, int(data["seed"]), int(data["block"]), position)

    def _add_trial(self, node_id: str, seed: int, block: int, position: int) -> None:
        node = self.nodes[node_id]
        self.max_seed = seed if self.max_seed is None else max(self.max_seed, seed)
        if seed in node.seeds:
            return
        node.seeds.append(seed)
        tid = trial_id_for(node_id, seed)
        if tid not in self.trials:
            record = self.trials[tid] = TrialRecord(tid, node_id, seed, block=block, requested_seq=self._applying,
                                                    position=position)
            self._pending[tid] = record
            self._trial_states[record.state] = self._trial_states.get(record.state, 0) + 1

    def _on_test_started(self, data: dict[str, Any]) -> None:
        node = self.nodes[data["node_id"]]
        node.test = int(data["test"])
        node.level = float(data["level"])
        pool = data.get("pool")
        node.test_pool = (float(pool[0]), float(pool[1])) if pool else None
        node.test_seq = self._applying
        if data.get("screen"):
            self.screenings[node.node_id] = dict(data["screen"])

    def _on_drift_detected(self, data: dict[str, Any]) -> None:
        self.drift_events.append({**data, "seq": self._applying, "ts": self._applying_ts})

    def _on_trial_started(self, data: dict[str, Any]) -> None:
        record = self.trials[data["trial_id"]]
        if record.state.is_finished():
            return  # a finished trial is never run again
        self._set_state(record, TrialState.RUNNING)
        record.attempts += 1
        self._count_in_session("started")
        record.started_order = self.finished_count
        record.started_ts = self._applying_ts

    def _on_trial_finished(self, data: dict[str, Any]) -> None:
        result = TrialResult.from_dict(data["result"])
        record = self.trials[result.trial_id]
        if record.state.is_finished():
            return  # reported twice (a retried report): recorded once
        self.finished_count += 1
        self._set_state(record, result.state)
        record.result = result
        self.trial_seconds += result.duration_s
        self._count_in_session("finished")
        self._forget_derived(record)

    def _on_trial_lost(self, data: dict[str, Any]) -> None:
        record = self.trials[data["trial_id"]]
        if not record.state.is_finished():
            self._set_state(record, TrialState.PENDING)
            self.lost.append({**data, "seq": self._applying, "ts": self._applying_ts, "session": len(self.sessions)})
            self._count_in_session("lost")

    def _on_bundle_sent(self, data: dict[str, Any]) -> None:
        self.bundle_fetches.append({**data, "seq": self._applying, "ts": self._applying_ts})

    def _set_state(self, record: TrialRecord, state: TrialState) -> None:
        self._running += (state is TrialState.RUNNING) - (record.state is TrialState.RUNNING)
        started = (state is not TrialState.PENDING) - (record.state is not TrialState.PENDING)
        self._spent[self.nodes[record.node_id].origin == "integration"] += started
        if state is TrialState.PENDING:
            self._pending[record.trial_id] = record
        else:
            self._pending.pop(record.trial_id, None)
        self._trial_states[record.state] -= 1
        self._trial_states[state] = self._trial_states.get(state, 0) + 1
        record.state = state

    def _forget_derived(self, record: TrialRecord) -> None:
        """A trial finished: drop what the policy derived from it. Its node's figures change, and
        so does the gain of each child that ran on its seed (its control finished); a changed gain
        moves the estimate of every node below along the chain."""
        node = self.nodes[record.node_id]
        moved = [c for c in node.children if record.seed in self.nodes[c].seeds]
        self.derived.pop(node.node_id, None)
        self.touched.append(node.node_id)
        if node.parent_id is not None and trial_id_for(node.parent_id, record.seed) in self.trials:
            moved.append(node.node_id)  # its own gain over its parent changed
        while moved:
            node_id = moved.pop()
            self.derived.pop(node_id, None)
            self.touched.append(node_id)
            moved.extend(self.nodes[node_id].children)

    def _count_status(self, status: NodeStatus, step: int) -> None:
        self._node_statuses[status] = self._node_statuses.get(status, 0) + step

    def _on_decision(self, data: dict[str, Any]) -> None:
        node = self.nodes[data["node_id"]]
        self._count_status(node.status, -1)
        node.status = NodeStatus(data["status"])
        self._count_status(node.status, 1)
        node.decision = dict(data)
        node.decided_seq = self._applying
        self._open.pop(node.node_id, None)
        self.decided.pop(node.node_id, None)
        self.decided[node.node_id] = node
        self.decision_log.append(node.node_id)
        self.touched.append(node.node_id)
        if node.status.expandable:
            self._expandable[node.node_id] = node
        else:
            self._expandable.pop(node.node_id, None)


    def _on_incumbent_changed(self, data: dict[str, Any]) -> None:
        self.incumbent_id = data["node_id"]
        self.incumbent_changes.append({"node_id": data["node_id"], "ts": self._applying_ts,
                                       "elapsed_s": self.elapsed_s(self._applying_ts), "trials": self.finished_count})

    def _on_history_imported(self, data: dict[str, Any]) -> None:
        self.imported.append(dict(data))

    def _on_proposal(self, data: dict[str, Any]) -> None:
        self.proposals.append(
            Proposal(
                proposal_id=data["proposal_id"],
                parent_id=data["parent_id"],
                change=Change.from_dict(data["change"]),
                verdict=data["verdict"],
                reason=data["reason"],
                node_id=data.get("node_id"),
                duplicate_of=data.get("duplicate_of"),
                memory_key=data.get("memory_key", ""),
                memory=dict(data.get("memory") or {}),
            )
        )

    def _on_phase_changed(self, data: dict[str, Any]) -> None:
        self.phase = Phase(data["phase"])
        if "winners" in data:
            self.winners = list(data["winners"])

    def _on_search_stopped(self, data: dict[str, Any]) -> None:
        self.search_stopped = {**data, "ts": self._applying_ts}

    def _on_campaign_finished(self, data: dict[str, Any]) -> None:
        self.phase = Phase.DONE
        self.finished_reason = data["reason"]

    def _on_llm_call(self, data: dict[str, Any]) -> None:
        cost = float(data.get("cost_usd") or 0.0)
        self.llm_usd += cost
        self.llm_calls += 1
        totals = self.llm_by_proposer.setdefault(
            str(data.get("proposer", "")),
            {"calls": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0, "usd": 0.0},
        )
        totals["calls"] += 1
        totals["failed"] += 0 if data.get("ok", True) else 1
        totals["prompt_tokens"] += int(data.get("prompt_tokens") or 0)
        totals["completion_tokens"] += int(data.get("completion_tokens") or 0)
        totals["usd"] += cost

    def _on_proposer_switched(self, data: dict[str, Any]) -> None:
        self.proposer_modes[data["proposer"]] = data["mode"]
        self.switches.append(dict(data))

    def _on_note(self, data: dict[str, Any]) -> None:
        """Informational events (budget warnings, proposer notes) change no state."""

    def _on_confirmation_requested(self, data: dict[str, Any]) -> None:
        """Ledgers written before decisions ran in blocks hold this event (a child asked for
        confirmation seeds). The seeds themselves were requested by the `seeds_requested` event
        that followed it, so replaying the request changes nothing."""

    # ----- queries -----------------------------------------------------------------------
    @property
    def root(self) -> Node:
        return self.nodes[ROOT_ID]

    def next_node_id(self) -> str:
        return f"n{len(self.nodes)}"

    def next_proposal_id(self) -> str:
        return f"p{len(self.proposals) + 1}"

    def node_trials(self, node_id: str) -> list[TrialRecord]:
        node = self.nodes[node_id]
        return [self.trials[trial_id_for(node_id, seed)] for seed in node.seeds]

    def completed_values(self, node_id: str, metric: str) -> dict[int, float]:
        """Seed -> metric value over the node's COMPLETE trials."""
        values: dict[int, float] = {}
        for record in self.node_trials(node_id):
            if record.state is TrialState.COMPLETE and record.result and metric in record.result.metrics:
                values[record.seed] = record.result.metrics[metric]
        return values

    def pending_trials(self) -> list[TrialRecord]:
        """Trials requested but neither running nor finished, in request order (a block's trials together)."""
        waiting = [
            r for r in self._pending.values()
            if self.nodes[r.node_id].status is NodeStatus.OPEN or self.nodes[r.node_id].status.expandable
        ]
        return sorted(waiting, key=lambda r: (r.requested_seq, r.position))

    def next_seed(self, start: int) -> int:
        """A seed no trial of the campaign has used: every block gets its own."""
        return start if self.max_seed is None else max(start, self.max_seed + 1)

    @property
    def last_drift_seq(self) -> int:
        return self.drift_events[-1]["seq"] if self.drift_events else 0

    def running_trials(self) -> list[TrialRecord]:
        """Trials started and not yet reported, in request order."""
        if not self._running:
            return []
        return [r for r in self.trials.values() if r.state is TrialState.RUNNING]

    def trials_running(self) -> int:
        """How many trials run now, as the journal says: the one count of trials in flight.

        Within a session these are exactly the trials the engine holds dispatch tokens for
        (a token is handed out with trial_started and taken back with the report); a journal
        read after a crash still counts the trials the dead session had started.
        """
        return self._running

    def finished_trials(self) -> list[TrialRecord]:
        return [r for r in self.trials.values() if r.state.is_finished()]

    def suspect_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.status is NodeStatus.SUSPECT]

    def open_nodes(self) -> list[Node]:
        return list(self._open.values())

    def expandable_nodes(self) -> list[Node]:
        """The measured nodes (baseline and promoted): those that can have children."""
        return list(self._expandable.values())

    def trials_spent(self, *, integration: bool = False) -> int:
        """Trials started, of the search (root included) or of the integration stage: what
        each stage's trial budget counts."""
        return self._spent[integration]

    def counts(self) -> dict[str, dict[str, int]]:
        trials: dict[str, int] = {}
        for state, count in self._trial_states.items():
            if count:
                # Requested, then the campaign ended first: it will never run.
                name = NOT_RUN if state is TrialState.PENDING and self.phase is Phase.DONE else state.value
                trials[name] = count
        return {"trials": trials, "nodes": {s.value: n for s, n in self._node_statuses.items() if n}}

    def elapsed_s(self, now: float | None = None) -> float:
        """Wall-clock time the campaign has run, summed over its sessions.

        A session runs from its start to its last event (the live one until `now` when given),
        and never past the next session's start: the time between a driver's death and the
        resume that follows is charged to no session, however long it was.
        """
        return sum(end - start for start, end in self._session_spans(now))

    def moment_at(self, elapsed_s: float, now: float | None = None) -> float | None:
        """The time (on the campaign's clock) at which elapsed_s() reached `elapsed_s`; None if it has not."""
        total = 0.0
        for start, end in self._session_spans(now):
            if total + (end - start) >= elapsed_s:
                return start + (elapsed_s - total)
            total += end - start
        return None

    def _session_spans(self, now: float | None) -> list[tuple[float, float]]:
        """Each session's start and end, as elapsed_s() charges them."""
        spans = []
        for i, session in enumerate(self.sessions):
            start = float(session["ts"])
            if i + 1 < len(self.sessions):
                end = min(float(session.get("last_ts", start)), float(self.sessions[i + 1]["ts"]))
            else:
                end = float(now if now is not None else session.get("last_ts", start))
            spans.append((start, max(start, end)))
        return spans
