"""The proposer interface: one method to ask for changes, one to learn how they did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.change import Change


@dataclass(frozen=True)
class ProposalContext:
    """What a proposer sees when asked for a change to one parent node."""

    parent_id: str
    parent_params: dict[str, Any]
    # (change, gain over its parent or None when it failed) for every decided node
    history: list[tuple[Change, float | None]] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """How a proposed change did, once its node is decided."""

    status: str  # PROMOTED | PRUNED | FAILED | REJECTED
    gain: float | None  # paired mean gain over the parent, positive is better


class Proposer(Protocol):
    name: str

    def propose(self, context: ProposalContext) -> Change | None:
        """A change for the parent, or None when this proposer has nothing (now or ever)."""

    def observe(self, change: Change, outcome: Outcome) -> None:
        """Learn from a decided change (searchers update their model here)."""

    def exhausted(self) -> bool:
        """True when this proposer will never propose again."""

    def restore(self, change: Change) -> None:
        """Replay: this change was proposed before a restart (so it is not proposed again)."""
