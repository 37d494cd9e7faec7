"""Hybrid: search the params first, escalate to code proposals when that stalls, fall back to
params when code proposals keep failing. Every switch is journaled with its reason."""

from __future__ import annotations

from orchestrator.change import Change
from orchestrator.proposers.base import FINISHED, Answer, Outcome, ProposalContext, Proposer, ProposerEvent

PARAMS, CODE = "params", "code"


class HybridProposer(Proposer):
    wants_records = True  # its prompts show the tree's history

    def __init__(self, name: str, params: Proposer, code: Proposer, *, stall_after: int, fallback_after: int) -> None:
        self.name = name
        self._params = params
        self._code = code
        self._stall_after = stall_after
        self._fallback_after = fallback_after
        self.mode = PARAMS
        self._stalled = 0  # params changes decided without a gain since the last promotion
        self._failed = 0  # code proposals in a row that failed to apply or to run
        self._finished: set[str] = set()  # the modes whose proposer answered FINISHED
        self._events: list[ProposerEvent] = []

    def propose(self, context: ProposalContext) -> Answer:
        answer = self._ask(self.mode, context)
        if answer is FINISHED:
            other = CODE if self.mode == PARAMS else PARAMS
            if other in self._finished:
                return FINISHED
            why = "the params search has nothing left to try" if self.mode == PARAMS else "the code proposer stopped"
            self._switch(other, why)
            answer = self._ask(other, context)
        return answer

    def _ask(self, mode: str, context: ProposalContext) -> Answer:
        if mode in self._finished:
            return FINISHED  # never asked again
        answer = (self._params if mode == PARAMS else self._code).propose(context)
        if answer is FINISHED:
            self._finished.add(mode)
        return answer

    def observe(self, change: Change, outcome: Outcome) -> None:
        (self._params if change.kind == "params" else self._code).observe(change, outcome)
        if change.kind == "params" and self.mode == PARAMS:
            if outcome.status == "PROMOTED":
                self._stalled = 0
            elif outcome.status in ("PRUNED", "FAILED"):
                self._stalled += 1
                if self._stalled >= self._stall_after and CODE not in self._finished:
                    self._switch(CODE, f"the params search stalled: {self._stalled} changes decided without a gain")
        elif change.kind == "code" and self.mode == CODE:
            if outcome.status == "PROMOTED":
                self._failed = 0
            elif outcome.status == "FAILED" or (outcome.status == "REJECTED" and not outcome.duplicate_of):
                self._failed += 1
                if self._failed >= self._fallback_after and PARAMS not in self._finished:
                    self._switch(PARAMS, f"{self._failed} code proposals in a row failed to apply or to run")
            else:
                self._failed = 0

    def _switch(self, mode: str, reason: str) -> None:
        self._events.append(("proposer_switched", {"mode": mode, "previous": self.mode, "reason": reason}))
        self.mode = mode
        self._stalled = self._failed = 0

    def set_mode(self, mode: str) -> None:
        """Resume in the mode the journal last recorded."""
        self.mode = mode
        self._stalled = self._failed = 0

    def restore(self, change: Change) -> None:
        (self._params if change.kind == "params" else self._code).restore(change)

    def drain_events(self) -> list[ProposerEvent]:
        events = self._events + self._params.drain_events() + self._code.drain_events()
        self._events = []
        return events
