"""The proposer interface: a base class with one method to override, `propose`, and hooks whose
defaults do nothing.

`propose` answers with a value that says everything the search needs to know (as a Ray Tune
Searcher's `suggest` returns a config, FINISHED or None):

- a Change: try this on the parent;
- NOTHING: nothing for this parent now (maybe for another parent, or once the tree changes);
- WAIT: nothing yet, something is being prepared elsewhere (an LLM call in flight), so the
  search must not end for want of ideas;
- FINISHED: this proposer will never propose again; the search stops asking it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from orchestrator.change import Change

# An event a proposer asks the engine to journal: (type, data), e.g. ("llm_call", {...}).
ProposerEvent = tuple[str, dict[str, Any]]


class Signal(Enum):
    """What a proposer answers when it has no change to give."""

    NOTHING = "nothing"
    WAIT = "wait"
    FINISHED = "finished"

    def __repr__(self) -> str:
        return self.name


NOTHING = Signal.NOTHING
WAIT = Signal.WAIT
FINISHED = Signal.FINISHED

# What `propose` returns.
Answer = Change | Signal


@dataclass(frozen=True)
class ProposalContext:
    """What a proposer sees when asked for a change to one parent node."""

    parent_id: str
    parent_params: dict[str, Any]
    # (change, gain over its parent or None when it failed) for every decided node, oldest decision first
    history: list[tuple[Change, float | None]] = field(default_factory=list)
    parent_commit: str = ""
    lineage: list[str] = field(default_factory=list)  # ancestors of the parent, nearest first
    # What LLM proposers put in their prompts, JSON-safe (they may run in another process):
    # decided nodes with effects and failures, and recent rejected proposals with the reason.
    # Filled only when a proposer sets `wants_records`: building them costs a pass over the tree.
    records: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    llm_usd: float = 0.0  # the campaign's LLM spend so far, from the journal


@dataclass(frozen=True)
class Outcome:
    """How a proposed change did, once its node is decided (or it was rejected)."""

    status: str  # PROMOTED | PRUNED | FAILED | REJECTED; SUSPECT (left to a person), UNDECIDED (search stopped)
    gain: float | None  # paired mean gain over the parent, positive is better
    reason: str = ""  # why it was rejected or failed, shown to proposers that can learn from it
    duplicate_of: str | None = None  # the earlier proposal a rejected duplicate repeats


class Proposer(ABC):
    """A source of changes. Subclasses set `name` and override `propose`; every other method
    has a default that does nothing, so a proposer implements only what it uses."""

    name: str = ""
    # True: contexts carry `records` and `rejected` (the tree's history in words, for prompts).
    wants_records: bool = False

    @abstractmethod
    def propose(self, context: ProposalContext) -> Answer:
        """A change for the parent, or the signal that says why there is none."""

    def observe(self, change: Change, outcome: Outcome) -> None:
        """Learn from a decided or rejected change (searchers update their model here)."""
        return None  # the default: a proposer that does not learn

    def restore(self, change: Change) -> None:
        """Replay: this change was proposed before a restart, so it is not proposed again
        (a proposer with a sequence advances past it)."""
        return None  # the default: a proposer that keeps no state

    def set_mode(self, mode: str) -> None:
        """Replay: resume in the mode the journal last recorded for this proposer (its latest
        `proposer_switched` event); only proposers that switch modes have one."""
        return None  # the default: a proposer with one mode

    def drain_events(self) -> list[ProposerEvent]:
        """Events to journal since the last drain: LLM calls, mode switches, notes."""
        return []


def fingerprint(change: Change) -> str:
    """What makes two proposals the same change, whoever made them and whatever they said:
    the kind, and the params delta or the diff."""
    if change.kind == "params":
        return "params:" + json.dumps(change.params, sort_keys=True, default=str)
    return "code:" + change.diff
