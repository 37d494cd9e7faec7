"""The web view's data: what `arborist serve` and `arborist report --html` show, as JSON.

Every figure comes from orchestrator/report.py (the summary, gains, controls, ablation); this
module only picks, aggregates and pages it, so that a campaign of 100,000 nodes is shown from a
few hundred rows: the tree as the incumbent's lineage with the best few children of each of its
nodes (the rest counted, loaded on demand), the forest plot as the best and worst effects plus a
histogram of all of them, tables in pages, and the control chart reduced per pixel column.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from orchestrator import chart, drift, report
from orchestrator.config import CampaignConfig
from orchestrator.tree import ROOT_ID, Node, NodeStatus, SearchTree
from trials.spec import TrialState

TOP_CHILDREN = 5  # children shown under each lineage node before "N more"
FOREST_ROWS = 40  # effects drawn in the forest plot (the best and the worst half each)
HISTOGRAM_BINS = 40
CHART_COLUMNS = 600  # pixel columns the control chart is reduced to
CONTROL_SERIES = 8  # control nodes drawn: the baseline, then those with the most controls
CONTROL_ROWS = 50  # rows of the controls table
REJECTED_ROWS = 50  # rejected proposals shown, the newest
PAGE_LIMIT = 200  # the most rows one page of a table or of children holds
LOG_TAIL_CHARS = 4000
# How a node ranks among its siblings: the verdicts a reader looks for first.
STATUS_RANK = {
    NodeStatus.PROMOTED: 0, NodeStatus.SUSPECT: 1, NodeStatus.BASELINE: 2, NodeStatus.OPEN: 3,
    NodeStatus.UNDECIDED: 4, NodeStatus.PRUNED: 5, NodeStatus.FAILED: 6,
}


@dataclass
class Campaign:
    """A replayed ledger, with what the view computes of it once per replay."""

    config: CampaignConfig
    tree: SearchTree
    _children_order: dict[str, list[str]] = field(default_factory=dict)

    def ordered_children(self, node_id: str) -> list[str]:
        """A node's children, best first (status, then gain), computed once per replay."""
        cached = self._children_order.get(node_id)
        if cached is None:
            node = self.tree.nodes[node_id]
            cached = sorted(node.children, key=lambda c: _sibling_key(self.tree.nodes[c]))
            self._children_order[node_id] = cached
        return cached


def load(config: CampaignConfig) -> Campaign:
    """Replay the campaign's ledger."""
    return Campaign(config, report.load_tree(config))


def _gain(node: Node) -> float | None:
    return report._clean(((node.decision or {}).get("evidence") or {}).get("mean"))


def _sibling_key(node: Node) -> tuple[int, float, int]:
    gain = _gain(node)
    return STATUS_RANK.get(node.status, 9), -(gain if gain is not None else -math.inf), node.created_seq


def node_row(tree: SearchTree, node: Node) -> dict[str, Any]:
    """One node as the tree and the tables show it."""
    evidence = (node.decision or {}).get("evidence") or {}
    return {
        "id": node.node_id, "parent": node.parent_id, "status": node.status.value,
        "change": node.change.describe() if node.change else "baseline",
        "kind": node.change.kind if node.change else "", "proposer": node.change.proposer if node.change else "",
        "gain": report._clean(evidence.get("mean")), "ci_low": report._clean(evidence.get("ci_low")),
        "ci_high": report._clean(evidence.get("ci_high")), "children": len(node.children),
        "trials": len(node.seeds), "depth": node.depth,
    }


def view_data(campaign: Campaign) -> dict[str, Any]:
    """The page's data: bounded whatever the tree's size."""
    config, tree = campaign.config, campaign.tree
    data = report.summary(config, tree)
    incumbent = data["incumbent"]
    return {
        "campaign": data["campaign"], "phase": data["phase"], "finished_reason": data["finished_reason"],
        "objective": data["objective"], "counts": data["counts"], "elapsed_s": data["elapsed_s"],
        "last_seq": tree.last_seq, "node_total": len(tree.nodes),
        "incumbent": None if incumbent is None else {
            "node_id": incumbent["node_id"], "branch": incumbent["branch"], "commit": incumbent["commit"],
            "gain": incumbent["gain_vs_baseline"], "metrics": incumbent["metrics"], "chain": incumbent["chain"],
        },
        "baseline_metrics": (data["baseline"] or {}).get("metrics", {}),
        "suspects": data["suspects"],
        "tree": tree_aggregate(campaign),
        "incumbent_history": incumbent_history(campaign),
        "forest": forest(tree),
        "controls": control_series(config, tree),
        "controls_table": {**data["controls"], "nodes": data["controls"]["nodes"][:CONTROL_ROWS],
                           "total": len(data["controls"]["nodes"])},
        "drift_events": data["drift_events"],
        "ablation": data["integration"]["ablation"],
        "integration": {k: data["integration"][k] for k in ("winners", "final")},
        "costs": costs(tree, data),
        "placement": {"nodes": data["placement"]["nodes"], "lost": len(data["placement"]["lost"]),
                      "sessions": data["placement"]["sessions"]},
        "rejected": {"rows": data["rejected_proposals"][-REJECTED_ROWS:], "total": len(data["rejected_proposals"])},
        "search_stopped": data["search_stopped"],
        "page_limit": PAGE_LIMIT,
    }


def tree_aggregate(campaign: Campaign, top: int = TOP_CHILDREN) -> dict[str, Any]:
    """The incumbent's lineage, root first, each with its best `top` children and the count of
    the rest; any node's children page in with `children()`."""
    tree = campaign.tree
    if ROOT_ID not in tree.nodes:
        return {"lineage": [], "children": {}}
    incumbent = tree.nodes.get(tree.incumbent_id or ROOT_ID) or tree.root
    lineage = [ROOT_ID, *incumbent.chain]
    on_lineage = set(lineage)
    kids: dict[str, dict[str, Any]] = {}
    for node_id in lineage:
        order = campaign.ordered_children(node_id)
        shown = [c for c in order if c not in on_lineage][:top]
        kids[node_id] = {"rows": [node_row(tree, tree.nodes[c]) for c in shown], "total": len(order)}
    return {"lineage": [node_row(tree, tree.nodes[n]) for n in lineage], "children": kids}


def children(campaign: Campaign, node_id: str, offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """One page of a node's children, best first."""
    tree = campaign.tree
    if node_id not in tree.nodes:
        raise KeyError(node_id)
    limit = max(1, min(limit, PAGE_LIMIT))
    order = campaign.ordered_children(node_id)
    page = order[max(0, offset): max(0, offset) + limit]
    return {"node": node_id, "offset": offset, "limit": limit, "total": len(order),
            "rows": [node_row(tree, tree.nodes[c]) for c in page]}


def nodes_page(campaign: Campaign, offset: int = 0, limit: int = 50, status: str = "") -> dict[str, Any]:
    """The decisions table, a page at a time, in creation order (optionally one status)."""
    tree = campaign.tree
    limit = max(1, min(limit, PAGE_LIMIT))
    ids = [n.node_id for n in tree.nodes.values() if n.status.value == status] if status else list(tree.nodes)
    page = ids[max(0, offset): max(0, offset) + limit]
    return {"offset": offset, "limit": limit, "total": len(ids), "status": status,
            "rows": [node_row(tree, tree.nodes[n]) for n in page]}


def node_detail(campaign: Campaign, node_id: str) -> dict[str, Any]:
    """Everything about one node: its decision and evidence, its change (diff or params), its
    trials with their metrics and log tails."""
    config, tree = campaign.config, campaign.tree
    node = tree.nodes.get(node_id)
    if node is None:
        raise KeyError(node_id)
    decision = dict(node.decision or {})
    evidence = dict(decision.pop("evidence", None) or {})
    # Per-block rows and raw diffs can be long: the counts say how many there were.
    for name in ("blocks", "diffs", "seeds"):
        if isinstance(evidence.get(name), list) and len(evidence[name]) > 20:
            evidence[name] = f"{len(evidence[name])} values"
    trials = []
    for record in tree.node_trials(node_id):
        result = record.result
        trials.append({
            "trial_id": record.trial_id, "seed": record.seed, "block": record.block, "state": record.state.value,
            "attempts": record.attempts,
            "metrics": {k: report._clean(v) for k, v in (result.metrics if result else {}).items()},
            "duration_s": round(result.duration_s, 2) if result else None,
            "message": result.message if result else "",
            "log_tail": (result.log_tail or "")[-LOG_TAIL_CHARS:] if result else "",
            "worker": result.worker if result else "",
        })
    change = node.change
    return {
        "row": node_row(tree, node),
        "chain": report.chain_of(tree, node) if node.node_id != ROOT_ID else [],
        "gain_vs_baseline": report.gain_vs_baseline(tree, config, node_id),
        "change": None if change is None else {
            "kind": change.kind, "aspect": change.aspect, "hypothesis": change.hypothesis,
            "proposer": change.proposer, "params": change.params, "diff": change.diff,
            "source_id": change.source_id,
        },
        "params": jsonable(node.params), "commit": node.commit, "decision": jsonable(decision),
        "evidence": jsonable(evidence),
        "metrics": report.node_metrics(tree, config, node_id), "trials": trials,
    }


def jsonable(value: Any) -> Any:
    """Ledger values as strict JSON: an undefined number (NaN, infinity) is null."""
    if isinstance(value, float):
        return report._clean(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def incumbent_history(campaign: Campaign) -> list[dict[str, Any]]:
    """Each incumbent in turn with its gain over the baseline (as estimated now), when it took
    over: the trials finished by then and the campaign's elapsed seconds."""
    tree, config = campaign.tree, campaign.config
    rows = []
    for change in tree.incumbent_changes:
        if change["node_id"] not in tree.nodes:
            continue
        gain = report.gain_vs_baseline(tree, config, change["node_id"])
        rows.append({**change, "elapsed_s": round(change["elapsed_s"], 1), "gain": gain["mean"],
                     "ci_low": gain["ci_low"], "ci_high": gain["ci_high"]})
    return rows


def forest(tree: SearchTree, rows: int = FOREST_ROWS, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """The decided effects with intervals: the best and the worst `rows / 2` drawn one by one,
    and a histogram of every gain."""
    decided = [n for n in tree.nodes.values() if n.node_id != ROOT_ID and _gain(n) is not None]
    decided.sort(key=lambda n: -(_gain(n) or 0.0))
    shown = decided if len(decided) <= rows else decided[: rows // 2] + decided[-(rows - rows // 2):]
    gains = sorted(g for g in (_gain(n) for n in decided) if g is not None)
    histogram: dict[str, Any] = {"low": None, "high": None, "counts": []}
    if gains:
        low, high = gains[0], gains[-1]
        width = (high - low) / bins if high > low else 1.0
        edges = [low + width * i for i in range(1, bins)]
        counts = [0] * bins
        for g in gains:
            counts[min(bins - 1, bisect.bisect_right(edges, g))] += 1
        histogram = {"low": low, "high": high if high > low else low + 1.0, "counts": counts}
    return {"total": len(decided), "rows": [node_row(tree, n) for n in shown], "histogram": histogram}


def control_series(config: CampaignConfig, tree: SearchTree) -> dict[str, Any]:
    """The control chart's data (as report.control_chart draws it), each series reduced to the
    lowest and highest point of each of CHART_COLUMNS columns."""
    window = config.stats.drift_window
    series = []
    all_points = []
    for node_id in drift.control_nodes(tree):
        points = [(float(p.order), float(p.value)) for p in drift.node_controls(tree, config, node_id)]
        reference = sum(v for _, v in points[:window]) / window if len(points) >= window else None
        series.append((node_id, points, reference))
        all_points.extend(points)
    # A long campaign has a control node per expanded parent: draw the busiest few.
    drawn = series[:1] + sorted(series[1:], key=lambda s: -len(s[1]))[: CONTROL_SERIES - 1]
    x_low = min((x for x, _ in all_points), default=0.0)
    x_high = max((x for x, _ in all_points), default=1.0)
    return {
        "series": [{"node_id": node_id, "count": len(points), "reference": reference,
                    "points": chart.downsample(points, x_low, x_high, CHART_COLUMNS)}
                   for node_id, points, reference in drawn],
        "total": len(series),
        "markers": [{"at": float(e["at_order"]), "node_id": e["node_id"], "z": report._clean(e.get("z"))}
                    for e in tree.drift_events],
        "objective": config.objective,
    }


def costs(tree: SearchTree, data: dict[str, Any]) -> dict[str, Any]:
    """Trial-hours, GPU-hours (each trial's duration times the GPUs its fingerprint counted),
    LLM calls, tokens and dollars."""
    gpu_s = 0.0
    for record in tree.trials.values():
        if record.result is not None and record.state is not TrialState.PENDING:
            gpu_s += record.result.duration_s * record.result.fingerprint.gpu_count
    llm = data["llm"]
    tokens = sum(int(row.get("prompt_tokens", 0) + row.get("completion_tokens", 0))
                 for row in llm["by_proposer"].values())
    return {
        "trial_hours": round(tree.trial_seconds / 3600, 3), "gpu_hours": round(gpu_s / 3600, 3),
        "llm_calls": llm["calls"], "llm_tokens": tokens, "llm_usd": llm["usd"],
        "llm_by_proposer": llm["by_proposer"],
    }


def export(campaign: Campaign, max_nodes: int = 2000, max_details: int = 300) -> dict[str, Any]:
    """The view for a file of its own: the page's data, the children of each node shown (up to
    `max_nodes` rows in all), the details of the first `max_details` of them, and the first page
    of the nodes table. What did not fit is counted in `left_out`."""
    data = view_data(campaign)
    tree = campaign.tree
    pages: dict[str, dict[str, Any]] = {}
    details: dict[str, dict[str, Any]] = {}
    queue = [row["id"] for row in data["tree"]["lineage"]]
    budget = max_nodes
    seen: set[str] = set()
    while queue and budget > 0:
        node_id = queue.pop(0)
        if node_id in seen:
            continue
        seen.add(node_id)
        page = children(campaign, node_id, 0, min(PAGE_LIMIT, budget))
        budget -= len(page["rows"])
        pages[node_id] = page
        queue.extend(row["id"] for row in page["rows"] if row["children"])
    shown = list(dict.fromkeys([*queue_order(data), *(r["id"] for p in pages.values() for r in p["rows"])]))
    for node_id in shown[:max_details]:
        details[node_id] = node_detail(campaign, node_id)
    table = nodes_page(campaign, 0, PAGE_LIMIT)
    return {
        **data, "static": True, "pages": pages, "details": details, "table": table,
        "left_out": {
            "tree_nodes": len(tree.nodes) - len(shown), "details": len(tree.nodes) - len(details),
            "table_rows": table["total"] - len(table["rows"]),
        },
    }


def queue_order(data: dict[str, Any]) -> list[str]:
    """The lineage first, then the children the page shows under it: whose details come first."""
    rows = data["tree"]["lineage"]
    return [r["id"] for r in rows] + [c["id"] for kids in data["tree"]["children"].values() for c in kids["rows"]]
