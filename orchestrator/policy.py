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
from orchestrator.sequential import NoiseModel, sequential_test
from orchestrator.stats import Verdict
from orchestrator.tree import ROOT_ID, Node, NodeStatus, SearchTree
from trials.spec import TrialState


@dataclass(frozen=True)
class NodeVerdict:
    """What to do with a node whose requested trials have all finished."""

    status: NodeStatus | None  # None: keep it open and run `more_seeds`
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    more_seeds: list[int] = field(default_factory=list)
    confirm: bool = False  # the more_seeds are fresh seeds that must confirm a promotion


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


def judge_child(tree: SearchTree, node: Node, config: CampaignConfig, noise: NoiseModel) -> NodeVerdict:
    """Promote, prune, fail, confirm or ask for more seeds; a promotion whose results are
    implausible under the campaign's own noise model is SUSPECT instead, until a person decides."""
    verdict = _judge_evidence(tree, node, config, noise)
    if verdict.status is not NodeStatus.PROMOTED:
        return verdict
    findings = implausible_findings(tree, node, config, noise, verdict.evidence)
    if not findings:
        return verdict
    evidence = {**verdict.evidence, "suspect": findings}
    reason = "suspect, not promoted: " + "; ".join(f["detail"] for f in findings)
    return NodeVerdict(NodeStatus.SUSPECT, reason, evidence)


def implausible_findings(
    tree: SearchTree, node: Node, config: CampaignConfig, noise: NoiseModel, evidence: dict[str, Any]
) -> list[dict[str, Any]]:
    """The plausibility rules a would-be promotion breaks, each with its figures (docs/statistics.md).

    A real gain moves a metric within what seeds and the change's effect allow; a change that
    rewrites how the metric is computed (a constant loss) shows up as a gain far beyond the noise,
    a metric that no longer varies with the seed, or a metric pinned at a value it cannot pass.
    """
    assert node.parent_id is not None
    findings: list[dict[str, Any]] = []
    for name, metric in config.metrics.items():
        if metric.bounds is None:
            continue
        low, high = metric.bounds
        values = tree.completed_values(node.node_id, name)
        at = sorted(v for v in values.values() if (low is not None and v <= low) or (high is not None and v >= high))
        if at:
            findings.append({
                "rule": "at_bound", "metric": name, "bounds": [low, high], "values": at,
                "detail": f"{name} reaches its declared bound [{_bound(low)}, {_bound(high)}] ({at[0]:.6g})",
            })
    seeds = list(evidence.get("seeds") or [])
    mine = tree.completed_values(node.node_id, config.objective)
    theirs = tree.completed_values(node.parent_id, config.objective)
    child = [mine[s] for s in seeds if s in mine]
    parent = [theirs[s] for s in seeds if s in theirs]
    if len(child) >= 2 and _constant(child) and len(parent) >= 2 and not _constant(parent):
        findings.append({
            "rule": "zero_variance", "metric": config.objective, "value": child[0], "seeds": len(child),
            "parent_sd": float(np.std(parent, ddof=1)),
            "detail": f"{config.objective} is {child[0]:.6g} on all {len(child)} seeds while the parent's varies "
                      f"(sd {float(np.std(parent, ddof=1)):.3g})",
        })
    diffs = list(evidence.get("diffs") or [])
    cohort = noise_cohort(tree, node, config)
    # The noise is estimated without the node's own differences when others exist: a faked
    # metric must not set the yardstick it is measured by.
    estimate = noise.sigma_d(cohort) or noise.sigma_d(cohort, pending=diffs)
    if diffs and estimate is not None and estimate[0] > 0:
        gain, sigma_d, k = sum(diffs) / len(diffs), estimate[0], config.stats.suspect_sigma
        if gain > k * sigma_d:
            findings.append({
                "rule": "gain_beyond_noise", "gain": gain, "sigma_d": sigma_d, "sigmas": gain / sigma_d, "limit": k,
                "detail": f"gain {gain:+.4g} is {gain / sigma_d:.1f} sigma_d (sigma_d {sigma_d:.3g}), "
                          f"beyond stats.suspect_sigma = {k:g}",
            })
    return findings


def _constant(values: list[float]) -> bool:
    scale = max(1.0, max(abs(v) for v in values))
    return max(values) - min(values) <= 1e-12 * scale


def _bound(value: float | None) -> str:
    return "null" if value is None else f"{value:g}"


def _judge_evidence(tree: SearchTree, node: Node, config: CampaignConfig, noise: NoiseModel) -> NodeVerdict:
    """Promote, prune, fail, confirm or ask for more seeds, from the node's paired evidence.

    The sequential test (orchestrator/sequential.py) runs on the paired differences with the
    campaign's pooled noise estimate and the level the node was granted when it was created.
    A node that crosses the promotion boundary is then run on `stats.confirm_seeds` fresh seeds,
    and is promoted only if its gain holds there too.
    """
    failed = _failures(tree, node)
    if failed:
        return NodeVerdict(NodeStatus.FAILED, failed)
    assert node.parent_id is not None
    parent = tree.nodes[node.parent_id]
    diffs, seeds, mismatched = paired_differences(tree, node, parent, config)
    if node.confirm_seeds:
        return _confirm(tree, node, parent, config, diffs, seeds)
    stats = config.stats
    estimate = noise.sigma_d(noise_cohort(tree, node, config), pending=diffs)
    level = node.alpha_level if node.alpha_test else stats.alpha
    decision = sequential_test(
        diffs,
        sigma_d=estimate[0] if estimate else None,
        df=estimate[1] if estimate else 0.0,
        alpha=level,
        beta=stats.beta,
        theta=stats.theta,
        min_effect=stats.min_effect,
        n_min=min(stats.min_seeds, config.seeds.max),
        n_max=config.seeds.max,
        confidence=stats.confidence,
    )
    evidence = {"test": "truncated SPRT, pooled noise", **decision.to_dict(), "seeds": seeds, "diffs": diffs}
    if mismatched:
        evidence["fingerprint_mismatch_seeds"] = mismatched
    if decision.verdict is Verdict.CONTINUE:
        more = next_seeds(node, config, 1)
        if len(node.seeds) >= config.seeds.max and mismatched:
            reason = f"no comparable evidence at the seed cap: seeds {mismatched} ran under other fingerprints"
            return NodeVerdict(NodeStatus.PRUNED, reason, evidence)
        return NodeVerdict(None, decision.reason, evidence, more)
    if decision.verdict is Verdict.PRUNE:
        return NodeVerdict(NodeStatus.PRUNED, decision.reason, evidence)
    broken = guard_violations(tree, node, parent, config)
    if broken:
        evidence["guards"] = broken
        reason = "improves the objective but breaks a guard: " + "; ".join(broken)
        return NodeVerdict(NodeStatus.PRUNED, reason, evidence)
    if stats.confirm_seeds and node.origin == "search":
        fresh = next_seeds(node, config, stats.confirm_seeds)
        return NodeVerdict(None, decision.reason, evidence, fresh, confirm=True)
    return NodeVerdict(NodeStatus.PROMOTED, decision.reason, evidence)


def _confirm(
    tree: SearchTree, node: Node, parent: Node, config: CampaignConfig, diffs: list[float], seeds: list[int]
) -> NodeVerdict:
    """The promotion stands only if the gain holds on the fresh seeds too."""
    evidence = dict((node.decision or {}).get("evidence") or {})
    first = dict(tree.confirmations.get(node.node_id, {}))
    fresh = [d for d, s in zip(diffs, seeds, strict=True) if s in node.confirm_seeds]
    evidence.update(first)
    evidence.update({"confirm_seeds": node.confirm_seeds, "confirm_diffs": fresh, "seeds": seeds, "diffs": diffs})
    if not fresh:
        return NodeVerdict(NodeStatus.PRUNED, "its fresh seeds ran under other fingerprints", evidence)
    mean = sum(fresh) / len(fresh)
    seeds_text = ", ".join(str(s) for s in node.confirm_seeds)
    # The fresh seeds are a few draws: they refute the promotion only when their mean falls
    # more than one standard error below the minimum effect, which a real gain rarely does.
    sigma_d = float(first.get("sigma_d") or 0.0)
    tolerance = sigma_d / math.sqrt(len(fresh)) if math.isfinite(sigma_d) else 0.0
    evidence["confirm_tolerance"] = tolerance
    if mean > config.stats.min_effect - tolerance:
        reason = f"{first.get('reason', 'promotion boundary crossed')}; held on fresh seeds {seeds_text} ({mean:+.4g})"
        return NodeVerdict(NodeStatus.PROMOTED, reason, evidence)
    reason = f"crossed the promotion boundary, but did not hold on fresh seeds {seeds_text} ({mean:+.4g})"
    return NodeVerdict(NodeStatus.PRUNED, reason, evidence)


def paired_differences(
    tree: SearchTree, node: Node, parent: Node, config: CampaignConfig
) -> tuple[list[float], list[int], list[int]]:
    """The node's gains over its parent per shared seed (positive is better), in seed order."""
    objective = config.objective
    mine, theirs, mismatched = paired_values(tree, node.node_id, parent.node_id, objective)
    sign = 1.0 if config.metrics[objective].direction == "max" else -1.0
    seeds = sorted(s for s in mine if s in theirs)
    return [sign * (mine[s] - theirs[s]) for s in seeds], seeds, mismatched


def noise_cohort(tree: SearchTree, node: Node, config: CampaignConfig) -> str:
    """Trials whose noise is pooled together: one objective under one fingerprint."""
    for record in tree.node_trials(node.node_id):
        if record.result is not None:
            return f"{config.objective}:{record.result.fingerprint.comparability_key()}"
    return f"{config.objective}:"


def next_seeds(node: Node, config: CampaignConfig, count: int) -> list[int]:
    """The next `count` seeds the node has not run, in the campaign's sequence."""
    out: list[int] = []
    seed = config.seeds.start
    while len(out) < count:
        if seed not in node.seeds:
            out.append(seed)
        seed += 1
    return out


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


def estimate_vs_root(tree: SearchTree, node_id: str, config: CampaignConfig) -> float:
    """Paired mean gain of a node over the baseline (positive is better)."""
    if node_id == ROOT_ID:
        return 0.0
    diffs = paired_differences(tree, tree.nodes[node_id], tree.root, config)[0]
    return sum(diffs) / len(diffs) if diffs else -math.inf


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
    diffs = paired_differences(tree, tree.nodes[node_id], tree.root, config)[0]
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
    spent = tree.trials_spent()
    if spent >= budget.max_trials:
        return f"trial budget reached ({spent} of {budget.max_trials})"
    if tree.elapsed_s(now) >= budget.max_wall_s:
        return f"wall-clock budget reached ({budget.max_wall_s:.0f} s)"
    if budget.max_gpu_hours is not None:
        used = gpu_hours(tree, config)
        if used >= budget.max_gpu_hours:
            return f"GPU-hour budget reached ({used:.2f} of {budget.max_gpu_hours:g})"
    if budget.max_llm_usd is not None:
        usd = tree.llm_usd
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
