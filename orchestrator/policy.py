"""The selection policy: decisions as values, computed from the tree, never side effects.

What to run next, when a node is promoted or pruned, which node to expand, and when to stop.
The search service carries the decisions out and journals them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.config import CampaignConfig, MetricConfig
from orchestrator.stats import Decision, Verdict, decide, paired_comparison
from orchestrator.tree import ROOT_ID, Node, NodeStatus, SearchTree
from trials.spec import TrialState


@dataclass(frozen=True)
class NodeVerdict:
    """What to do with a node whose requested trials have all finished."""

    status: NodeStatus | None  # None: keep it open and run `more_seeds`
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    more_seeds: list[int] = field(default_factory=list)


def seed_sequence(config: CampaignConfig) -> list[int]:
    return [config.seeds.start + i for i in range(config.seeds.max)]


def node_is_settled(tree: SearchTree, node: Node) -> bool:
    """All trials of the node, and of its parent on the same seeds, have finished."""
    if any(not r.state.is_finished() for r in tree.node_trials(node.node_id)):
        return False
    if node.parent_id is None:
        return True
    parent = tree.nodes[node.parent_id]
    return all(
        tree.trials[t].state.is_finished()
        for t in (f"{parent.node_id}-s{s}" for s in node.seeds)
        if t in tree.trials
    ) and set(node.seeds) <= set(parent.seeds)


def paired_values(
    tree: SearchTree, node_id: str, other_id: str, metric: str
) -> tuple[dict[int, float], dict[int, float], list[int]]:
    """Values of two nodes on the seeds where both completed under the same fingerprint.

    Seeds whose two trials ran under different fingerprints (other hardware, software, data
    or budget) are left out and returned, so the evidence says what was not compared.
    """
    mine = tree.completed_values(node_id, metric)
    theirs = tree.completed_values(other_id, metric)
    keys = {
        nid: {r.seed: r.result.fingerprint.comparability_key() for r in tree.node_trials(nid) if r.result}
        for nid in (node_id, other_id)
    }
    mismatched = sorted(s for s in set(mine) & set(theirs) if keys[node_id][s] != keys[other_id][s])
    for seed in mismatched:
        mine.pop(seed)
        theirs.pop(seed)
    return mine, theirs, mismatched


def judge_root(tree: SearchTree, config: CampaignConfig) -> NodeVerdict:
    failed = _failures(tree, tree.root)
    if failed:
        return NodeVerdict(NodeStatus.FAILED, f"baseline failed: {failed}")
    values = tree.completed_values(ROOT_ID, config.objective)
    return NodeVerdict(NodeStatus.BASELINE, f"baseline measured on {len(values)} seeds")


def judge_child(tree: SearchTree, node: Node, config: CampaignConfig) -> NodeVerdict:
    """Promote, prune, fail, or ask for more seeds, from the node's paired evidence."""
    failed = _failures(tree, node)
    if failed:
        return NodeVerdict(NodeStatus.FAILED, failed)
    assert node.parent_id is not None
    parent = tree.nodes[node.parent_id]
    objective = config.objective
    mine, theirs, mismatched = paired_values(tree, node.node_id, parent.node_id, objective)
    comparison = paired_comparison(
        mine, theirs, direction=config.metrics[objective].direction, confidence=config.stats.confidence
    )
    siblings = sum(1 for c in parent.children if tree.nodes[c].status is not NodeStatus.FAILED)
    decision = decide(
        comparison,
        alpha=config.stats.alpha,
        siblings=siblings,
        min_effect=config.stats.min_effect,
        n_min=min(config.seeds.initial, config.seeds.max),
        n_max=config.seeds.max,
    )
    evidence = _evidence(decision, siblings)
    if mismatched:
        evidence["fingerprint_mismatch_seeds"] = mismatched
    if decision.verdict is Verdict.CONTINUE:
        if len(node.seeds) >= config.seeds.max:
            reason = f"no comparable evidence at the seed cap: seeds {mismatched} ran under other fingerprints"
            return NodeVerdict(NodeStatus.PRUNED, reason, evidence)
        seeds = seed_sequence(config)
        return NodeVerdict(None, decision.reason, evidence, [seeds[len(node.seeds)]])
    if decision.verdict is Verdict.PRUNE:
        return NodeVerdict(NodeStatus.PRUNED, decision.reason, evidence)
    broken = guard_violations(tree, node, parent, config)
    if broken:
        evidence["guards"] = broken
        reason = "improves the objective but breaks a guard: " + "; ".join(broken)
        return NodeVerdict(NodeStatus.PRUNED, reason, evidence)
    return NodeVerdict(NodeStatus.PROMOTED, decision.reason, evidence)


def guard_violations(tree: SearchTree, node: Node, parent: Node, config: CampaignConfig) -> list[str]:
    """Guards are checked on seed means, on the seeds the two nodes share."""
    problems = []
    for name, guard in config.guards.items():
        child_values, parent_values, _ = paired_values(tree, node.node_id, parent.node_id, name)
        shared = sorted(set(child_values) & set(parent_values))
        if not child_values:
            problems.append(f"guard metric {name} was never reported; check the evaluate step prints it")
            continue
        child_mean = sum(child_values[s] for s in shared or child_values) / len(shared or child_values)
        parent_mean = sum(parent_values[s] for s in shared) / len(shared) if shared else math.nan
        problems.extend(_check_guard(name, guard, child_mean, parent_mean))
    return problems


def _check_guard(name: str, guard: MetricConfig, child: float, parent: float) -> list[str]:
    problems = []
    if guard.max is not None and child > guard.max:
        problems.append(f"{name} {child:.4g} > max {guard.max:.4g}")
    if guard.min is not None and child < guard.min:
        problems.append(f"{name} {child:.4g} < min {guard.min:.4g}")
    if guard.max_ratio is not None and not (math.isnan(parent) or child <= guard.max_ratio * parent):
        problems.append(f"{name} {child:.4g} > {guard.max_ratio}x parent's {parent:.4g}")
    if guard.min_ratio is not None and not (math.isnan(parent) or child >= guard.min_ratio * parent):
        problems.append(f"{name} {child:.4g} < {guard.min_ratio}x parent's {parent:.4g}")
    return problems


def has_failure(tree: SearchTree, node: Node) -> bool:
    return bool(_failures(tree, node))


def _failures(tree: SearchTree, node: Node) -> str:
    for record in tree.node_trials(node.node_id):
        if record.state in (TrialState.FAIL, TrialState.TIMEOUT, TrialState.INVALID) and record.result:
            result = record.result
            stage = f" at stage {result.failure_stage.value}" if result.failure_stage else ""
            return f"trial {record.trial_id} {result.state.value}{stage}: {result.message}"
    return ""


def _evidence(decision: Decision, siblings: int) -> dict[str, Any]:
    evidence: dict[str, Any] = {"test": "paired t-test, one-sided, Bonferroni over siblings"}
    evidence["alpha_corrected"] = decision.alpha
    evidence["siblings"] = siblings
    if decision.comparison is not None:
        evidence.update(decision.comparison.to_dict())
    return evidence


def estimate_vs_root(tree: SearchTree, node_id: str, config: CampaignConfig) -> float:
    """Paired mean gain of a node over the baseline (positive is better)."""
    if node_id == ROOT_ID:
        return 0.0
    objective = config.objective
    mine, theirs, _ = paired_values(tree, node_id, ROOT_ID, objective)
    shared = [s for s in mine if s in theirs]
    if not shared:
        return -math.inf
    sign = 1.0 if config.metrics[objective].direction == "max" else -1.0
    return sign * sum(mine[s] - theirs[s] for s in shared) / len(shared)


def best_node(tree: SearchTree, config: CampaignConfig) -> str | None:
    """The incumbent: the measured node (baseline or promoted) with the best estimated gain."""
    candidates = [n.node_id for n in tree.nodes.values() if n.status.expandable and n.origin != "integration"]
    if not candidates:
        return None
    return max(candidates, key=lambda nid: (estimate_vs_root(tree, nid, config), -int(nid[1:])))


def expansion_parent(tree: SearchTree, config: CampaignConfig) -> Node | None:
    """The measured node (baseline or promoted) with the highest upper confidence bound.

    UCB = estimated gain over the baseline + exploration x its standard error, minus the share
    of its child budget already spent (times the same standard error), so a well-explored node
    yields to a promising, less-explored one. Ties go to the faster node, then the older one.
    Deterministic, so a replayed campaign expands the same nodes.
    """
    candidates = [
        n for n in tree.nodes.values()
        if n.status.expandable and n.origin != "integration" and len(n.children) < config.search.max_children
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda n: (_ucb(tree, n, config), -_mean_duration(tree, n), -int(n.node_id[1:])))


def _ucb(tree: SearchTree, node: Node, config: CampaignConfig) -> float:
    estimate, se = _estimate_and_se(tree, node.node_id, config)
    spent = len(node.children) / config.search.max_children
    return estimate + config.search.exploration * se * (1.0 - spent)


def _estimate_and_se(tree: SearchTree, node_id: str, config: CampaignConfig) -> tuple[float, float]:
    if node_id == ROOT_ID:
        values = list(tree.completed_values(ROOT_ID, config.objective).values())
        spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return 0.0, spread / math.sqrt(max(1, len(values)))
    mine, theirs, _ = paired_values(tree, node_id, ROOT_ID, config.objective)
    sign = 1.0 if config.metrics[config.objective].direction == "max" else -1.0
    diffs = [sign * (mine[s] - theirs[s]) for s in mine if s in theirs]
    if not diffs:
        return -math.inf, 0.0
    spread = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else abs(diffs[0])
    return float(np.mean(diffs)), spread / math.sqrt(len(diffs))


def _mean_duration(tree: SearchTree, node: Node) -> float:
    durations = [r.result.duration_s for r in tree.node_trials(node.node_id) if r.result is not None]
    return sum(durations) / len(durations) if durations else 0.0


def search_stop_reason(tree: SearchTree, config: CampaignConfig, now: float) -> str | None:
    """The first stopping criterion that holds, in words, or None."""
    budget = config.budget
    spent = sum(1 for r in tree.trials.values() if r.state is not TrialState.PENDING)
    if spent >= budget.max_trials:
        return f"trial budget reached ({spent} of {budget.max_trials})"
    if tree.elapsed_s(now) >= budget.max_wall_s:
        return f"wall-clock budget reached ({budget.max_wall_s:.0f} s)"
    if budget.max_gpu_hours is not None:
        used = gpu_hours(tree, config)
        if used >= budget.max_gpu_hours:
            return f"GPU-hour budget reached ({used:.2f} of {budget.max_gpu_hours:g})"
    if budget.max_llm_usd is not None:
        usd = sum(p.change.cost_usd for p in tree.proposals)
        if usd >= budget.max_llm_usd:
            return f"LLM spend cap reached (${usd:.2f} of ${budget.max_llm_usd:.2f})"
    if budget.patience is not None:
        stale = decided_since_incumbent(tree)
        if stale >= budget.patience:
            return f"patience exhausted: {stale} changes decided without a new incumbent"
    if budget.target is not None and tree.incumbent_id is not None:
        values = list(tree.completed_values(tree.incumbent_id, config.objective).values())
        if values:
            mean = sum(values) / len(values)
            reached = mean >= budget.target if config.metrics[config.objective].direction == "max" else (
                mean <= budget.target
            )
            if reached:
                where = f"{config.objective} {mean:.4g} on {tree.incumbent_id}"
                return f"target reached: {where} (target {budget.target:g})"
    return None


def gpu_hours(tree: SearchTree, config: CampaignConfig) -> float:
    """GPU-hours of finished trials: their duration times the GPUs each was given."""
    seconds = sum(r.result.duration_s for r in tree.trials.values() if r.result is not None)
    return seconds * config.ray.gpus_per_trial / 3600.0


def decided_since_incumbent(tree: SearchTree) -> int:
    """Search changes decided after the incumbent was promoted (or since the start)."""
    decided = [n for n in tree.nodes.values() if n.origin == "search" and n.status is not NodeStatus.OPEN]
    incumbent = tree.nodes.get(tree.incumbent_id or "")
    if incumbent is None or incumbent.parent_id is None:
        return len(decided)
    order = list(tree.nodes)
    return sum(1 for n in decided if order.index(n.node_id) > order.index(incumbent.node_id))
