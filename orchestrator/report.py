"""The lab notebook (Markdown) and the machine-readable summary, generated from the ledger alone."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scipy import stats as sps

from orchestrator import chart, cohorts, drift, placement, reader
from orchestrator.config import CampaignConfig
from orchestrator.policy import estimate_and_se
from orchestrator.stats import summarize
from orchestrator.tree import ROOT_ID, Node, NodeStatus, SearchTree
from trials.spec import TrialState

CHART_FILE = "control_chart.svg"


def load_tree(config: CampaignConfig) -> SearchTree:
    return reader.load_tree(config)


def _clean(value: float | None) -> float | None:
    """JSON has no NaN or infinity: an undefined number is null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def node_metrics(tree: SearchTree, config: CampaignConfig, node_id: str) -> dict[str, dict[str, Any]]:
    names = sorted({*config.metrics, "train_time_s"})
    out = {}
    for name in names:
        values = list(tree.completed_values(node_id, name).values())
        if values:
            stats = summarize(values, config.stats.confidence)
            out[name] = {k: _clean(v) if k != "n" else int(v) for k, v in stats.items()}
    return out


def chain_of(tree: SearchTree, node: Node) -> list[dict[str, Any]]:
    links = []
    for nid in node.chain:
        link = tree.nodes[nid]
        assert link.change is not None
        links.append({
            "node_id": nid, "kind": link.change.kind, "aspect": link.change.aspect,
            "proposer": link.change.proposer, "change": link.change.describe(),
        })
    return links


def gain_vs_baseline(tree: SearchTree, config: CampaignConfig, node_id: str) -> dict[str, Any]:
    """The node's estimated gain over the baseline: the sum of its chain's paired gains, each from
    its own blocks, with a normal interval from their standard errors."""
    if node_id == ROOT_ID:
        return {"n": 0, "mean": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    mean, se, n = estimate_and_se(tree, node_id, config)
    half = float(sps.norm.ppf(0.5 + config.stats.confidence / 2)) * se
    return {"n": n, "mean": _clean(mean), "ci_low": _clean(mean - half), "ci_high": _clean(mean + half)}


def summary(config: CampaignConfig, tree: SearchTree) -> dict[str, Any]:
    incumbent = tree.nodes.get(tree.incumbent_id or "")
    decisions = []
    for node in tree.nodes.values():
        if node.node_id == ROOT_ID:
            continue
        evidence = (node.decision or {}).get("evidence") or {}
        decisions.append({
            "node_id": node.node_id, "parent_id": node.parent_id, "status": node.status.value,
            "origin": node.origin, "change": node.change.describe() if node.change else "",
            "source_id": node.change.source_id if node.change else "",
            "proposer": node.change.proposer if node.change else "",
            "reason": (node.decision or {}).get("reason", ""),
            "gain": _clean(evidence.get("mean")), "ci_low": _clean(evidence.get("ci_low")),
            "ci_high": _clean(evidence.get("ci_high")), "p_value": _clean(evidence.get("p_value")),
            "n": evidence.get("n"),
            "test": evidence.get("test"), "e_value": _clean(evidence.get("e_value")),
            "threshold": _clean(evidence.get("threshold")),
            "screened_out": node.status is NodeStatus.PRUNED and evidence.get("test") == "screening",
            "blocks": _blocks_read(evidence),
        })
    rejected = [
        {"proposal_id": p.proposal_id, "parent_id": p.parent_id, "proposer": p.change.proposer,
         "source_id": p.change.source_id, "change": p.change.describe(), "reason": p.reason}
        for p in tree.proposals if p.verdict == "rejected"
    ]
    self_reported = any(r.result is not None and r.result.self_reported for r in tree.trials.values())
    unsandboxed = sum(1 for r in tree.trials.values() if r.result is not None and r.result.sandbox == "none")
    cohort_rows = cohorts.summary(config, tree)
    return {
        "campaign": config.name,
        "phase": tree.phase.value,
        "finished_reason": tree.finished_reason,
        "objective": {"name": config.objective, "direction": config.metrics[config.objective].direction},
        "metrics_self_reported": self_reported,
        "unsandboxed_trials": unsandboxed,
        "baseline": {"node_id": ROOT_ID, "metrics": node_metrics(tree, config, ROOT_ID)} if tree.nodes else None,
        "incumbent": None if incumbent is None else {
            "node_id": incumbent.node_id,
            "commit": incumbent.commit,
            "branch": f"arborist/node/{incumbent.node_id}" if incumbent.node_id != ROOT_ID else "arborist/root",
            "params": incumbent.params,
            "chain": chain_of(tree, incumbent),
            "metrics": node_metrics(tree, config, incumbent.node_id),
            "gain_vs_baseline": gain_vs_baseline(tree, config, incumbent.node_id),
        },
        "counts": tree.counts(),
        "suspects": suspects(config, tree),
        "decisions": decisions,
        "controls": controls(tree, config),
        "drift_events": drift_events(tree, config),
        "rejected_proposals": rejected,
        "memory_links": memory_links(tree),
        "integration": _integration(tree, config),
        "proposers": _proposers(tree),
        "llm": {"calls": tree.llm_calls, "usd": round(tree.llm_usd, 6), "by_proposer": tree.llm_by_proposer},
        "proposer_switches": tree.switches,
        "elapsed_s": round(tree.elapsed_s(), 1),
        "placement": placement.summary(tree),
        "search_stopped": search_stopped(config, tree),
        "cohorts": cohort_rows,
        "fingerprints": [row["key"] for row in cohort_rows],
    }


def search_stopped(config: CampaignConfig, tree: SearchTree) -> dict[str, Any] | None:
    """Why and when the search stopped; when the wall-clock budget was spent, and the trials it
    stopped (still running budget.grace_s after it)."""
    event = tree.search_stopped
    if event is None:
        return None
    stopped = [
        {"trial_id": r.trial_id, "node_id": r.node_id, "started_ts": r.started_ts,
         "ran_s": round(r.result.duration_s, 1) if r.result is not None else None}
        for r in tree.trials.values() if r.state is TrialState.STOPPED
    ]
    return {
        "reason": event.get("reason", ""), "ts": event["ts"], "elapsed_s": event.get("elapsed_s"),
        "max_wall_s": config.budget.max_wall_s, "grace_s": config.budget.grace_s,
        "wall_spent_at": event.get("wall_spent_at"), "stopped_trials": stopped,
    }


def _search_stopped_lines(data: dict[str, Any]) -> list[str]:
    stop = data["search_stopped"]
    if stop is None:
        return []
    lines = [f"- Search stopped at {_clock(stop['ts'])} UTC: {stop['reason']}"]
    if stop["wall_spent_at"] is not None:
        lines.append(f"- Wall-clock budget of {stop['max_wall_s']:g} s spent at {_clock(stop['wall_spent_at'])} UTC; "
                     "no trial of the search started after it")
    if stop["stopped_trials"]:
        names = ", ".join(f"{t['trial_id']} (ran {t['ran_s']:g} s)" for t in stop["stopped_trials"])
        lines.append(f"- Stopped by the budget, still running {stop['grace_s']:g} s after it was spent "
                     f"(STOPPED, not failures): {names}")
    return lines


def _blocks_read(evidence: dict[str, Any]) -> dict[str, Any] | None:
    """How many blocks a decision read, when they ran and how far apart a child and its control
    started: from the evidence as decided, so the report shows what the decision saw."""
    rows = evidence.get("blocks")
    if not rows:
        return None
    # A block's time is its earlier start: the control and the child were dispatched together.
    times = [min(float(row["child_started"]), float(row["parent_started"])) for row in rows]
    return {
        "count": len(rows), "first_ts": min(times), "last_ts": max(times),
        "max_apart": max(int(row["apart"]) for row in rows),
    }


def baseline_sd(tree: SearchTree, config: CampaignConfig) -> float | None:
    """The seed noise of one trial: the sd of the baseline's own seeds (the root's first
    `seeds.baseline` trials), before any block re-ran it. None below two values."""
    if ROOT_ID not in tree.nodes:
        return None
    values = [
        record.result.metrics[config.objective]
        for record in tree.node_trials(ROOT_ID)[: config.seeds.baseline]
        if record.state is TrialState.COMPLETE and record.result is not None
        and config.objective in record.result.metrics
    ]
    return _clean(statistics.stdev(values)) if len(values) >= 2 else None


def controls(tree: SearchTree, config: CampaignConfig) -> dict[str, Any]:
    """Per control node: its controls, the mean of its first and of its last drift window, and
    the shift between them in seed sds. The last window is reported once it no longer overlaps
    the first (2 x drift_window controls), as the drift monitor reads them."""
    window = config.stats.drift_window
    sd = baseline_sd(tree, config)
    nodes = []
    for node_id in drift.control_nodes(tree):
        points = drift.node_controls(tree, config, node_id)
        values = [p.value for p in points]
        first = _clean(statistics.fmean(values[:window])) if len(values) >= window else None
        last = _clean(statistics.fmean(values[-window:])) if len(values) >= 2 * window else None
        shift = None if first is None or last is None or not sd else _clean((last - first) / sd)
        nodes.append({
            "node_id": node_id, "controls": len(values), "first_mean": first, "last_mean": last,
            "shift_sds": shift, "fingerprints": len({p.cohort for p in points}),
        })
    return {"window": window, "baseline_sd": sd, "nodes": nodes}


def drift_events(tree: SearchTree, config: CampaignConfig) -> list[dict[str, Any]]:
    """The drift_detected events as journaled, with the shift also in seed sds."""
    sd = baseline_sd(tree, config)
    rows = []
    for event in tree.drift_events:
        shift = _clean(event.get("shift"))
        rows.append({
            "node_id": event["node_id"], "cohort": event.get("cohort", ""),
            "since_order": event.get("since_order"), "at_order": event["at_order"],
            "reference_mean": _clean(event.get("reference_mean")), "recent_mean": _clean(event.get("recent_mean")),
            "shift": shift, "shift_sds": None if shift is None or not sd else _clean(shift / sd),
            "z": _clean(event.get("z")), "seq": event["seq"], "ts": event["ts"],
        })
    return rows


def control_chart(config: CampaignConfig, tree: SearchTree) -> str:
    """The controls in the order they ran, as an SVG control chart (orchestrator/chart.py)."""
    window = config.stats.drift_window
    series = []
    for node_id in drift.control_nodes(tree):
        points = drift.node_controls(tree, config, node_id)
        reference = statistics.fmean(p.value for p in points[:window]) if len(points) >= window else None
        series.append(chart.Series(node_id, [(p.order, p.value) for p in points], reference))
    markers = [
        chart.Marker(float(event["at_order"]), f"drift {event['node_id']} (z {float(event['z']):+.1f})")
        for event in tree.drift_events
    ]
    direction = config.metrics[config.objective].direction
    return chart.control_chart(
        series, markers, title=f"Controls of {config.name}: {config.objective} over the campaign (trials finished)",
        y_label=f"{config.objective} ({direction}imize)",
    )


def memory_links(tree: SearchTree) -> list[dict[str, Any]]:
    """Each tested revisit and sweep step with the earlier results it was linked to: the same
    change tried before (a revisit), or the knob's earlier steps (a sweep step)."""
    by_id = {p.proposal_id: p for p in tree.proposals}
    links = []
    for proposal in tree.proposals:
        kind = proposal.memory.get("kind")
        if proposal.verdict != "accepted" or kind not in ("revisit", "sweep-step"):
            continue
        earlier_ids = proposal.memory.get("sweep") or [proposal.memory.get("earlier")]
        earlier = []
        for earlier_id in earlier_ids:
            other = by_id.get(earlier_id or "")
            if other is None:
                continue
            node = tree.nodes.get(other.node_id or "")
            evidence = ((node.decision or {}).get("evidence") or {}) if node is not None else {}
            earlier.append({
                "proposal_id": other.proposal_id, "node_id": other.node_id, "parent_id": other.parent_id,
                "change": other.change.describe(), "status": node.status.value if node else "REJECTED",
                "gain": _clean(evidence.get("mean")) if node else None,
            })
        links.append({"node_id": proposal.node_id, "parent_id": proposal.parent_id, "kind": kind,
                      "knob": proposal.memory.get("knob", ""), "change": proposal.change.describe(),
                      "reason": proposal.memory.get("reason", ""), "earlier": earlier})
    return links


def _memory_section(data: dict[str, Any]) -> list[str]:
    if not data["memory_links"]:
        return []
    lines = ["", "## Revisits and sweep steps", "",
             "Changes tried again in a new context (a revisit: another parent, or a retry after a failure) and "
             "further values of a knob already tried (a sweep step), each with the earlier results it was linked "
             "to (docs/memory.md).", "",
             "| node | on | kind | change | earlier results |", "|---|---|---|---|---|"]
    for link in data["memory_links"]:
        earlier = "; ".join(
            f"{e['node_id'] or e['proposal_id']} on {e['parent_id']}: {_cell(e['change'])} ({e['status']}"
            + (f", gain {_fmt_signed(e['gain'])}" if e["gain"] is not None else "") + ")"
            for e in link["earlier"]) or "–"
        kind = f"sweep step on {link['knob']}" if link["kind"] == "sweep-step" and link["knob"] else link["kind"]
        lines.append(f"| {link['node_id']} | {link['parent_id']} | {kind} | {_cell(link['change'])} | {earlier} |")
    return lines


def _proposers(tree: SearchTree) -> dict[str, dict[str, int]]:
    """Per proposer: what it proposed, what memory caught (repeats) or linked to an earlier result
    (revisits, sweep steps), what the statistics made of the rest."""
    stats: dict[str, dict[str, int]] = {}
    for proposal in tree.proposals:
        row = stats.setdefault(proposal.change.proposer, {
            "proposals": 0, "accepted": 0, "repeats": 0, "revisits": 0, "sweep_steps": 0, "invalid": 0,
            "promoted": 0, "pruned": 0, "failed": 0,
        })
        row["proposals"] += 1
        if proposal.verdict == "accepted":
            row["accepted"] += 1
            kind = proposal.memory.get("kind")
            if kind == "revisit":
                row["revisits"] += 1
            elif kind == "sweep-step":
                row["sweep_steps"] += 1
            node = tree.nodes.get(proposal.node_id or "")
            status = node.status.value.lower() if node is not None else ""
            if status in row:
                row[status] += 1
        elif proposal.duplicate_of:
            row["repeats"] += 1
        else:
            row["invalid"] += 1
    return stats


def _integration(tree: SearchTree, config: CampaignConfig) -> dict[str, Any]:
    grafts = []
    for proposal in tree.proposals:
        if proposal.change.proposer != "integration":
            continue
        node = tree.nodes.get(proposal.node_id or "")
        grafts.append({
            "winner": proposal.change.source_id, "onto": proposal.parent_id,
            "node_id": proposal.node_id,
            "status": node.status.value if node else "CONFLICT",
            "reason": ((node.decision or {}).get("reason", "") if node else proposal.reason),
        })
    kept = [g["node_id"] for g in grafts if g["status"] == NodeStatus.PROMOTED.value]
    return {
        "winners": tree.winners,
        "grafts": grafts,
        "final": kept[-1] if kept else (tree.winners[0] if tree.winners else None),
        "ablation": _ablation(tree, config, grafts),
    }


def _ablation(tree: SearchTree, config: CampaignConfig, grafts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each branch winner's gain alone (over the baseline) and in the combination (over what it
    was grafted on), with intervals. A change that helps alone but adds clearly less on top of
    the combination is a conflict in effect."""
    rows = []
    by_winner = {g["winner"]: g for g in grafts}
    for index, winner in enumerate(tree.winners):
        alone = gain_vs_baseline(tree, config, winner)
        graft = by_winner.get(winner)
        if index == 0:
            combined, kept, conflict = alone, True, None
        elif graft is None:
            combined, kept, conflict = None, False, "not tried (integration budget)"
        elif graft["node_id"] is None:
            combined, kept, conflict = None, False, f"textual: {graft['reason']}"
        else:
            evidence = (tree.nodes[graft["node_id"]].decision or {}).get("evidence") or {}
            combined = {k: _clean(evidence.get(k)) for k in ("n", "mean", "ci_low", "ci_high")}
            kept = graft["status"] == NodeStatus.PROMOTED.value
            conflict = None
            low, high = alone.get("ci_low"), combined.get("ci_high")
            if not kept and low is not None and high is not None and high < low:
                conflict = "in effect: adds clearly less on top of the combination than alone"
        chain = chain_of(tree, tree.nodes[winner])
        rows.append({
            "winner": winner, "changes": [link["change"] for link in chain], "alone": alone,
            "in_combination": combined, "kept": kept, "conflict": conflict,
        })
    return rows


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _fmt_signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.4g}"


def suspects(config: CampaignConfig, tree: SearchTree) -> list[dict[str, Any]]:
    """Nodes waiting for a person's verdict: the rules they broke, their figures, the commands."""
    rows = []
    for node in tree.suspect_nodes():
        evidence = (node.decision or {}).get("evidence") or {}
        rows.append({
            "node_id": node.node_id, "parent_id": node.parent_id,
            "change": node.change.describe() if node.change else "",
            "gain": _clean(evidence.get("mean")), "findings": list(evidence.get("suspect") or []),
            "approve": f"arborist approve {config.campaign_dir} {node.node_id}",
            "reject": f"arborist reject {config.campaign_dir} {node.node_id}",
        })
    return rows


def _suspects_section(data: dict[str, Any]) -> list[str]:
    if not data["suspects"]:
        return []
    lines = ["## Suspect results: a person decides", "",
             "These changes would have been promoted, but their results are implausible under the campaign's own "
             "noise model (docs/statistics.md). None is crowned until you approve it.", ""]
    for row in data["suspects"]:
        lines += [f"### {row['node_id']} (on {row['parent_id']}): {row['change']}", "",
                  f"- gain {_fmt_signed(row['gain'])}"]
        for finding in row["findings"]:
            figures = ", ".join(f"{k}={v}" for k, v in finding.items() if k not in ("rule", "detail"))
            lines.append(f"- rule `{finding['rule']}`: {finding['detail']} ({figures})")
        lines += [f"- real: `{row['approve']}`", f"- not real: `{row['reject']}`", ""]
    return lines


def notebook(config: CampaignConfig, tree: SearchTree) -> str:
    data = summary(config, tree)
    objective = data["objective"]
    lines = [
        f"# Campaign {config.name}",
        "",
        f"- Phase: **{data['phase']}**" + (f" ({data['finished_reason']})" if data["finished_reason"] else ""),
        f"- Objective: `{objective['name']}` ({objective['direction']}imize), decided on the "
        + ("train step's own output (**self-reported**: no frozen evaluator)" if data["metrics_self_reported"]
           else "frozen evaluate step"),
        f"- Trials: {_counts(data['counts']['trials'])}; nodes: {_counts(data['counts']['nodes'])}",
        f"- Elapsed: {data['elapsed_s']:.0f} s",
        *_search_stopped_lines(data),
        "",
    ]
    lines += _suspects_section(data)
    if data["unsandboxed_trials"]:
        lines[1:1] = [
            "",
            f"> **WARNING: {data['unsandboxed_trials']} trials ran UNSANDBOXED** (no bubblewrap on their "
            "worker, or sandbox.mode: none): their changes could read the campaign folder and the worker's "
            "secrets and tamper with what the evaluator saw. Install bubblewrap on the workers "
            "(docs/security.md).",
        ]
    lines += _incumbent_section(data)
    lines += ["## Decisions", "",
              "Each child is compared with its parent in blocks: the parent's control trial and the child's trial "
              "on one fresh seed, run together. A child is first screened on its first blocks; one that passes is "
              "tested on the blocks run after that, by an e-value against the threshold its level in the "
              "campaign's error control sets (docs/statistics.md). Gain is positive when better. *test*: the "
              "e-value and the threshold it must reach, or *screened out*; *blocks*: the blocks the decision "
              "read, when they ran (UTC), and the most trials finished between the starts of a child's trial "
              "and its control.", "",
              "| node | parent | change | proposer | status | gain | CI | p | n | test | blocks | reason |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in data["decisions"]:
        lines.append(
            f"| {d['node_id']} | {d['parent_id']} | {_cell(d['change'])} | {d['proposer']} | {d['status']} | "
            f"{_fmt_signed(d['gain'])} | {_fmt_signed(d['ci_low'])} to {_fmt_signed(d['ci_high'])} | "
            f"{_fmt(d['p_value'], 3)} | {d['n'] or '–'} | {_test_cell(d)} | {_blocks_cell(d['blocks'])} | "
            f"{_cell(d['reason'])} |"
        )
    lines += _controls_section(data)
    lines += _memory_section(data)
    lines += ["", "## Rejected proposals", ""]
    if not data["rejected_proposals"]:
        lines.append("None.")
    else:
        lines += ["| proposal | on | proposer | change | reason |", "|---|---|---|---|---|"]
        for p in data["rejected_proposals"]:
            lines.append(
                f"| {p['proposal_id']} | {p['parent_id']} | {p['proposer']} | {_cell(p['change'])} "
                f"| {_cell(p['reason'])} |"
            )
    lines += ["", "## Failed trials", ""]
    failed = [r for r in tree.trials.values() if r.state in (TrialState.FAIL, TrialState.TIMEOUT, TrialState.INVALID)]
    if not failed:
        lines += ["None.", ""]
    for record in failed:
        assert record.result is not None
        stage = record.result.failure_stage.value if record.result.failure_stage else "-"
        lines += [f"### {record.trial_id}: {record.state.value} (stage {stage})", "", record.result.message, ""]
        if record.result.log_tail:
            lines += ["```", record.result.log_tail.rstrip()[-2000:], "```", ""]
    lines += placement.section(data["placement"])
    lines += _integration_section(data)
    lines += _proposers_section(data)
    lines += cohorts.section(data["cohorts"], tree, config.objective)
    return "\n".join(lines)


def _test_cell(decision: dict[str, Any]) -> str:
    if decision["screened_out"]:
        return "screened out"
    if decision["test"] == "e-process":
        return f"e {_fmt_e(decision['e_value'])} / {_fmt_e(decision['threshold'])}"
    return decision["test"] or "–"


def _fmt_e(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _blocks_cell(blocks: dict[str, Any] | None) -> str:
    """E.g. "4 blocks 12:01:05-12:07:40, <=2 apart"; a span past midnight says by how many days."""
    if not blocks:
        return "–"
    count, first, last = blocks["count"], blocks["first_ts"], blocks["last_ts"]
    days = (datetime.fromtimestamp(last, UTC).date() - datetime.fromtimestamp(first, UTC).date()).days
    span = _clock(first) if _clock(first) == _clock(last) and not days else (
        f"{_clock(first)}-{_clock(last)}" + (f" (+{days} d)" if days else ""))
    return f"{count} block{'s' if count != 1 else ''} {span}, <={blocks['max_apart']} apart"


def _controls_section(data: dict[str, Any]) -> list[str]:
    ctl = data["controls"]
    sd, window = ctl["baseline_sd"], ctl["window"]
    lines = [
        "", "## Controls and drift", "",
        f"![control chart]({CHART_FILE})", "",
        "The controls are the completed trials of every node that served as a comparison's reference: the "
        "baseline (its own seeds, then its trial in every block), later each node whose children were compared "
        "with it (all its trials, those of its own comparison included). "
        "The same configuration measured again and again, in dispatch order, shows whether conditions drifted "
        "during the campaign; comparisons stay fair either way, as each pairs trials run together. "
        f"Means are over the first and the last {window} controls; the shift is in seed sds (the sd of the "
        f"baseline's own seeds: {_fmt(sd)}).", "",
        "| control node | controls run | first-window mean | last-window mean | shift (seed sds) |",
        "|---|---|---|---|---|",
    ]
    for row in ctl["nodes"]:
        lines.append(
            f"| {row['node_id']} | {row['controls']} | {_fmt(row['first_mean'])} | {_fmt(row['last_mean'])} | "
            f"{_fmt_signed(row['shift_sds'])} |"
        )
    mixed = [row["node_id"] for row in ctl["nodes"] if row["fingerprints"] > 1]
    if mixed:
        lines += ["", f"Controls of {', '.join(mixed)} ran under more than one fingerprint: the drift monitor "
                  "reads each fingerprint apart, the means above mix them."]
    lines.append("")
    if not data["drift_events"]:
        return [*lines, "No drift detected."]
    lines += ["*at* and *since*: the campaign's clock (trials finished) when the last and the first control "
              "read started.", "",
              "| drift of | at | since | shift | shift (seed sds) | z |",
              "|---|---|---|---|---|---|"]
    for event in data["drift_events"]:
        since = event["since_order"]
        lines.append(
            f"| {event['node_id']} | {event['at_order']} | {'–' if since is None else since} | "
            f"{_fmt_signed(event['shift'])} | {_fmt_signed(event['shift_sds'])} | {_fmt_signed(event['z'])} |"
        )
    return lines


def _proposers_section(data: dict[str, Any]) -> list[str]:
    lines = ["", "## Proposers", "",
             "| proposer | proposals | accepted | repeats | revisits | sweep steps | invalid | promoted | pruned "
             "| failed "
             "| LLM calls | tokens | cost |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    llm = data["llm"]["by_proposer"]
    for name, row in data["proposers"].items():
        calls = llm.get(name, {})
        tokens = int(calls.get("prompt_tokens", 0) + calls.get("completion_tokens", 0))
        lines.append(
            f"| {name} | {row['proposals']} | {row['accepted']} | {row['repeats']} | {row['revisits']} "
            f"| {row['sweep_steps']} | {row['invalid']} "
            f"| {row['promoted']} | {row['pruned']} | {row['failed']} | {int(calls.get('calls', 0))} "
            f"| {tokens} | ${calls.get('usd', 0.0):.4f} |"
        )
    lines.append("")
    lines.append(f"LLM spend: ${data['llm']['usd']:.4f} over {data['llm']['calls']} calls.")
    for switch in data["proposer_switches"]:
        lines.append(f"- {switch['proposer']} switched from {switch['previous']} to {switch['mode']}: "
                     f"{switch['reason']}")
    return lines


def _incumbent_section(data: dict[str, Any]) -> list[str]:
    inc = data["incumbent"]
    if inc is None:
        return ["## Incumbent", "", "None yet.", ""]
    gain = inc["gain_vs_baseline"]
    lines = [
        "## Incumbent", "",
        f"**{inc['node_id']}** (branch `{inc['branch']}` in the campaign repository, commit `{inc['commit'][:12]}`); "
        f"gain over the baseline {_fmt_signed(gain['mean'])} (CI {_fmt_signed(gain['ci_low'])} to "
        f"{_fmt_signed(gain['ci_high'])}, n={gain['n']}).", "",
    ]
    if inc["chain"]:
        lines += ["Chain of changes from the baseline:", ""]
        lines += [f"1. {link['node_id']}: {link['change']} ({link['proposer']})" for link in inc["chain"]]
        lines.append("")
    lines += ["| metric | baseline | incumbent |", "|---|---|---|"]
    base = (data["baseline"] or {}).get("metrics", {})
    for name, stats in inc["metrics"].items():
        b = base.get(name)
        lines.append(f"| {name} | {_interval(b)} | {_interval(stats)} |")
    return [*lines, ""]


def _interval(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "–"
    return f"{_fmt(stats['mean'])} [{_fmt(stats['ci_low'])}, {_fmt(stats['ci_high'])}] (n={stats['n']})"


def _integration_section(data: dict[str, Any]) -> list[str]:
    integ = data["integration"]
    lines = ["## Integration", ""]
    if not integ["winners"]:
        return [*lines, "No integration: fewer than two branches were promoted."]
    lines.append(f"Branch winners, best first: {', '.join(integ['winners'])}.")
    lines.append("")
    for graft in integ["grafts"]:
        lines.append(f"- graft {graft['winner']} onto {graft['onto']}: {graft['status']} ({graft['reason']})")
    lines += ["", f"Final combination: **{integ['final']}**.", "", "### Ablation", "",
              "Each winner's gain alone (over the baseline) and in the combination (over what it was grafted on).", "",
              "| winner | changes | alone | in combination | kept | conflict |", "|---|---|---|---|---|---|"]
    for row in integ["ablation"]:
        lines.append(
            f"| {row['winner']} | {_cell('; '.join(row['changes']))} | {_gain(row['alone'])} | "
            f"{_gain(row['in_combination'])} | {'yes' if row['kept'] else 'no'} | {_cell(row['conflict'] or '')} |"
        )
    return lines


def _gain(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    return f"{_fmt_signed(stats['mean'])} [{_fmt_signed(stats['ci_low'])}, {_fmt_signed(stats['ci_high'])}]"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) or "none"


def _cell(text: str) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")[:300]


def write_notebook(config: CampaignConfig, tree: SearchTree, path: Path | None = None) -> Path:
    assert config.campaign_dir is not None
    path = path or Path(config.campaign_dir) / "report.md"
    # Beside the notebook, where its relative image link finds it.
    (path.parent / CHART_FILE).write_text(control_chart(config, tree))
    path.write_text(notebook(config, tree))
    return path



