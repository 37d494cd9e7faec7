"""The selection policy: decisions as values, computed from the tree, never side effects.

What to run next, when a node is promoted or pruned, which node to expand, and when to stop.
The search service carries the decisions out and journals them.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator import blocks
from orchestrator.config import CampaignConfig, MetricConfig
from orchestrator.noise import NoiseModel
from orchestrator.sequential import passed, screen, sequential_test
from orchestrator.stats import Verdict
from orchestrator.tree import ROOT_ID, Node, NodeStatus, SearchTree
from trials.spec import TrialState


@dataclass(frozen=True)
class NodeVerdict:
    """What to do with a node whose requested trials have all finished."""

    status: NodeStatus | None  # None: keep it open and run another block
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    start_test: bool = False  # screening passed: the node's test begins (its level, the frozen noise pool)


def seed_sequence(config: CampaignConfig) -> list[int]:
    return [config.seeds.start + i for i in range(config.seeds.max)]


def judge_root(tree: SearchTree, config: CampaignConfig) -> NodeVerdict:
    failed = _failures(tree, tree.root)
    if failed:
        return NodeVerdict(NodeStatus.FAILED, f"baseline failed: {failed}")
    values = tree.completed_values(ROOT_ID, config.objective)
    return NodeVerdict(NodeStatus.BASELINE, f"baseline measured on {len(values)} seeds")


def judge_child(tree: SearchTree, node: Node, config: CampaignConfig, noise: NoiseModel) -> NodeVerdict:
    """Promote, prune, fail, or keep open for another block; a promotion whose results are
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
    """Fail, screen, start the test, or decide the test, from the node's blocks with its parent.

    Screening (orchestrator/sequential.py `screen`) reads the first `stats.screen_blocks` blocks
    with the campaign's pooled noise; a child that passes starts its test, which reads only blocks
    requested after that, with the level the campaign's error control granted it (orchestrator/fdr.py)
    and the noise pool frozen at its start.
    """
    failed = _failures(tree, node)
    if failed:
        return NodeVerdict(NodeStatus.FAILED, failed)
    assert node.parent_id is not None
    parent = tree.nodes[node.parent_id]
    stats = config.stats
    diffs, pairs = blocks.paired_differences(tree, node, parent, config)
    evidence: dict[str, Any] = {"seeds": pairs.seeds, "diffs": diffs}
    if pairs.excluded:
        evidence["excluded_seeds"] = {str(seed): why for seed, why in pairs.excluded.items()}
    # seeds.max caps the test's seeds; screening's come on top, so screening never eats the test.
    screened = stats.screen_blocks if node.origin == "search" else 0
    at_cap = len(node.seeds) >= config.seeds.max + screened
    if not node.test:
        if node.origin != "search" or stats.screen_blocks == 0:
            return NodeVerdict(None, "enters its test without screening", evidence, start_test=True)
        screen_diffs, screen_pairs = blocks.paired_differences(
            tree, node, parent, config, limit=blocks.screen_window(config)
        )
        decision = screen(
            screen_diffs, pool=noise.pooled(noise_cohort(tree, node, config)), blocks=stats.screen_blocks,
            screen_z=stats.screen_z, min_effect=stats.min_effect, confidence=stats.confidence,
        )
        evidence = {"test": "screening", **decision.to_dict(), **evidence,
                    "screen_seeds": screen_pairs.seeds, "blocks": blocks.block_times(tree, node, screen_pairs)}
        if decision.verdict is Verdict.PRUNE:
            return NodeVerdict(NodeStatus.PRUNED, decision.reason, evidence)
        if passed(decision):
            return NodeVerdict(None, decision.reason, evidence, start_test=True)
        if at_cap:
            reason = f"no comparable evidence at the seed cap: {decision.reason}"
            return NodeVerdict(NodeStatus.PRUNED, reason, evidence)
        return NodeVerdict(None, decision.reason, evidence)
    test_diffs, test_pairs = blocks.paired_differences(tree, node, parent, config, since_seq=node.test_seq)
    decision = sequential_test(
        test_diffs, level=node.level, pool=node.test_pool, beta=stats.beta, theta=stats.theta,
        min_effect=stats.min_effect, n_min=min(stats.min_seeds, config.seeds.max), n_max=config.seeds.max,
        confidence=stats.confidence, clip=stats.clip,
    )
    evidence = {
        "test": "e-process", **decision.to_dict(), **evidence, "test_seeds": test_pairs.seeds,
        "test_diffs": test_diffs, "blocks": blocks.block_times(tree, node, test_pairs),
        "screening": tree.screenings.get(node.node_id, {}),
    }
    if decision.verdict is Verdict.PRUNE:
        return NodeVerdict(NodeStatus.PRUNED, decision.reason, evidence)
    if decision.verdict is Verdict.CONTINUE:
        if at_cap:
            return NodeVerdict(NodeStatus.PRUNED, f"inconclusive at the seed cap ({config.seeds.max})", evidence)
        return NodeVerdict(None, decision.reason, evidence)
    broken = guard_violations(tree, node, parent, config)
    if broken:
        evidence["guards"] = broken
        reason = "improves the objective but breaks a guard: " + "; ".join(broken)
        return NodeVerdict(NodeStatus.PRUNED, reason, evidence)
    last_block = max((tree.trials[f"{node.node_id}-s{s}"].requested_seq for s in test_pairs.seeds), default=0)
    if tree.last_drift_seq > last_block and not at_cap:
        drift = tree.drift_events[-1]
        reason = (f"promotion paused: drift of {drift['node_id']}'s controls was detected after its last block; "
                  f"waiting for a block run since ({decision.reason})")
        return NodeVerdict(None, reason, {**evidence, "paused_by_drift": drift})
    return NodeVerdict(NodeStatus.PROMOTED, decision.reason, evidence)


def noise_cohort(tree: SearchTree, node: Node, config: CampaignConfig) -> str:
    """Trials whose noise is pooled together: one objective under one fingerprint."""
    for record in tree.node_trials(node.node_id):
        if record.result is not None:
            return f"{config.objective}:{record.result.fingerprint.comparability_key()}"
    return f"{config.objective}:"


def guard_violations(tree: SearchTree, node: Node, parent: Node, config: CampaignConfig) -> list[str]:
    """Guards are checked on seed means, on the seeds the two nodes share."""
    problems = []
    for name, guard in config.guards.items():
        pairs = blocks.paired(tree, node, parent, name, config)
        child_values = dict(zip(pairs.seeds, pairs.child, strict=True)) or tree.completed_values(node.node_id, name)
        parent_values = dict(zip(pairs.seeds, pairs.parent, strict=True))
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
    """Estimated gain of a node over the baseline (positive is better): the sum of the paired
    mean gains along its chain, each measured in blocks with its own parent, so drift between
    one edge's blocks and another's does not enter."""
    return estimate_and_se(tree, node_id, config)[0] if node_id != ROOT_ID else 0.0


class Ranking:
    """The measured node (baseline or promoted) with the highest key, kept from step to step.

    A node's key moves only when the tree touches it (a trial it reads finished, a child was
    added, it was decided: `SearchTree.touched`), so only those are keyed again; keying every
    measured node at every step cost milliseconds per thousand nodes. Keys are unique (the node
    number breaks ties), so the answer is the plain maximum over the candidates.
    """

    def __init__(self, key: Callable[[Node], tuple[float, ...]], eligible: Callable[[Node], bool]) -> None:
        self._key = key
        self._eligible = eligible
        self._keys: dict[str, tuple[float, ...]] = {}  # candidate -> its current key
        self._heap: list[tuple[tuple[float, ...], str]] = []  # (negated key, node): stale entries are skipped
        self._seen = 0  # entries of tree.touched read

    def best(self, tree: SearchTree) -> Node | None:
        touched = tree.touched[self._seen:]
        self._seen = len(tree.touched)
        for node_id in dict.fromkeys(touched):
            node = tree.nodes[node_id]
            if not (node.status.expandable and self._eligible(node)):
                self._keys.pop(node_id, None)
                continue
            key = self._key(node)
            if self._keys.get(node_id) != key:
                self._keys[node_id] = key
                heapq.heappush(self._heap, (tuple(-k for k in key), node_id))
        while self._heap:
            negated, node_id = self._heap[0]
            if self._keys.get(node_id) == tuple(-k for k in negated):
                return tree.nodes[node_id]
            heapq.heappop(self._heap)
        return None


def incumbent_ranking(tree: SearchTree, config: CampaignConfig) -> Ranking:
    """The incumbent: the measured node with the best estimated gain over the baseline."""
    return Ranking(
        key=lambda n: (estimate_vs_root(tree, n.node_id, config), -int(n.node_id[1:])),
        eligible=lambda n: n.origin != "integration",
    )


def expansion_ranking(tree: SearchTree, config: CampaignConfig) -> Ranking:
    """The node to expand: the measured node with the highest upper confidence bound.

    UCB = estimated gain over the baseline + exploration x its standard error, minus the share
    of its child budget already spent (times the same standard error), so a well-explored node
    yields to a promising, less-explored one. Ties go to the faster node, then the older one.
    Deterministic, so a replayed campaign expands the same nodes.
    """
    return Ranking(
        key=lambda n: (_ucb(tree, n, config), -_mean_duration(tree, n), -int(n.node_id[1:])),
        eligible=lambda n: n.origin != "integration" and len(n.children) < config.search.max_children,
    )


def _ucb(tree: SearchTree, node: Node, config: CampaignConfig) -> float:
    estimate, se, _ = estimate_and_se(tree, node.node_id, config)
    spent = len(node.children) / config.search.max_children
    return estimate + config.search.exploration * se * (1.0 - spent)


def _derived(tree: SearchTree, node_id: str, name: str, compute: Callable[[], Any]) -> Any:
    """A figure derived from the node's finished trials, computed once until one of them changes
    (the tree drops it then): the policy reads these for every measured node at every step."""
    figures = tree.derived.setdefault(node_id, {})
    if name not in figures:
        figures[name] = compute()
    return figures[name]


def estimate_and_se(tree: SearchTree, node_id: str, config: CampaignConfig) -> tuple[float, float, int]:
    """A node's estimated gain over the baseline, its standard error, and the pairs behind it."""
    result: tuple[float, float, int] = _derived(tree, node_id, "estimate", lambda: _estimate(tree, node_id, config))
    return result


def _estimate(tree: SearchTree, node_id: str, config: CampaignConfig) -> tuple[float, float, int]:
    if node_id == ROOT_ID:
        values = list(tree.completed_values(ROOT_ID, config.objective).values())
        spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return 0.0, spread / math.sqrt(max(1, len(values))), 0
    total, variance, count = 0.0, 0.0, 0
    for step in tree.nodes[node_id].chain:
        edge = _derived(tree, step, "gain", lambda step=step: _gain(tree, step, config))  # type: ignore[misc]
        if edge is None:
            return -math.inf, 0.0, 0
        total += edge[0]
        variance += edge[1]
        count += edge[2]
    return total, math.sqrt(variance), count


def _gain(tree: SearchTree, node_id: str, config: CampaignConfig) -> tuple[float, float, int] | None:
    """One edge of a chain: the node's paired mean gain over its parent, its variance, its pairs."""
    node = tree.nodes[node_id]
    assert node.parent_id is not None
    diffs = blocks.paired_differences(tree, node, tree.nodes[node.parent_id], config)[0]
    if not diffs:
        return None
    spread = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else abs(diffs[0])
    return float(np.mean(diffs)), spread * spread / len(diffs), len(diffs)


def _mean_duration(tree: SearchTree, node: Node) -> float:
    def compute() -> float:
        durations = [r.result.duration_s for r in tree.node_trials(node.node_id) if r.result is not None]
        return sum(durations) / len(durations) if durations else 0.0

    duration: float = _derived(tree, node.node_id, "duration", compute)
    return duration


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
    return tree.trial_seconds * config.ray.gpus_per_trial / 3600.0


def decided_since_incumbent(tree: SearchTree) -> int:
    """Search changes decided after the incumbent was promoted (or since the start)."""
    decided = [n for n in tree.nodes.values() if n.origin == "search" and n.status is not NodeStatus.OPEN]
    incumbent = tree.nodes.get(tree.incumbent_id or "")
    if incumbent is None or incumbent.parent_id is None:
        return len(decided)
    order = list(tree.nodes)
    return sum(1 for n in decided if order.index(n.node_id) > order.index(incumbent.node_id))
