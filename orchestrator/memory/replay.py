"""A log of experiments read as a campaign would have made it, and replayed through the memory.

Research agents keep logs of one line per experiment (autoresearch's `results.tsv`: a commit,
metrics, keep / discard / crash, and a description of the change). Read as a campaign, each
row is a proposal on the state the last kept row left (its parent), and the kept rows before it
are its lineage. Replaying a log through the memory shows what the memory would have turned
away, and is how the memory is measured on real wording (scripts/bench_memory.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.change import Change
from orchestrator.config import MemoryConfig
from orchestrator.memory.core import Memory, MemoryVerdict, same_change_as

ROOT = "root"


@dataclass(frozen=True)
class LogRow:
    row: int  # its line in the log
    status: str  # keep | discard | crash
    description: str


@dataclass(frozen=True)
class Placed:
    """A row where the campaign would have put it."""

    row: LogRow
    node_id: str
    parent_id: str
    lineage: tuple[str, ...]  # the kept rows before it (its parent last)

    def change(self) -> Change:
        return Change(kind="code", aspect="code", hypothesis=self.row.description, proposer="log")


def place(rows: Sequence[LogRow]) -> list[Placed]:
    """Each row on the parent its log implies: the last kept row before it (the first row is
    the baseline, kept or not)."""
    placed: list[Placed] = []
    lineage: list[str] = [ROOT]
    for row in rows:
        node_id = f"r{row.row}"
        placed.append(Placed(row, node_id, lineage[-1], tuple(lineage)))
        if row.status == "keep":
            lineage.append(node_id)
    return placed


def remember(memory: Memory, placed: Placed, verdict: MemoryVerdict | None = None) -> None:
    entry = memory.entry(placed.change(), placed.parent_id, {}, lineage=placed.lineage)
    memory.remember(entry, placed.node_id, placed.node_id, same_change_as(verdict.to_dict()) if verdict else None)
    if placed.row.status == "crash":
        memory.failed(placed.node_id)


def check(memory: Memory, placed: Placed) -> MemoryVerdict:
    return memory.check(memory.entry(placed.change(), placed.parent_id, {}, lineage=placed.lineage))


def judge_pair(
    rows: Sequence[LogRow], earlier: int, later: int, config: MemoryConfig | None = None, notes: Iterable[str] = ()
) -> MemoryVerdict:
    """The verdict on row `later` with only row `earlier` remembered; the abbreviations the
    log defined before `later` are known, as they would be in a campaign."""
    placed = {p.row.row: p for p in place(rows)}
    memory = Memory(config, notes=notes)
    for row in rows:
        if row.row >= later:
            break
        memory.abbreviations.learn(row.description)
    remember(memory, placed[earlier])
    return check(memory, placed[later])


def replay(rows: Sequence[LogRow], config: MemoryConfig | None = None,
           notes: Iterable[str] = ()) -> list[MemoryVerdict]:
    """Every row checked, then remembered, in order, through one memory: a rejected row is
    remembered as a rejected proposal (no node), as the engine does."""
    memory = Memory(config, notes=notes)
    verdicts: list[MemoryVerdict] = []
    for placed in place(rows):
        verdict = check(memory, placed)
        verdicts.append(verdict)
        if verdict.duplicate:
            entry = memory.entry(placed.change(), placed.parent_id, {}, lineage=placed.lineage)
            memory.remember(entry, placed.node_id, earlier=verdict.earlier)
        else:
            remember(memory, placed, verdict)
    return verdicts
