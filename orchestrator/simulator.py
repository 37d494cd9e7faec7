"""A campaign simulator: the real engine, stats and policy against synthetic changes whose true
effects are known, so error rates and gains can be measured instead of hoped for.

Nothing here runs a trial: a synthetic proposer draws candidate changes with true effects from a
scenario, and each trial's value is drawn from the scenario's noise model. Trials run
`max_concurrent` at a time on a simulated clock, with per-node durations, so GPU-hours and
duration-aware scheduling are measured too. No Ray, no git, no disk.

Beyond noise, a scenario can hold what makes real campaigns lie: drift of the metric over the
campaign (a machine warming up, a cache filling), machines that each read a little high or low
and drift on their own, and changes that help alone but hurt together (interacting pairs).

The baselines (greedy keep-if-better with one seed or a k-seed mean, paired greedy, and random
search) run on the same scenarios, with the same trial budget, and face the same drift and
machines per trial dispatched.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from orchestrator.change import Change, Claim
from orchestrator.config import CampaignConfig
from orchestrator.dispatch import Dispatch
from orchestrator.engine import FINISHED, SearchEngine
from orchestrator.proposers.base import Answer, ProposalContext, Proposer
from orchestrator.proposers.ready import ReadyProposer
from orchestrator.tree import Event, Node, NodeStatus, SearchTree, TrialRecord
from trials.spec import TrialResult, TrialState

METRIC = "value"
ROOT = "n0"


@dataclass(frozen=True)
class Scenario:
    """How candidate changes and trial noise are drawn. Effects, drift and offsets are in units of
    `sigma`; every default leaves the scenario as it was before drift, machines and interactions."""

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
    drift: float = 0.0  # added to the k-th trial dispatched in the campaign: drift * k, whatever the node
    machines: int = 1
    machine_offset_sd: float = 0.0  # each machine reads this much high or low, fixed for the campaign
    machine_drift: float = 0.0  # added to the j-th trial run on a machine: machine_drift * j
    interaction_share: float = 0.0  # share of positive candidates that come in interacting pairs
    interaction: float = -1.5  # added to the truth of a node whose chain completes a pair

    def draw_effect(self, rng: np.random.Generator) -> float:
        u = rng.random()
        if u < self.p_null:
            return 0.0
        if u < self.p_null + self.p_positive:
            return float(rng.uniform(*self.positive)) * self.sigma
        return float(rng.uniform(*self.negative)) * self.sigma

    @property
    def effect(self) -> float:
        """The typical size of a real improvement: the middle of the positive range, in sigma."""
        return 0.0 if self.p_positive <= 0 else (self.positive[0] + self.positive[1]) / 2

    @property
    def signal(self) -> str:
        """ "null" when nothing can help; "low" when improvements are small and rare (typical
        effect <= 0.5 sigma with at least 70% null changes), where false discoveries are cheapest
        to make and dearest to pay for; else "normal"."""
        if self.p_positive <= 0:
            return "null"
        return "low" if self.effect <= 0.5 and self.p_null >= 0.7 else "normal"


SCENARIOS: dict[str, Scenario] = {
    "S": Scenario(),
    "heavy_tails": Scenario(name="heavy_tails", tail_df=3.0),
    "node_noise": Scenario(name="node_noise", node_sigma_sd=0.3),
    "sigma_x2": Scenario(name="sigma_x2", baseline_sigma=0.5),  # the true sigma is twice the first estimate
    "all_null": Scenario(name="all_null", p_null=1.0, p_positive=0.0),
    "drift": Scenario(name="drift", drift=0.02),
    "all_null_drift": Scenario(name="all_null_drift", p_null=1.0, p_positive=0.0, drift=0.02),
    "low_signal": Scenario(
        name="low_signal",
        p_null=0.85,
        p_positive=0.075,
        positive=(0.1, 0.5),
        negative=(-0.5, -0.1),
        tail_df=3.0,
        rho=0.1,
    ),
    "interactions": Scenario(name="interactions", interaction_share=0.5),
    "machines": Scenario(name="machines", machines=4, machine_offset_sd=0.5, machine_drift=0.01),
}


# ----- the scenario grid -----------------------------------------------------------------------
GRID_EFFECTS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)  # positives uniform in [0.5e, 1.5e] sigma
GRID_NULLS: tuple[float, ...] = (0.5, 0.7, 0.9)
GRID_TAILS: tuple[float | None, ...] = (None, 5.0, 3.0)  # normal, Student t with 5 and 3 df
GRID_RHOS: tuple[float, ...] = (0.0, 0.5, 0.9)
GRID_DRIFTS: tuple[float, ...] = (0.0, 0.01, 0.03)
# A fractional design over the five factors above (digits: the level of each, in that order):
# every level of a 4-level factor appears 6 times, of a 3-level factor 8 times, and no two cells
# are alike. Pairs of factors are near balance: this is the best, by a chi-square score over all
# pairs, of 5,000 random designs with balanced columns, written out so that the grid does not
# depend on numpy's generator streams.
_GRID_DESIGN = (
    *("12120", "00200", "20101", "30000", "12100", "01222", "31111", "32022", "10221", "11002", "22111", "21221"),
    *("02021", "00210", "31110", "20012", "21200", "20122", "10022", "12211", "31001", "02010", "01112", "32202"),
)


def grid_cell(effect: float, null: float, tail_df: float | None, rho: float, drift: float) -> Scenario:
    """One cell of the grid: harmful changes mirror the helpful ones, the rest split evenly."""
    tails = "N" if tail_df is None else f"{tail_df:g}"
    name = f"e{effect:g}-n{round(null * 100)}-t{tails}-r{rho:g}-d{drift:g}"
    return Scenario(
        name=name,
        p_null=null,
        p_positive=(1 - null) / 2,
        positive=(0.5 * effect, 1.5 * effect),
        negative=(-1.5 * effect, -0.5 * effect),
        tail_df=tail_df,
        rho=rho,
        drift=drift,
    )


def grid() -> list[Scenario]:
    """The 24 cells of the fractional design, then an all-null cell for each drift level."""
    cells = []
    for row in _GRID_DESIGN:
        e, n, t, r, d = (int(digit) for digit in row)
        cells.append(grid_cell(GRID_EFFECTS[e], GRID_NULLS[n], GRID_TAILS[t], GRID_RHOS[r], GRID_DRIFTS[d]))
    return cells + [grid_cell(0.0, 1.0, None, 0.5, drift) for drift in GRID_DRIFTS]


@dataclass
class CampaignOutcome:
    """One simulated campaign, scored against the truth."""

    true_gain: float  # true effect of the final incumbent over the baseline, in sigma
    promoted: int
    false_promoted: int  # promoted changes whose true effect over their parent is <= 0
    positives_tested: int  # candidates with true effect >= 0.5 sigma that got a decision
    positives_found: int
    trials: int
    gpu_hours: float
    candidates: int

    @property
    def fdp(self) -> float:
        """The campaign's false-discovery proportion (0 when it promoted nothing)."""
        return self.false_promoted / max(self.promoted, 1)


@dataclass
class _Truth:
    """True means and noise of the synthetic nodes, the shared part of each seed's noise, and the
    machines trials run on.

    Effects, noise, node scales and durations come from `rng` in the order they always did;
    machine offsets and interacting pairs come from `layout`, so that a scenario without them
    draws exactly the campaign it drew before they existed.
    """

    scenario: Scenario
    rng: np.random.Generator
    layout: np.random.Generator
    effects: dict[str, float] = field(default_factory=dict)  # candidate id -> own true effect
    means: dict[str, float] = field(default_factory=dict)  # node id -> true mean
    chains: dict[str, frozenset[str]] = field(default_factory=dict)  # node id -> candidates it holds
    partner: dict[str, str] = field(default_factory=dict)  # candidate id -> the one it interacts with
    node_scale: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    seed_noise: dict[int, float] = field(default_factory=dict)
    offsets: list[float] = field(default_factory=lambda: [0.0])  # per machine, in sigma
    machine_runs: list[int] = field(default_factory=lambda: [0])  # trials each machine has run
    dispatched: int = 0  # trials dispatched in the campaign
    _waiting: str | None = None  # an interacting candidate whose partner has not been drawn yet
    _next_machine: int = 0

    @classmethod
    def for_campaign(cls, scenario: Scenario, seed: int) -> _Truth:
        layout = np.random.default_rng([seed, 1])
        machines = max(1, scenario.machines)
        offsets = layout.normal(0.0, scenario.machine_offset_sd, machines) if scenario.machine_offset_sd else None
        truth = cls(
            scenario,
            np.random.default_rng(seed),
            layout,
            offsets=[0.0] * machines if offsets is None else [float(x) for x in offsets],
            machine_runs=[0] * machines,
        )
        truth.add_node(ROOT, None, [])
        return truth

    # ----- candidates and nodes --------------------------------------------------------------
    def draw_candidate(self, cid: str) -> float:
        """A fresh candidate's own effect; some positive ones are paired with the next such one."""
        s = self.scenario
        effect = s.draw_effect(self.rng)
        self.effects[cid] = effect
        if effect > 0 and s.interaction_share > 0 and self.layout.random() < s.interaction_share:
            if self._waiting is None:
                self._waiting = cid
            else:
                self.partner[cid], self.partner[self._waiting] = self._waiting, cid
                self._waiting = None
        return effect

    def add_node(self, node_id: str, parent_id: str | None, candidates: Sequence[str]) -> float:
        """A node holding its parent's candidates and `candidates`; its true effect over the parent
        (own effects, plus the interaction for each pair it completes)."""
        s = self.scenario
        above = self.chains[parent_id] if parent_id is not None else frozenset()
        new = [c for c in candidates if c not in above]
        chain = above.union(new)
        effect = sum((self.effects.get(c, 0.0) for c in new), 0.0)
        completed = self._pairs(chain) - self._pairs(above)
        if completed:
            effect += completed * s.interaction * s.sigma
        self.chains[node_id] = chain
        self.means[node_id] = (self.means[parent_id] if parent_id is not None else 0.0) + effect
        self.node_scale[node_id] = float(np.exp(self.rng.normal(0, s.node_sigma_sd))) if s.node_sigma_sd else 1.0
        self.durations[node_id] = float(s.mean_duration_h * np.exp(self.rng.normal(0, s.duration_sd)))
        return effect

    def _pairs(self, chain: frozenset[str]) -> int:
        if not self.partner:
            return 0
        return sum(1 for c in chain if self.partner.get(c) in chain) // 2

    # ----- trials ----------------------------------------------------------------------------
    def noise(self) -> float:
        if self.scenario.tail_df is None:
            return float(self.rng.standard_normal())
        df = self.scenario.tail_df
        return float(self.rng.standard_t(df) / math.sqrt(df / (df - 2)))  # unit variance

    def sample(self, node_id: str, seed: int, baseline_phase: bool) -> float:
        """The node's true mean plus this seed's noise: what a trial reads on a steady machine."""
        s = self.scenario
        sigma = s.sigma * self.node_scale[node_id] * (s.baseline_sigma if baseline_phase else 1.0)
        if seed not in self.seed_noise:
            self.seed_noise[seed] = self.noise()
        shared = math.sqrt(s.rho) * self.seed_noise[seed]
        own = math.sqrt(1 - s.rho) * self.noise()
        return self.means[node_id] + sigma * (shared + own)

    def place(self, busy: Sequence[int] | None = None) -> int:
        """The machine for the next trial: round-robin over the free ones (the least busy when
        none is free); with `busy` None every machine counts as free."""
        count = len(self.offsets)
        if count == 1:
            return 0
        order = [(self._next_machine + i) % count for i in range(count)]
        choice = order[0] if busy is None else min(order, key=lambda m: busy[m])
        self._next_machine = (choice + 1) % count
        return choice

    def run(
        self, node_id: str, seed: int, baseline_phase: bool, machine: int | None = None, at: int | None = None
    ) -> float:
        """Dispatch one trial: its value, with the campaign's drift at dispatch `at` (default: this
        trial's own number) and its machine's offset and drift."""
        if machine is None:
            machine = self.place()
        self.dispatched += 1
        self.machine_runs[machine] += 1
        return self.sample(node_id, seed, baseline_phase) + self.shift(self.dispatched if at is None else at, machine)

    def run_together(self, trials: Sequence[tuple[str, int]]) -> list[float]:
        """Trials dispatched at the same moment, on machines in turn: they share the campaign's drift."""
        at = self.dispatched + 1
        return [self.run(node_id, seed, False, at=at) for node_id, seed in trials]

    def shift(self, at: int, machine: int) -> float:
        """What drift and the machine add to the trial dispatched `at`-th, on `machine`."""
        s = self.scenario
        return s.sigma * (s.drift * at + self.offsets[machine] + s.machine_drift * self.machine_runs[machine])


class _SyntheticProposer(Proposer):
    """Proposes fresh candidates, each with a true effect drawn from the scenario; it never runs
    out. Simulated campaigns are never resumed, and candidates do not learn: the defaults do."""

    name = "synthetic"

    def __init__(self, truth: _Truth) -> None:
        self._truth = truth
        self._count = 0

    def propose(self, context: ProposalContext) -> Answer:
        self._count += 1
        return synthetic_change(self._truth, f"c{self._count}", self.name)


def synthetic_change(truth: _Truth, cid: str, proposer: str) -> Change:
    """A fresh candidate with its true effect drawn: a one-line code change, its own knob."""
    truth.draw_candidate(cid)
    return Change(
        kind="code",
        aspect="other",
        hypothesis=f"candidate {cid}",
        proposer=proposer,
        diff=f"+candidate = {cid}\n",
        source_id=cid,
        claim=Claim(knob=f"candidate_{cid}", direction="add"),  # every candidate its own knob
    )


class SimulatedDrafts:
    """The drafting service (orchestrator/proposers/service.py) on the simulated clock: a request
    for a parent comes back `latency_s` after it is served with `k` synthetic candidates. As in the
    real service, one request per (proposer, parent) waits at a time, and requests are served one
    after another (`parallel` 1: the proposer actor's single drafting thread) or `parallel` at once.
    With it the campaign's proposer is the real ReadyProposer, as LLM proposers are built
    (orchestrator/proposers/registry.py)."""

    name = "llm"

    def __init__(self, latency_s: float, k: int = 4, ready: int = 2, parallel: int = 1) -> None:
        self.latency_s = latency_s
        self.k = k
        self.ready = ready
        self.requests = 0
        self._truth: _Truth | None = None
        self._clock: Callable[[], float] = lambda: 0.0
        self._due: list[tuple[float, int, str]] = []  # (ready at, request, parent), a heap
        self._free_at = [0.0] * parallel  # when each drafting thread is next free, a heap
        self._count = 0

    def bind(self, truth: _Truth, clock: Callable[[], float]) -> None:
        self._truth, self._clock = truth, clock

    def submit(self, request: dict[str, Any]) -> None:
        if any(parent == request["parent_id"] for _, _, parent in self._due):
            return  # pending already: the real service ignores a repeat too
        self.requests += 1
        done = max(self._clock(), self._free_at[0]) + self.latency_s
        heapq.heapreplace(self._free_at, done)
        heapq.heappush(self._due, (done, self.requests, request["parent_id"]))

    def collect(self, proposer: str) -> dict[str, Any]:
        assert self._truth is not None
        proposals, drafted = [], []
        while self._due and self._due[0][0] <= self._clock():
            _, _, parent = heapq.heappop(self._due)
            for _ in range(self.k):
                self._count += 1
                change = synthetic_change(self._truth, f"c{self._count}", proposer)
                proposals.append({"parent_id": parent, "change": change.to_dict()})
            drafted.append((parent, self.k))
        pending = sorted({parent for _, _, parent in self._due})
        return {"proposals": proposals, "events": [], "pending": pending, "stopped": "", "drafted": drafted}

    def next_ready(self) -> float | None:
        """When the next draft comes back (None: none is in flight). Drafts back already wait
        for the search to ask again, which it does as trials finish."""
        now = self._clock()
        return min((at for at, _, _ in self._due if at > now), default=None)


class _SyntheticWorkspace:
    def __init__(self, truth: _Truth) -> None:
        self._truth = truth

    def check(self, parent: Node, change: Change) -> str:
        return ""

    def sources(self, parent: Node, change: Change) -> dict[str, tuple[str, str]] | None:
        return None

    def commit(self, parent: Node, node_id: str, change: Change, params: dict[str, Any]) -> str:
        # A graft carries the candidates of a winner's chain: its commit holds all of them, and
        # a pair it completes interacts as it would in a chain grown one change at a time.
        candidates = _candidates_of(change) if change.proposer == "integration" else [change.source_id or ""]
        self._truth.add_node(node_id, parent.node_id, candidates)
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


def default_sim_config(
    scenario: Scenario, concurrent: int = 1, *, open_nodes: int | None = None, integration: bool = False
) -> CampaignConfig:
    """The product's defaults (seeds, stats, policy); one change under test at a time, as the
    scenario's stream of candidates is defined, unless `concurrent` says otherwise: that many
    trials run at once, and as many changes are open at once unless `open_nodes` says otherwise.
    `integration` lets the campaign graft its branch winners together once the search stops."""
    return sim_config(
        scenario,
        ray={"max_concurrent": concurrent},
        search={"max_open_nodes": open_nodes or concurrent},
        integration={"enabled": integration},
    )


def simulate_campaign(config: CampaignConfig, scenario: Scenario, seed: int) -> CampaignOutcome:
    """Run one campaign of the real engine against the scenario's truth."""
    return simulate(config, scenario, seed)[1]


def simulate(
    config: CampaignConfig, scenario: Scenario, seed: int, sink: Callable[[Event], None] | None = None,
    *, drafts: SimulatedDrafts | None = None, trial_s: float | None = None, until_s: float | None = None,
) -> tuple[SearchTree, CampaignOutcome]:
    """One campaign; the tree it grew (its events go to `sink`) and its score.

    `drafts`: candidates come from an LLM proposer drafting ahead on the simulated clock, instead
    of at once. `trial_s`: every trial lasts that many simulated seconds (default: the node's
    duration, drawn). `until_s`: the campaign is cut off at that simulated time."""
    tree, _, outcome = _campaign(config, scenario, seed, sink, drafts=drafts, trial_s=trial_s, until_s=until_s)
    return tree, outcome


def _campaign(
    config: CampaignConfig, scenario: Scenario, seed: int, sink: Callable[[Event], None] | None = None,
    *, drafts: SimulatedDrafts | None = None, trial_s: float | None = None, until_s: float | None = None,
) -> tuple[SearchTree, _Truth, CampaignOutcome]:
    truth = _Truth.for_campaign(scenario, seed)
    clock = [0.0]  # simulated seconds: events, elapsed time and the wall budget all read it
    tree = SearchTree(sink=sink, clock=lambda: clock[0])
    proposer: Proposer = _SyntheticProposer(truth)
    if drafts is not None:
        drafts.bind(truth, lambda: clock[0])
        proposer = ReadyProposer(drafts.name, drafts, ready=drafts.ready)
    engine = SearchEngine(config, tree, [proposer], _SyntheticWorkspace(truth))
    engine.start({}, ROOT)
    tree.record("session_started", ts=0.0, resumed=False)
    running: list[tuple[float, int, str, str, dict[str, Any], int]] = []
    busy = [0] * len(truth.offsets)  # trials running on each machine
    trials = 0
    gpu_hours = 0.0
    while True:
        while len(running) < config.ray.max_concurrent:
            dispatch = engine.next_trial()
            if not isinstance(dispatch, Dispatch):
                break
            record = dispatch.record
            machine = truth.place(busy)
            busy[machine] += 1
            result = _result(record, truth, tree, machine)
            duration = truth.durations[record.node_id] if trial_s is None else trial_s / 3600.0
            gpu_hours += duration
            trials += 1
            heapq.heappush(
                running, (clock[0] + duration * 3600.0, trials, record.trial_id, dispatch.token, result, machine)
            )
        drafted = drafts.next_ready() if drafts is not None else None
        if drafted is not None and (not running or drafted < running[0][0]):
            if until_s is not None and drafted >= until_s:
                break
            clock[0] = drafted  # a draft comes back before the next trial ends: the search takes it
            continue
        if not running:
            if engine.next_trial() == FINISHED:
                break
            raise RuntimeError("the engine waits with nothing running")  # a policy deadlock
        if until_s is not None and running[0][0] > until_s:
            break
        done_at, _, trial_id, token, result, machine = heapq.heappop(running)
        busy[machine] -= 1
        clock[0] = done_at
        engine.record_result(trial_id, token, result)
    return tree, truth, _score(tree, truth, trials, gpu_hours)


# A finished trial as the tree receives it, built without dataclasses.asdict (a tenth of a
# simulated campaign's time went there).
_BLANK_RESULT = TrialResult("", "", 0, TrialState.COMPLETE).to_dict()


def _result(record: TrialRecord, truth: _Truth, tree: SearchTree, machine: int) -> dict[str, Any]:
    baseline_phase = record.node_id == ROOT and tree.root.status is NodeStatus.OPEN
    value = truth.run(record.node_id, record.seed, baseline_phase, machine)
    return {
        **_BLANK_RESULT,
        "trial_id": record.trial_id,
        "node_id": record.node_id,
        "seed": record.seed,
        "metrics": {METRIC: value},
        "reports": [],
        "fingerprint": dict(_BLANK_RESULT["fingerprint"]),
        "worker": f"machine-{machine}",
        "placement": {**_BLANK_RESULT["placement"], "hostname": f"machine-{machine}"},
    }


def _score(tree: SearchTree, truth: _Truth, trials: int, gpu_hours: float) -> CampaignOutcome:
    sigma = truth.scenario.sigma
    promoted = [n for n in tree.nodes.values() if n.status is NodeStatus.PROMOTED and n.change is not None]
    false = sum(1 for n in promoted if truth.means[n.node_id] - truth.means[n.parent_id or ROOT] <= 0)
    decided = [n for n in tree.nodes.values() if n.change is not None and n.status is not NodeStatus.OPEN]
    positives = [n for n in decided if truth.means[n.node_id] - truth.means[n.parent_id or ROOT] >= 0.5 * sigma]
    found = sum(1 for n in positives if n.status is NodeStatus.PROMOTED)
    final = tree.incumbent_id or ROOT
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
# Each baseline dispatches its trials one after another (paired greedy two at a time), places
# them round-robin on the machines, and so meets the same drift per trial as the engine does.
def greedy_campaign(scenario: Scenario, seed: int, seeds_per_candidate: int) -> CampaignOutcome:
    """Keep-if-better, as single-run agent loops do: each candidate is measured on k fresh seeds
    and replaces the current best when its mean beats the best's recorded score.

    Comparing against a recorded score, not a re-run on the same seeds, is what such loops do,
    and it is why they crown noise: a lucky record blocks real improvements that come later,
    and under drift every later candidate looks better than the record it is compared with.
    """
    truth = _Truth.for_campaign(scenario, seed)
    k = seeds_per_candidate
    next_seed = 0

    def measure(node: str, baseline: bool = False) -> float:
        nonlocal next_seed
        next_seed += k
        return float(np.mean([truth.run(node, s, baseline) for s in range(next_seed - k, next_seed)]))

    best_score = measure(ROOT, baseline=True)

    def keeps(best: str, node: str) -> bool:
        nonlocal best_score
        score = measure(node)
        if score <= best_score:
            return False
        best_score = score
        return True

    return _keep_if_better(scenario, truth, k, k, keeps)


def paired_greedy_campaign(scenario: Scenario, seed: int, seeds_per_candidate: int = 3) -> CampaignOutcome:
    """Keep-if-better on paired runs: each candidate and the current best run together on the
    same k fresh seeds (dispatched at once, so they share the campaign's drift on each seed), and
    the candidate is kept when the mean of its paired differences is above 0. Costs 2k trials per
    candidate; with no threshold beyond 0, about half of null candidates are still kept."""
    truth = _Truth.for_campaign(scenario, seed)
    k = seeds_per_candidate
    next_seed = 0

    def keeps(best: str, node: str) -> bool:
        nonlocal next_seed
        diffs = []
        for s in range(next_seed, next_seed + k):
            incumbent, candidate = truth.run_together([(best, s), (node, s)])
            diffs.append(candidate - incumbent)
        next_seed += k
        return float(np.mean(diffs)) > 0

    return _keep_if_better(scenario, truth, 0, 2 * k, keeps)


def _keep_if_better(
    scenario: Scenario, truth: _Truth, trials: int, cost: int, keeps: Callable[[str, str], bool]
) -> CampaignOutcome:
    """The loop both greedy baselines share: each candidate is drawn on top of the current best,
    `keeps(best, candidate)` spends `cost` trials judging it, and a kept one becomes the best.
    `trials`: spent before the first candidate (the baseline's own measurement)."""
    best = ROOT
    promoted = false = positives = found = count = 0
    while trials + cost <= scenario.budget:
        count += 1
        node = f"n{count}"
        truth.draw_candidate(f"c{count}")
        effect = truth.add_node(node, best, [f"c{count}"])
        trials += cost
        helpful = effect >= 0.5 * scenario.sigma
        positives += helpful
        if keeps(best, node):
            promoted += 1
            false += effect <= 0
            found += helpful
            best = node
    return CampaignOutcome(
        truth.means[best] / scenario.sigma, promoted, false, positives, found, trials,
        trials * scenario.mean_duration_h, count,
    )


def random_search_campaign(scenario: Scenario, seed: int, seeds_per_candidate: int = 3) -> CampaignOutcome:
    """Candidates drawn against the baseline (no tree), each measured on k seeds; at the end the
    one with the best mean is kept if it beats the baseline's mean."""
    truth = _Truth.for_campaign(scenario, seed)
    seeds = list(range(seeds_per_candidate))
    base = np.mean([truth.run(ROOT, s, True) for s in seeds])
    trials = seeds_per_candidate
    scores: dict[str, float] = {}
    effects: dict[str, float] = {}
    while trials + seeds_per_candidate <= scenario.budget:
        node = f"n{len(scores) + 1}"
        truth.draw_candidate(f"c{len(scores) + 1}")
        effects[node] = truth.add_node(node, ROOT, [f"c{len(scores) + 1}"])
        scores[node] = float(np.mean([truth.run(node, s, False) for s in seeds]))
        trials += seeds_per_candidate
    winner = max(scores, key=lambda n: scores[n])
    keep = scores[winner] > base
    positives = sum(1 for e in effects.values() if e >= 0.5 * scenario.sigma)
    gain = effects[winner] / scenario.sigma if keep else 0.0
    return CampaignOutcome(
        gain,
        int(keep),
        int(keep and effects[winner] <= 0),
        positives,
        int(keep and effects[winner] >= 0.5 * scenario.sigma),
        trials,
        trials * scenario.mean_duration_h,
        len(scores),
    )


# ----- summaries ---------------------------------------------------------------------------
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20_261_130  # fixed: a summary of the same campaigns is the same summary
Interval = tuple[float, float]


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> Interval:
    """Wilson score interval for a binomial share; (0, 1) when there is nothing to count."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes the bound is exactly 0 or 1; rounding must not move it off the estimate.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def _percentile_interval(resampled: np.ndarray) -> Interval:
    low, high = np.percentile(resampled, [2.5, 97.5])
    return (float(low), float(high))


@dataclass(frozen=True)
class Summary:
    """A rule on a scenario, over campaigns, with 95% intervals.

    `share_promoting_any_ci` is a Wilson interval (campaigns are independent binomial draws).
    The means (`mean_fdp`, `mean_true_gain`) and the pooled false-discovery share `fdr`
    (false promotions over all promotions, a ratio of sums) get percentile bootstrap intervals,
    resampling whole campaigns, BOOTSTRAP_RESAMPLES times with the fixed BOOTSTRAP_SEED.
    """

    rule: str
    scenario: str
    campaigns: int
    fdr: float  # false-discovery share, pooled over campaigns (0 when nothing was promoted)
    fdr_ci: Interval
    mean_fdp: float  # mean over campaigns of false / max(promoted, 1)
    mean_fdp_ci: Interval
    mean_true_gain: float  # sigma
    mean_true_gain_ci: Interval
    power: float  # share of tested true effects >= 0.5 sigma that were promoted
    share_promoting_any: float
    share_promoting_any_ci: Interval
    promoted: int
    false_promoted: int
    mean_trials: float
    mean_gpu_hours: float

    def row(self) -> dict[str, Any]:
        def rounded(v: Any) -> Any:
            if isinstance(v, float):
                return round(v, 4)
            return [round(x, 4) for x in v] if isinstance(v, tuple) else v

        return {k: rounded(v) for k, v in self.__dict__.items()}


def summarize(rule: str, scenario: Scenario, outcomes: list[CampaignOutcome]) -> Summary:
    if not outcomes:
        raise ValueError("no campaigns to summarize")
    n = len(outcomes)
    false = np.array([o.false_promoted for o in outcomes], dtype=float)
    promoted = np.array([o.promoted for o in outcomes], dtype=float)
    fdp = np.array([o.fdp for o in outcomes])
    gain = np.array([o.true_gain for o in outcomes])
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    tested = sum(o.positives_tested for o in outcomes)
    any_promoted = int(np.count_nonzero(promoted))
    return Summary(
        rule=rule,
        scenario=scenario.name,
        campaigns=n,
        fdr=float(false.sum() / max(promoted.sum(), 1.0)),
        fdr_ci=_percentile_interval(false[picks].sum(axis=1) / np.maximum(promoted[picks].sum(axis=1), 1.0)),
        mean_fdp=float(fdp.mean()),
        mean_fdp_ci=_percentile_interval(fdp[picks].mean(axis=1)),
        mean_true_gain=float(gain.mean()),
        mean_true_gain_ci=_percentile_interval(gain[picks].mean(axis=1)),
        power=sum(o.positives_found for o in outcomes) / tested if tested else 0.0,
        share_promoting_any=any_promoted / n,
        share_promoting_any_ci=wilson_interval(any_promoted, n),
        promoted=int(promoted.sum()),
        false_promoted=int(false.sum()),
        mean_trials=float(np.mean([o.trials for o in outcomes])),
        mean_gpu_hours=float(np.mean([o.gpu_hours for o in outcomes])),
    )


def with_budget(scenario: Scenario, budget: int) -> Scenario:
    return replace(scenario, budget=budget)
