"""Where trials ran, from the tree alone: per machine, the trials lost and where they ran again,
and the campaign's sessions. The report's "Placement" section, and `placement` in its JSON
summary (`arborist report --json`).

A machine is a Ray node (its id), or a host for trials run without Ray; trials whose result does
not say where they ran (a worker lost before its trial reported, a result arborist wrote
itself) are counted on an unknown machine, so that every attempt is counted once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator.tree import SearchTree
from trials.spec import Placement, TrialState

FAILED = frozenset({TrialState.FAIL, TrialState.TIMEOUT, TrialState.INVALID})
UNKNOWN = "unknown"  # the notebook's name for the machine of attempts that did not say where they ran


def machine(where: Placement) -> str | None:
    """The key of the machine a trial ran on: its Ray node, else its host; None when unknown."""
    return where.ray_node_id or where.hostname or None


def summary(tree: SearchTree) -> dict[str, Any]:
    """`nodes`: one row per machine (its attempts, and its fetches of the campaign bundle); `lost`:
    one row per lost attempt; `sessions`: one per session."""
    machines: dict[str | None, dict[str, Any]] = {}

    def row_of(where: Placement) -> dict[str, Any]:
        key = machine(where)
        row = machines.get(key)
        if row is None:
            row = machines[key] = {
                "node": key, "ray_node_id": "", "node_ip": "", "hostname": "", "accelerators": set(),
                "gpu_ids": set(), "run": 0, "finished": 0, "failed": 0, "lost": 0, "retried": 0, "bundles": 0,
            }
        for name in ("ray_node_id", "node_ip", "hostname"):
            row[name] = row[name] or getattr(where, name)
        if where.accelerator:
            row["accelerators"].add(where.accelerator)
        if where.gpu_ids:
            row["gpu_ids"].add(where.gpu_ids)
        return row

    def count(where: Placement, what: str) -> None:
        row = row_of(where)
        row["run"] += 1
        row[what] += 1

    for fetch in tree.bundle_fetches:
        row_of(Placement.from_dict(fetch.get("placement")))["bundles"] += 1

    losses: dict[str, list[dict[str, Any]]] = {}
    for lost in tree.lost:
        losses.setdefault(lost["trial_id"], []).append(lost)
        count(Placement.from_dict(lost.get("placement")), "lost")
    for record in tree.trials.values():
        if record.result is None:
            continue
        where = record.result.placement
        count(where, "failed" if record.state in FAILED else "finished")
        if record.trial_id in losses:
            machines[machine(where)]["retried"] += 1
    nodes = [
        {**row, "accelerators": sorted(row["accelerators"]), "gpu_ids": sorted(row["gpu_ids"])}
        for row in sorted(machines.values(), key=lambda r: (r["node"] is None, r["hostname"], r["node"] or ""))
    ]
    return {"nodes": nodes, "lost": _lost(tree, losses), "sessions": _sessions(tree)}


def _lost(tree: SearchTree, losses: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each lost attempt, and where the trial's next attempt ran (None: not run again yet, or
    lost before it said where)."""
    rows = []
    for trial_id, attempts in losses.items():
        record = tree.trials[trial_id]
        final = machine(record.result.placement) if record.result is not None else None
        for i, lost in enumerate(attempts):
            later = attempts[i + 1] if i + 1 < len(attempts) else None
            retried_on = machine(Placement.from_dict(later.get("placement"))) if later is not None else final
            retried_state = "LOST" if later is not None else record.state.value
            rows.append({
                "trial_id": trial_id, "node_id": record.node_id, "seq": lost["seq"], "ts": lost["ts"],
                "session": lost["session"], "reason": lost.get("reason", ""),
                "on": machine(Placement.from_dict(lost.get("placement"))),
                "retried_on": retried_on, "retried_state": retried_state,
            })
    return sorted(rows, key=lambda row: row["seq"])


def _sessions(tree: SearchTree) -> list[dict[str, Any]]:
    """Each session's start and end (its last event, and never past the next one's start, as
    SearchTree.elapsed_s counts them) and the trials it started, finished and lost."""
    rows = []
    for i, session in enumerate(tree.sessions):
        start = float(session["ts"])
        end = float(session.get("last_ts", start))
        if i + 1 < len(tree.sessions):
            end = min(end, float(tree.sessions[i + 1]["ts"]))
        rows.append({
            "session": i + 1, "start": start, "end": max(start, end), "resumed": bool(session.get("resumed")),
            "started": int(session.get("started", 0)), "finished": int(session.get("finished", 0)),
            "lost": int(session.get("lost", 0)),
        })
    return rows


def section(data: dict[str, Any]) -> list[str]:
    """The notebook's "Placement" section, from summary(), ending with a blank line."""
    lines = ["## Placement", "",
             "Where the trials ran: a row per Ray node (or host, for trials run without Ray). *run*: attempts "
             "that ran there; each finished, failed (FAIL, TIMEOUT, INVALID) or was lost (its worker died, or "
             "the campaign stopped while it ran; a lost trial runs again). *retried*: trials that finished there "
             "after an earlier attempt was lost. GPU ids are `CUDA_VISIBLE_DEVICES` as the trials got it. *bundles*: "
             "how often the node fetched the campaign's code (once per node and scratch folder; more means its "
             "cache was lost or not shared by its trials).", ""]
    if not data["nodes"]:
        lines.append("No trial has run yet.")
    else:
        lines += ["| node | IP | host | accelerator | GPU ids | run | finished | failed | lost | retried | bundles |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in data["nodes"]:
            lines.append(
                f"| {_cell(row['ray_node_id'] or row['node'] or UNKNOWN)} | {_cell(row['node_ip']) or '–'} "
                f"| {_cell(row['hostname']) or '–'} | {_cell(', '.join(row['accelerators'])) or '–'} "
                f"| {_cell('; '.join(row['gpu_ids'])) or '–'} | {row['run']} | {row['finished']} | {row['failed']} "
                f"| {row['lost']} | {row['retried']} | {row['bundles']} |"
            )
    lines += ["", "### Lost trials", ""]
    if not data["lost"]:
        lines.append("None.")
    else:
        lines += ["| trial | lost at (UTC) | session | on | reason | run again on |", "|---|---|---|---|---|---|"]
        for row in data["lost"]:
            if row["retried_state"] in (TrialState.PENDING.value, TrialState.RUNNING.value):
                again = "not yet" if row["retried_state"] == TrialState.PENDING.value else "running"
            else:
                again = f"{_cell(row['retried_on'] or UNKNOWN)} ({row['retried_state']})"
            lines.append(
                f"| {row['trial_id']} | {_time(row['ts'])} | {row['session']} | {_cell(row['on'] or UNKNOWN)} "
                f"| {_cell(row['reason'])} | {again} |"
            )
    lines += ["", "### Sessions", "",
              "A session is one `arborist run` or `resume` (or a restart of the tree actor), from its start to "
              "its last event.", "",
              "| session | started (UTC) | ended (UTC) | resumed | trials started | finished | lost |",
              "|---|---|---|---|---|---|---|"]
    for row in data["sessions"]:
        lines.append(
            f"| {row['session']} | {_time(row['start'])} | {_time(row['end'])} | {'yes' if row['resumed'] else 'no'} "
            f"| {row['started']} | {row['finished']} | {row['lost']} |"
        )
    return [*lines, ""]


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cell(text: str) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")[:300]
