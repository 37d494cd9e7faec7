"""An LLM proposer as the search sees it: a small queue of validated proposals kept ready.

Drafting happens elsewhere (the proposer actor); `propose` only takes what is ready for the
parent and, when the queue runs low, asks for more in the background. So a trial never waits
for the LLM: with nothing ready the proposer answers None, other proposers or queued seeds run,
and the Tune searcher backs off until there is work.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from orchestrator.change import Change
from orchestrator.proposers.base import Outcome, ProposalContext, ProposerEvent

MAX_READY_PARENTS = 4  # parents with drafts kept at once; older ones are dropped
DRY_AFTER = 2  # drafts in a row with nothing valid for a parent: ask again only on news
MAX_ASKS_WITHOUT_NEWS = 4  # requests for one parent while no node was decided


class DraftBackend(Protocol):
    """The drafting service, in-process or behind the proposer actor."""

    def submit(self, request: dict[str, Any]) -> None: ...

    def collect(self, proposer: str) -> dict[str, Any]: ...


class ReadyProposer:
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

    def propose(self, context: ProposalContext) -> Change | None:
        self._known = len(context.records)
        self._collect()
        if self.exhausted():
            return None
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
        if len(queue or ()) < self._ready_n and context.parent_id not in self._pending and not self._is_dry(context):
            self._request(context)
        return change

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
            self._ready.setdefault(item["parent_id"], deque()).append(Change.from_dict(item["change"]))
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

    def exhausted(self) -> bool:
        return bool(self._stopped) or (self._max is not None and self._taken >= self._max)

    def busy(self) -> bool:
        self._collect()
        return bool(self._pending)

    def restore(self, change: Change) -> None:
        self._taken += 1

    def drain_events(self) -> list[ProposerEvent]:
        events, self._events = self._events, []
        return events
