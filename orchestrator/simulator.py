"""A campaign simulator: the real engine, stats and policy against synthetic changes whose true
effects are known, so error rates and gains can be measured instead of hoped for.

Nothing here runs a trial: a synthetic proposer draws candidate changes with true effects from a
scenario, and each trial's value is drawn from the scenario's noise model. Trials run
`max_concurrent` at a time on a simulated clock, with per-node durations, so GPU-hours and
duration-aware scheduling are measured too. No Ray, no git, no disk.

The baselines (greedy keep-if-better with one seed or a k-seed mean, and random search) run on
the same scenarios, with the same trial budget.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from orchestrator.change import Change
from orchestrator.config import CampaignConfig
from orchestrator.dispatch import Dispatch
from orchestrator.engine import FINISHED, SearchEngine
from orchestrator.proposers.base import Outcome, ProposalContext, ProposerEvent
from orchestrator.tree import Event, Node, NodeStatus, SearchTree, TrialRecord
from trials.spec import TrialResult, TrialState

METRIC = "value"


@dataclass(frozen=True)
class Scenario:
    """How candidate changes and trial noise are drawn. Effects are in units of `sigma`."""

    name: str = "S"
    p_null: float = 0.70
    p_positive: float = 0.15  # the rest are harmful
    positive: tuple[float, float] = (0.5, 1.0)
    negative: tuple[float, float] = (-1.5, -0.5)
    sigma: float = 1.0
    rho: float = 0.6  # correlation of parent and child on the same seed
    budget: int = 400
    tail_df: float | None = None  # Student t noise with these degrees of freedom
    node_sigma_sd: float = 0.0  # log-sd of a per-node noise multiplier
    baseline_sigma: float = 1.0  # the baseline's noise, as a share of the true sigma (its first estimate)
    mean_duration_h: float = 1.0  # trial durations are lognormal per node around this
    duration_sd: float = 0.5

    def draw_effect(self, rng: np.random.Generator) -> float:
        u = rng.random()
        if u < self.p_null:
            return 0.0
        if u < self.p_null + self.p_positive:
            return float(rng.uniform(*self.positive)) * self.sigma
        return float(rng.uniform(*self.negative)) * self.sigma


SCENARIOS: dict[str, Scenario] = {
    "S": Scenario(),
    "heavy_tails": Scenario(name="heavy_tails", tail_df=3.0),
    "node_noise": Scenario(name="node_noise", node_sigma_sd=0.3),
    "sigma_x2": Scenario(name="sigma_x2", baseline_sigma=0.5),  # the true sigma is twice the first estimate
    "all_null": Scenario(name="all_null", p_null=1.0, p_positive=0.0),
}


@dataclass
class CampaignOutcome:
    """One simulated campaign, scored against the truth."""

    true_gain: float  # true effect of the final incumbent over the baseline, in sigma
    promoted: int
    false_promoted: int  # promoted changes whose true effect is <= 0
    positives_tested: int  # candidates with true effect >= 0.5 sigma that got a decision
    positives_found: int
    trials: int
    gpu_hours: float
    candidates: int


@dataclass
class _Truth:
    """True means and noise of the synthetic nodes, and the shared part of each seed's noise."""

    scenario: Scenario
    rng: np.random.Generator
    effects: dict[str, float] = field(default_factory=dict)  # candidate id -> true effect
    means: dict[str, float] = field(default_factory=dict)  # node id -> true mean
    node_scale: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    seed_noise: dict[int, float] = field(default_factory=dict)

    def noise(self) -> float:
        if self.scenario.tail_df is None:
            return float(self.rng.standard_normal())
        df = self.scenario.tail_df
        return float(self.rng.standard_t(df) / math.sqrt(df / (df - 2)))  # unit variance

    def add_node(self, node_id: str, mean: float) -> None:
        s = self.scenario
        self.means[node_id] = mean
        self.node_scale[node_id] = float(np.exp(self.rng.normal(0, s.node_sigma_sd))) if s.node_sigma_sd else 1.0
        self.durations[node_id] = float(s.mean_duration_h * np.exp(self.rng.normal(0, s.duration_sd)))

    def sample(self, node_id: str, seed: int, baseline_phase: bool) -> float:
        s = self.scenario
        sigma = s.sigma * self.node_scale[node_id] * (s.baseline_sigma if baseline_phase else 1.0)
        if seed not in self.seed_noise:
            self.seed_noise[seed] = self.noise()
        shared = math.sqrt(s.rho) * self.seed_noise[seed]
        own = math.sqrt(1 - s.rho) * self.noise()
        return self.means[node_id] + sigma * (shared + own)


class _SyntheticProposer:
    """Proposes fresh candidates, each with a true effect drawn from the scenario."""

    name = "synthetic"

    def __init__(self, truth: _Truth) -> None:
        self._truth = truth
        self._count = 0

    def propose(self, context: ProposalContext) -> Change | None:
        self._count += 1
        cid = f"c{self._count}"
        self._truth.effects[cid] = self._truth.scenario.draw_effect(self._truth.rng)
        return Change(kind="code", aspect="other", hypothesis=f"candidate {cid}", proposer=self.name,
                      diff=f"+candidate = {cid}\n", source_id=cid)

    def observe(self, change: Change, outcome: Outcome) -> None:
        """Synthetic candidates do not learn."""

    def exhausted(self) -> bool:
        return False

    def restore(self, change: Change) -> None:
        """Simulated campaigns are never resumed."""

    def busy(self) -> bool:
        return False

    def drain_events(self) -> list[ProposerEvent]:
        return []


class _SyntheticWorkspace:
    def __init__(self, truth: _Truth) -> None:
        self._truth = truth

    def check(self, parent: Node, change: Change) -> str:
        return ""

    def sources(self, parent: Node, change: Change) -> dict[str, tuple[str, str]] | None:
        return None

    def commit(self, parent: Node, node_id: str, change: Change, params: dict[str, Any]) -> str:
        effect = self._truth.effects.get(change.source_id, 0.0)
        if change.proposer == "integration":
            effect = sum(self._truth.effects[c] for c in _candidates_of(change))
        self._truth.add_node(node_id, self._truth.means[parent.node_id] + effect)
        return node_id


def _candidates_of(change: Change) -> list[str]:
    return [line.split("= ")[1] for line in change.diff.splitlines() if line.startswith("+candidate")]


def sim_config(scenario: Scenario, **overrides: Any) -> CampaignConfig:
    """A campaign config for simulation; `overrides` are config sections (stats=..., seeds=...)."""
    data: dict[str, Any] = {
        "name": f"sim-{scenario.name}",
        "project": "/nonexistent",
        "entrypoint": {"train": "true"},
        "metrics": {METRIC: {"direction": "max", "role": "objective"}},
        "search": {"proposers": [{"type": "random"}], "max_children": 10_000, "max_open_nodes": 2},
        # A scenario is bounded by its trial budget; on the simulated clock the product's default
        # wall budget (an hour) would end a campaign of hour-long trials after its baseline.
        "budget": {"max_trials": scenario.budget, "max_wall_s": math.inf},
        "integration": {"enabled": False},
        "ray": {"max_concurrent": 1},
        # Synthetic candidates are distinct by construction and their hypotheses are labels, so
        # the memory judges them by exact key alone.
        "memory": {"structural": False, "text_threshold": 1.0},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return CampaignConfig.model_validate(data)


def default_sim_config(scenario: Scenario, concurrent: int = 1) -> CampaignConfig:
    """The product's defaults (seeds, stats, policy); one change under test at a time, as the
    scenario's stream of candidates is defined, unless `concurrent` says otherwise."""
    return sim_config(scenario, ray={"max_concurrent": concurrent}, search={"max_open_nodes": concurrent})


def simulate_campaign(config: CampaignConfig, scenario: Scenario, seed: int) -> CampaignOutcome:
    """Run one campaign of the real engine against the scenario's truth."""
    return simulate(config, scenario, seed)[1]


def simulate(
    config: CampaignConfig, scenario: Scenario, seed: int, sink: Callable[[Event], None] | None = None
) -> tuple[SearchTree, CampaignOutcome]:
    """One campaign; the tree it grew (its events go to `sink`) and its score."""
    truth = _Truth(scenario, np.random.default_rng(seed))
    truth.add_node("n0", 0.0)
    clock = [0.0]  # simulated seconds: events, elapsed time and the wall budget all read it
    tree = SearchTree(sink=sink, clock=lambda: clock[0])
    engine = SearchEngine(config, tree, [_SyntheticProposer(truth)], _SyntheticWorkspace(truth))
    engine.start({}, "n0")
    tree.record("session_started", ts=0.0, resumed=False)
    running: list[tuple[float, int, str, str, dict[str, Any]]] = []
    trials = 0
    gpu_hours = 0.0
    order = 0
    while True:
        while len(running) < config.ray.max_concurrent:
            dispatch = engine.next_trial()
            if not isinstance(dispatch, Dispatch):
                break
            record = dispatch.record
            result = _result(record, truth, tree)
            duration = truth.durations[record.node_id]
            gpu_hours += duration
            trials += 1
            order += 1
            heapq.heappush(running, (clock[0] + duration * 3600.0, order, record.trial_id, dispatch.token, result))
        if not running:
            if engine.next_trial() == FINISHED:
                break
            raise RuntimeError("the engine waits with nothing running")  # a policy deadlock
        done_at, _, trial_id, token, result = heapq.heappop(running)
        clock[0] = done_at
        engine.record_result(trial_id, token, result)
    return tree, _score(tree, truth, trials, gpu_hours)


def _result(record: TrialRecord, truth: _Truth, tree: SearchTree) -> dict[str, Any]:
    baseline_phase = record.node_id == "n0" and tree.root.status is NodeStatus.OPEN
    value = truth.sample(record.node_id, record.seed, baseline_phase)
    result = TrialResult(record.trial_id, record.node_id, record.seed, TrialState.COMPLETE, metrics={METRIC: value})
    return result.to_dict()


def _score(tree: SearchTree, truth: _Truth, trials: int, gpu_hours: float) -> CampaignOutcome:
    sigma = truth.scenario.sigma
    promoted = [n for n in tree.nodes.values() if n.status is NodeStatus.PROMOTED and n.change is not None]
    false = sum(1 for n in promoted if truth.means[n.node_id] - truth.means[n.parent_id or "n0"] <= 0)
    decided = [n for n in tree.nodes.values() if n.change is not None and n.status is not NodeStatus.OPEN]
    positives = [n for n in decided if truth.means[n.node_id] - truth.means[n.parent_id or "n0"] >= 0.5 * sigma]
    found = sum(1 for n in positives if n.status is NodeStatus.PROMOTED)
    final = tree.incumbent_id or "n0"
    return CampaignOutcome(
        true_gain=truth.means[final] / sigma,
        promoted=len(promoted),
        false_promoted=false,
        positives_tested=len(positives),
        positives_found=found,
        trials=trials,
        gpu_hours=gpu_hours,
        candidates=len(truth.effects),
    )


# ----- baselines ---------------------------------------------------------------------------
def greedy_campaign(scenario: Scenario, seed: int, seeds_per_candidate: int) -> CampaignOutcome:
    """Keep-if-better, as single-run agent loops do: each candidate is measured on k fresh seeds
    and replaces the current best when its mean beats the best's recorded score.

    Comparing against a recorded score, not a re-run on the same seeds, is what such loops do,
    and it is why they crown noise: a lucky record blocks real improvements that come later.
    """
    truth = _Truth(scenario, np.random.default_rng(seed))
    truth.add_node("n0", 0.0)
    k = seeds_per_candidate
    next_seed = 0

    def measure(node: str, baseline: bool = False) -> float:
        nonlocal next_seed
        next_seed += k
        return float(np.mean([truth.sample(node, s, baseline) for s in range(next_seed - k, next_seed)]))

    best, best_score, trials = "n0", measure("n0", baseline=True), k
    promoted = false = positives = found = count = 0
    while trials + k <= scenario.budget:
        count += 1
        effect = scenario.draw_effect(truth.rng)
        node = f"n{count}"
        truth.add_node(node, truth.means[best] + effect)
        score = measure(node)
        trials += k
        positives += effect >= 0.5 * scenario.sigma
        if score > best_score:
            promoted += 1
            false += effect <= 0
            found += effect >= 0.5 * scenario.sigma
            best, best_score = node, score
    return CampaignOutcome(truth.means[best] / scenario.sigma, promoted, false, positives, found, trials,
                           trials * scenario.mean_duration_h, count)


def random_search_campaign(scenario: Scenario, seed: int, seeds_per_candidate: int = 3) -> CampaignOutcome:
    """Candidates drawn against the baseline (no tree), each measured on k seeds; at the end the
    one with the best mean is kept if it beats the baseline's mean."""
    truth = _Truth(scenario, np.random.default_rng(seed))
    truth.add_node("n0", 0.0)
    seeds = list(range(seeds_per_candidate))
    base = np.mean([truth.sample("n0", s, True) for s in seeds])
    trials = seeds_per_candidate
    scores: dict[str, float] = {}
    effects: dict[str, float] = {}
    while trials + seeds_per_candidate <= scenario.budget:
        node = f"n{len(scores) + 1}"
        effects[node] = scenario.draw_effect(truth.rng)
        truth.add_node(node, effects[node])
        scores[node] = float(np.mean([truth.sample(node, s, False) for s in seeds]))
        trials += seeds_per_candidate
    winner = max(scores, key=lambda n: scores[n])
    keep = scores[winner] > base
    positives = sum(1 for e in effects.values() if e >= 0.5 * scenario.sigma)
    gain = effects[winner] / scenario.sigma if keep else 0.0
    return CampaignOutcome(gain, int(keep), int(keep and effects[winner] <= 0), positives,
                           int(keep and effects[winner] >= 0.5 * scenario.sigma), trials,
                           trials * scenario.mean_duration_h, len(scores))


# ----- summaries ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    rule: str
    scenario: str
    campaigns: int
    fdr: float  # false-discovery share, pooled over campaigns
    mean_true_gain: float  # sigma
    power: float  # share of tested true effects >= 0.5 sigma that were promoted
    share_promoting_any: float
    mean_trials: float
    mean_gpu_hours: float

    def row(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def summarize(rule: str, scenario: Scenario, outcomes: list[CampaignOutcome]) -> Summary:
    promoted = sum(o.promoted for o in outcomes)
    tested = sum(o.positives_tested for o in outcomes)
    return Summary(
        rule=rule,
        scenario=scenario.name,
        campaigns=len(outcomes),
        fdr=sum(o.false_promoted for o in outcomes) / promoted if promoted else 0.0,
        mean_true_gain=float(np.mean([o.true_gain for o in outcomes])),
        power=sum(o.positives_found for o in outcomes) / tested if tested else 0.0,
        share_promoting_any=sum(1 for o in outcomes if o.promoted) / len(outcomes),
        mean_trials=float(np.mean([o.trials for o in outcomes])),
        mean_gpu_hours=float(np.mean([o.gpu_hours for o in outcomes])),
    )


def with_budget(scenario: Scenario, budget: int) -> Scenario:
    return replace(scenario, budget=budget)
