"""An LLM proposer as the search sees it: a small queue of validated proposals kept ready.

Drafting happens elsewhere (the proposer actor); `propose` only takes what is ready for the
parent and, when the queue runs low, asks for more in the background. So a trial never waits
for the LLM: with nothing ready the proposer answers WAIT while a draft is in flight (NOTHING
when none is), other proposers or queued seeds run, and the Tune searcher backs off until there
is work.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from orchestrator.change import Change
from orchestrator.proposers.base import (
    FINISHED,
    NOTHING,
    WAIT,
    Answer,
    Outcome,
    ProposalContext,
    Proposer,
    ProposerEvent,
    fingerprint,
)

MAX_READY_PARENTS = 4  # parents with drafts kept at once; older ones are dropped
DRY_AFTER = 2  # drafts in a row with nothing valid for a parent: ask again only on news
MAX_ASKS_WITHOUT_NEWS = 4  # requests for one parent while no node was decided


class DraftBackend(Protocol):
    """The drafting service, in-process or behind the proposer actor."""

    def submit(self, request: dict[str, Any]) -> None: ...

    def collect(self, proposer: str) -> dict[str, Any]: ...


class ReadyProposer(Proposer):
    wants_records = True  # its prompts show the tree's history

    def __init__(self, name: str, backend: DraftBackend, *, ready: int, max_proposals: int | None = None) -> None:
        self.name = name
        self._backend = backend
        self._ready_n = ready
        self._max = max_proposals
        self._ready: dict[str, deque[Change]] = {}
        self._pending: set[str] = set()
        self._events: list[ProposerEvent] = []
        self._stopped = ""
        self._requests = 0
        self._taken = 0
        self._empty: dict[str, int] = {}  # parent -> drafts in a row that gave nothing valid
        self._dry: dict[str, int] = {}  # parent -> decided nodes known when it went dry
        self._known = 0  # decided nodes in the latest context
        self._asked: dict[str, tuple[int, int]] = {}  # parent -> (decided nodes then, requests since)
        self._handed: set[str] = set()  # fingerprints of the changes proposed (restored ones too)

    def propose(self, context: ProposalContext) -> Answer:
        self._known = len(context.records)
        self._collect()
        if self._finished():
            return FINISHED
        queue = self._ready.get(context.parent_id)
        change = queue.popleft() if queue else None
        if change is None:
            # A draft for an ancestor is still one change on top of this parent when it applies
            # here (the search checks), so the tokens spent on it are not wasted.
            for ancestor in context.lineage:
                if self._ready.get(ancestor):
                    change = self._ready[ancestor].popleft()
                    break
        if change is not None:
            self._taken += 1
            self._handed.add(fingerprint(change))
        if len(queue or ()) < self._ready_n and context.parent_id not in self._pending and not self._is_dry(context):
            self._request(context)
        if change is not None:
            return change
        return WAIT if self._pending else NOTHING

    def _is_dry(self, context: ProposalContext) -> bool:
        """The LLM had nothing for this parent, twice, and the tree has told it nothing new since:
        asking again would spend money on the same empty answer."""
        known = self._dry.get(context.parent_id)
        if known is None:
            return False
        if len(context.records) > known:
            del self._dry[context.parent_id]
            self._empty.pop(context.parent_id, None)
            return False
        return True

    def _request(self, context: ProposalContext) -> None:
        known, asked = self._asked.get(context.parent_id, (-1, 0))
        asked = asked + 1 if known == len(context.records) else 1
        self._asked[context.parent_id] = (len(context.records), asked)
        if asked >= MAX_ASKS_WITHOUT_NEWS:
            self._dry[context.parent_id] = len(context.records)
        self._requests += 1
        self._pending.add(context.parent_id)
        self._backend.submit({
            "proposer": self.name, "request_id": self._requests, "parent_id": context.parent_id,
            "parent_commit": context.parent_commit, "parent_params": dict(context.parent_params),
            "records": context.records, "rejected": context.rejected, "llm_usd": context.llm_usd,
        })

    def _collect(self) -> None:
        out = self._backend.collect(self.name)
        for item in out["proposals"]:
            change = Change.from_dict(item["change"])
            if fingerprint(change) in self._handed:
                # The LLM repeated a change this proposer made already (before a restart, too):
                # the memory would reject it as a duplicate, so it is not proposed again.
                self._events.append(("note", {"message": (
                    f"{self.name} dropped a draft for {item['parent_id']} that repeats its earlier proposal: "
                    f"{change.describe()[:200]}")}))
                continue
            self._ready.setdefault(item["parent_id"], deque()).append(change)
        while len(self._ready) > MAX_READY_PARENTS:
            del self._ready[next(iter(self._ready))]  # oldest parent first: dicts keep insertion order
        self._events.extend((type_, data) for type_, data in out["events"])
        self._pending = set(out["pending"])
        for parent, valid in out.get("drafted", []):
            self._empty[parent] = 0 if valid else self._empty.get(parent, 0) + 1
            if self._empty[parent] >= DRY_AFTER:
                self._dry[parent] = self._known
        self._stopped = out["stopped"] or self._stopped

    def observe(self, change: Change, outcome: Outcome) -> None:
        """The LLM learns from the tree's history and rejections, sent with every request."""

    def _finished(self) -> bool:
        # Both only grow: a stopped drafter stays stopped, and proposals taken are never given back.
        return bool(self._stopped) or (self._max is not None and self._taken >= self._max)

    def restore(self, change: Change) -> None:
        self._taken += 1
        self._handed.add(fingerprint(change))

    def drain_events(self) -> list[ProposerEvent]:
        events, self._events = self._events, []
        return events
