"""The campaign's cohorts: its measured trials grouped by fingerprint. The report's
"Comparability" section, and `cohorts` in its JSON summary (`arborist report --json`).

Two trials are compared only when their fingerprints' comparability keys are equal (the GPU
model and count, Python, packages, lockfile, data and budget: trials/spec.py). A campaign whose
trials ran on two GPU models therefore has two cohorts, and every pair behind a decision lies
inside one of them. The section shows each cohort's hardware, where its trials ran, and the
baseline's objective there, so that a shift between GPU models is seen rather than averaged away.
"""

from __future__ import annotations

import statistics
from typing import Any, TypeGuard

from orchestrator.config import CampaignConfig
from orchestrator.placement import machine
from orchestrator.tree import ROOT_ID, SearchTree
from trials.spec import Fingerprint, TrialResult, TrialState


def measured(result: TrialResult | None) -> TypeGuard[TrialResult]:
    """A trial result taken on a worker (a trial the budget stopped has no fingerprint)."""
    return result is not None and result.state is not TrialState.STOPPED


def summary(config: CampaignConfig, tree: SearchTree) -> list[dict[str, Any]]:
    """One row per cohort, the largest first: its key, hardware, trial and node counts, the
    machines its trials ran on, and the baseline's objective over its completed trials there."""
    groups: dict[str, dict[str, Any]] = {}
    for record in tree.trials.values():
        result = record.result
        if not measured(result):
            continue
        fp = result.fingerprint
        group = groups.setdefault(fp.comparability_key(), {
            "fingerprint": fp, "trials": 0, "nodes": set(), "machines": set(), "drivers": set(),
            "cuda": set(), "baseline": [],
        })
        group["trials"] += 1
        group["nodes"].add(record.node_id)
        where = machine(result.placement)
        if where:
            group["machines"].add(where)
        group["drivers"].update(d for d in (fp.gpu_driver,) if d)
        group["cuda"].update(c for c in (fp.cuda_version,) if c)
        value = result.metrics.get(config.objective)
        if record.node_id == ROOT_ID and record.state is TrialState.COMPLETE and value is not None:
            group["baseline"].append(float(value))
    rows = []
    for key, group in groups.items():
        first: Fingerprint = group["fingerprint"]
        baseline = group["baseline"]
        rows.append({
            "key": key, "gpu_model": first.gpu_model, "gpu_count": first.gpu_count,
            "gpu_drivers": sorted(group["drivers"]), "cuda_versions": sorted(group["cuda"]),
            "python": first.python, "budget_s": first.budget_s, "trials": group["trials"], "nodes": len(group["nodes"]),
            "machines": sorted(group["machines"]),
            "baseline": {"n": len(baseline), "mean": statistics.fmean(baseline) if baseline else None},
        })
    return sorted(rows, key=lambda row: (-row["trials"], row["key"]))


def hardware(row: dict[str, Any]) -> str:
    """E.g. "2x NVIDIA H100 (driver 550.54, CUDA 12.4)", or "no GPU"."""
    if not row["gpu_count"]:
        return "no GPU"
    detail = [f"driver {', '.join(row['gpu_drivers'])}"] if row["gpu_drivers"] else []
    detail += [f"CUDA {', '.join(row['cuda_versions'])}"] if row["cuda_versions"] else []
    name = row["gpu_model"] or "GPU of unknown model"
    return f"{row['gpu_count']}x {name}" + (f" ({', '.join(detail)})" if detail else "")


def section(rows: list[dict[str, Any]], tree: SearchTree, objective: str) -> list[str]:
    """The notebook's "Comparability" section, from summary()."""
    lines = ["## Comparability", ""]
    if len(rows) <= 1:
        where = f" ({hardware(rows[0])}, Python {rows[0]['python'] or '?'})" if rows else ""
        return [*lines, f"Every trial ran under one fingerprint{where}: hardware, software, data and budget.", ""]
    lines += [
        f"Trials ran under {len(rows)} fingerprints, each a cohort: only trials of one cohort are compared, so "
        "every decision rests on pairs run under one GPU model, one software stack, one data set and one budget. "
        f"*baseline*: the mean {objective} of the baseline's completed trials in the cohort.", "",
        "| cohort | GPUs | Python | trials | nodes | machines | baseline (n) |", "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = row["baseline"]
        baseline = f"{base['mean']:.4g} ({base['n']})" if base["mean"] is not None else "–"
        lines.append(
            f"| {row['key']} | {hardware(row)} | {row['python'] or '–'} | {row['trials']} | {row['nodes']} "
            f"| {len(row['machines'])} | {baseline} |"
        )
    return [*lines, "", *_differences(tree), ""]


def _differences(tree: SearchTree) -> list[str]:
    """What differs between the fingerprints, and which comparisons left seeds out because of it."""
    prints = list({
        r.result.fingerprint.comparability_key(): r.result.fingerprint
        for r in tree.trials.values() if measured(r.result)
    }.values())
    differing = [f for f in Fingerprint.COMPARED if len({getattr(fp, f) for fp in prints}) > 1]
    lines = [f"They differ in: {', '.join(differing)}."] if differing else []
    for node in tree.nodes.values():
        excluded = ((node.decision or {}).get("evidence") or {}).get("excluded_seeds") or {}
        for why in sorted(set(excluded.values())):
            seeds = sorted(int(seed) for seed, reason in excluded.items() if reason == why)
            lines.append(f"- {node.node_id} vs {node.parent_id}: seeds {seeds} not compared ({why})")
    return lines
