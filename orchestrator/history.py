"""Experiment logs in and out: karpathy/autoresearch's results.tsv and the like.

Such a log is one row per experiment, tab-separated, with the header

    commit	val_bpb	memory_gb	status	description

(`val_bpb`, autoresearch's objective, may instead be named as the campaign's objective);
status is keep, discard or crash. `arborist report --tsv` writes a campaign as such a log, and
`arborist import-log` brings one into a campaign as already-tried history.

What an imported row means: an idea with its outcome, tried on the project the campaign
snapshots. Its description is the idea; a description of the form `name=value: ...` naming a
declared hyperparameter is that params change. The campaign's memory holds it as tried on the
baseline (n0), so the same idea proposed on the baseline is rejected as a repeat, and proposed
on another node is a revisit, linked to it. A crash row is a failed try: the idea may be tried
again (a retry) as often as memory.max_retries allows. Rows wait in `history.jsonl` in the
campaign folder until the campaign journals each as a `history_imported` event: at its start,
at its next expansion while it runs, or at `arborist resume`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.change import Change
from orchestrator.config import CampaignConfig
from orchestrator.inbox import LOCK_FILE
from orchestrator.tree import NodeStatus, SearchTree
from trials.locks import file_lock

HISTORY_FILE = "history.jsonl"  # in the campaign folder: one imported row a line
AUTORESEARCH_OBJECTIVE = "val_bpb"
STATUSES = ("keep", "discard", "crash")
PROPOSER = "import"  # the proposer an imported idea is remembered under
_STATUS_OF_NODE = {NodeStatus.PROMOTED: "keep", NodeStatus.PRUNED: "discard", NodeStatus.FAILED: "crash"}
_PARAMS_FORM = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([^\s:]+)\s*(?::\s*(.*))?$", re.DOTALL)


class HistoryError(ValueError):
    """A log that cannot be imported; the message names the file, line and column."""


@dataclass(frozen=True)
class LoggedExperiment:
    """One row of an experiment log."""

    commit: str
    objective: float | None  # None: missing (a crash row often has 0 or nothing)
    memory_gb: float | None
    status: str  # keep | discard | crash
    description: str
    source: str  # the file it came from
    line: int  # its line there (1-based)

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit, "objective": self.objective, "memory_gb": self.memory_gb,
            "status": self.status, "description": self.description, "source": self.source, "line": self.line,
        }


def parse_log(path: Path, objective: str) -> list[LoggedExperiment]:
    """The rows of a results.tsv-style log. Blank lines and lines starting with # are skipped;
    columns beyond the five are ignored; a missing commit, objective or memory is empty."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"{path}: cannot read the log ({exc})") from exc
    header: list[str] | None = None
    rows = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        fields = raw.rstrip("\r\n").split("\t")
        if header is None:
            header = [name.strip().lower() for name in fields]
            _check_header(path, number, header, objective)
            continue
        rows.append(_row(path, number, header, fields, objective))
    if header is None:
        raise HistoryError(f"{path}: the log is empty; its first line is the header "
                           f"commit<TAB>{AUTORESEARCH_OBJECTIVE}<TAB>memory_gb<TAB>status<TAB>description")
    return rows


def _check_header(path: Path, line: int, header: list[str], objective: str) -> None:
    where = f"{path}:{line}"
    if len(header) == 1:
        raise HistoryError(f"{where}: the header has one column; the log must be tab-separated "
                           f"(commit<TAB>{AUTORESEARCH_OBJECTIVE}<TAB>memory_gb<TAB>status<TAB>description)")
    missing = [name for name in ("status", "description") if name not in header]
    if missing:
        raise HistoryError(f"{where}: the header lacks the column(s) {', '.join(missing)} "
                           f"(it has {', '.join(header)})")
    if objective.lower() not in header and AUTORESEARCH_OBJECTIVE not in header:
        raise HistoryError(f"{where}: the header has no objective column: name it {objective} (the campaign's "
                           f"objective) or {AUTORESEARCH_OBJECTIVE} (it has {', '.join(header)})")


def _row(path: Path, line: int, header: list[str], fields: list[str], objective: str) -> LoggedExperiment:
    if len(fields) > len(header) and header[-1] == "description":
        fields = [*fields[: len(header) - 1], " ".join(fields[len(header) - 1:])]  # a tab inside the description
    values = {name: fields[i].strip() if i < len(fields) else "" for i, name in enumerate(header)}
    column = {name: i + 1 for i, name in enumerate(header)}

    def where(name: str) -> str:
        return f"{path}:{line}: column {column[name]} ({name})"

    status = values["status"].lower()
    if status not in STATUSES:
        got = repr(values["status"]) if values["status"] else "empty"
        raise HistoryError(f"{where('status')}: status is {got}; it is one of {', '.join(STATUSES)}")
    description = " ".join(values["description"].split())
    if not description:
        raise HistoryError(f"{where('description')}: the description is empty; it is the idea the row tried, "
                           "so a row needs one (or delete the row)")
    name = objective.lower() if objective.lower() in column else AUTORESEARCH_OBJECTIVE
    return LoggedExperiment(
        commit=values.get("commit", ""), objective=_number(values[name], where(name)),
        memory_gb=_number(values["memory_gb"], where("memory_gb")) if "memory_gb" in values else None,
        status=status, description=description, source=str(path), line=line,
    )


def _number(text: str, where: str) -> float | None:
    if text == "" or text.lower() in ("nan", "na", "n/a", "-", "none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise HistoryError(f"{where}: {text!r} is not a number; leave it empty when there is none") from None
    return value if math.isfinite(value) else None


# ----- staging for the campaign -------------------------------------------------------------
def history_path(campaign_dir: Path) -> Path:
    return campaign_dir / HISTORY_FILE


def staged(campaign_dir: Path) -> list[dict[str, Any]]:
    """The rows imported into the campaign so far, each with its id (h1, h2, ...)."""
    path = history_path(campaign_dir)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill mid-write: that row was never imported
    return rows


def stage(campaign_dir: Path, rows: list[LoggedExperiment]) -> tuple[list[dict[str, Any]], int]:
    """Append the rows not imported before (same commit, status and description) to the
    campaign's history; returns the rows added, with their ids, and how many were already there."""
    campaign_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(campaign_dir / LOCK_FILE):
        earlier = staged(campaign_dir)
        seen = {(r["commit"], r["status"], r["description"]) for r in earlier}
        added: list[dict[str, Any]] = []
        for row in rows:
            key = (row.commit, row.status, row.description)
            if key in seen:
                continue
            seen.add(key)
            added.append({"id": f"h{len(earlier) + len(added) + 1}", **row.to_dict()})
        with open(history_path(campaign_dir), "a", encoding="utf-8") as out:
            out.writelines(json.dumps(row) + "\n" for row in added)
    return added, len(rows) - len(added)


def imported_change(row: dict[str, Any], config: CampaignConfig) -> Change:
    """The change an imported row stands for: a params change when its description says
    `name=value` of a declared hyperparameter, else a code change known by its description."""
    description = str(row["description"])
    match = _PARAMS_FORM.match(description)
    if match and match.group(1) in config.params:
        name, text, rest = match.group(1), match.group(2), match.group(3) or ""
        return Change(kind="params", aspect=name, hypothesis=rest.strip() or description, proposer=PROPOSER,
                      params={name: _value(text)}, source_id=str(row["id"]))
    return Change(kind="code", aspect="", hypothesis=description, proposer=PROPOSER, source_id=str(row["id"]))


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return {"true": True, "false": False}.get(text.lower(), text)


# ----- writing a campaign as a log -------------------------------------------------------------
def write_log(config: CampaignConfig, tree: SearchTree, path: Path) -> int:
    """Write the campaign's decided nodes, in the order they were decided, as a results.tsv-style
    log; returns the rows written. Suspect nodes (waiting for a person) are not decided yet."""
    lines = [f"commit\t{config.objective}\tmemory_gb\tstatus\tdescription"]
    for node in tree.decided.values():  # in the order they were decided
        status = _STATUS_OF_NODE.get(node.status)
        if status is None or node.change is None:
            continue
        objective = _mean(tree, node.node_id, config.objective)
        memory = _mean(tree, node.node_id, "memory_gb")
        lines.append("\t".join([
            (node.commit or "")[:7], "" if objective is None else f"{objective:.6f}",
            "" if memory is None else f"{memory:.1f}", status, _description(node.change),
        ]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines) - 1


def _mean(tree: SearchTree, node_id: str, metric: str) -> float | None:
    values = list(tree.completed_values(node_id, metric).values())
    return sum(values) / len(values) if values else None


def _description(change: Change) -> str:
    """One line; a params change as `name=value: hypothesis`, which import-log reads back."""
    text = change.hypothesis
    if change.kind == "params":
        delta = ", ".join(f"{k}={v}" for k, v in sorted(change.params.items()))
        text = f"{delta}: {text}" if text and len(change.params) == 1 else delta
    return " ".join(text.split())
