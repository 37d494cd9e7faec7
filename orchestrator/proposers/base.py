"""The proposer interface: one method to ask for changes, one to learn how they did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.change import Change

# An event a proposer asks the engine to journal: (type, data), e.g. ("llm_call", {...}).
ProposerEvent = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ProposalContext:
    """What a proposer sees when asked for a change to one parent node."""

    parent_id: str
    parent_params: dict[str, Any]
    # (change, gain over its parent or None when it failed) for every decided node
    history: list[tuple[Change, float | None]] = field(default_factory=list)
    parent_commit: str = ""
    lineage: list[str] = field(default_factory=list)  # ancestors of the parent, nearest first
    # What LLM proposers put in their prompts, JSON-safe (they may run in another process):
    # decided nodes with effects and failures, and recent rejected proposals with the reason.
    records: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    llm_usd: float = 0.0  # the campaign's LLM spend so far, from the journal


@dataclass(frozen=True)
class Outcome:
    """How a proposed change did, once its node is decided (or it was rejected)."""

    status: str  # PROMOTED | PRUNED | FAILED | REJECTED
    gain: float | None  # paired mean gain over the parent, positive is better
    reason: str = ""  # why it was rejected or failed, shown to proposers that can learn from it
    duplicate_of: str | None = None  # the earlier proposal a rejected duplicate repeats


class Proposer(Protocol):
    name: str

    def propose(self, context: ProposalContext) -> Change | None:
        """A change for the parent, or None when this proposer has nothing (now or ever)."""

    def observe(self, change: Change, outcome: Outcome) -> None:
        """Learn from a decided change (searchers update their model here)."""

    def exhausted(self) -> bool:
        """True when this proposer will never propose again."""

    def busy(self) -> bool:
        """True while proposals are being prepared elsewhere (an LLM call in flight): the
        search waits for them rather than ending for want of ideas."""

    def restore(self, change: Change) -> None:
        """Replay: this change was proposed before a restart (so it is not proposed again)."""

    def drain_events(self) -> list[ProposerEvent]:
        """Events to journal since the last drain: LLM calls, mode switches, notes."""
