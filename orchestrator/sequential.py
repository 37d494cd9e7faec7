"""Sequential paired decisions: pooled noise, a calibrated sequential test per child, online alpha spending.

Three pieces, all pure and deterministic (rebuildable from the ledger's data):

- `NoiseModel` pools the noise seen in a campaign (per cohort of comparable trials) into an estimate
  of sigma_d, the standard deviation of one paired difference, with its degrees of freedom.
- `sequential_test` decides one child from its paired differences so far: a truncated sequential
  probability ratio test (SPRT) of H0: gain <= min_effect against H1: gain = min_effect + delta1, looked at
  after each seed, whose promotion threshold is calibrated by numerical integration so that the chance
  of promoting under H0 within the seed cap is exactly the test's level; plus a futility boundary.
- `AlphaLedger` gives each new child its level: online FDR control (ADDIS alpha-wealth, LORD++ as a special
  case) over the stream of all the children of a campaign, so that testing many candidates, siblings
  included, does not pile up false promotions; with only null changes, a campaign promotes nothing with
  probability at least 1 - w0.

docs/statistics.md states each rule in words, with its guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import special as spsp

from orchestrator.stats import Verdict

# Defaults, chosen on simulated campaigns (docs/statistics.md explains how).
FDR = 0.2  # nominal mFDR of promotions over a campaign: the alpha-wealth a promotion earns
W0 = 0.05  # initial alpha-wealth: bound on the chance that a campaign of only null changes promotes anything
SPEND = 0.15  # share of the free alpha-wealth a new test may hold back
MAX_LEVEL = 0.05  # level of one test at most
LAMBDA = 0.1  # ADDIS: a p-value at or below this marks a candidate (pays nothing)
TAU = 0.45  # ADDIS: a p-value above this discards the test (pays nothing); <= P_H0(reach N_MIN)
BETA = 0.55  # futility: P(pruned for futility | gain = min_effect + delta1) <= BETA
THETA = 0.7  # delta1 in (inflated) sds of one paired difference
N_MIN = 3  # no promotion on fewer paired seeds
N_MAX = 32  # seed cap per child
MIN_DIFF_DF = 8  # below this many pooled-difference dof, the nodes' replicates also inform sigma_d

RULE_UPPER = "upper boundary"
RULE_FUTILITY = "futility"
RULE_WORSE = "worse"
RULE_CAP = "seed cap"
RULE_OPEN = "open"


# ---------------------------------------------------------------------------------------------
# the noise estimate's own uncertainty


def inflation(df: float, level: float) -> float:
    """Factor on an estimated sigma_d for its own uncertainty: t quantile over z quantile at `level`.

    With sigma_d estimated on `df` degrees of freedom, mean / (sigma_d / sqrt(n)) is t-distributed under H0,
    not normal; scaling sigma_d by this factor makes a single look at `level` exact (a t-test), and the
    sequential boundaries correspondingly conservative. It is 1 for a known sigma (df = inf).
    """
    if math.isinf(df):
        return 1.0
    q = 1.0 - min(max(level, 1e-12), 0.49)
    return float(spsp.stdtrit(max(df, 1.0), q) / spsp.ndtri(q))


def _t_quantile(q: float, df: float) -> float:
    return float(spsp.ndtri(q)) if math.isinf(df) else float(spsp.stdtrit(max(df, 1.0), q))


# ---------------------------------------------------------------------------------------------
# pooled noise


@dataclass
class _Pool:
    ss: dict[str, float] = field(default_factory=dict)  # node -> sum of squared deviations from its mean
    dof: dict[str, int] = field(default_factory=dict)  # node -> n - 1
    total_ss: float = 0.0
    total_dof: int = 0

    def put(self, node: str, values: Sequence[float]) -> None:
        self.ss.pop(node, None)
        self.dof.pop(node, None)
        if len(values) >= 2:
            self.ss[node] = _sum_sq_dev(values)
            self.dof[node] = len(values) - 1
        # re-summed in node order, so the totals do not depend on the order of updates
        self.total_ss = math.fsum(self.ss[k] for k in sorted(self.ss))
        self.total_dof = sum(self.dof.values())


def _sum_sq_dev(values: Sequence[float]) -> float:
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values)


class NoiseModel:
    """Pooled estimate of sigma_d, the sd of one paired difference (child minus parent on one seed).

    Per cohort (a string naming trials whose noise is assumed alike, e.g. one objective under one
    fingerprint) two pools are kept, by node, so that adding a node again replaces its earlier entry:

    - replicates: a node's values over its seeds; their spread estimates the per-trial variance s_r^2.
      A paired difference has variance 2 s_r^2 (1 - rho) <= 2 s_r^2 when seed effects correlate
      positively (rho >= 0), so 2 s_r^2 is a conservative stand-in before differences exist.
    - differences: a child's paired differences; their spread around the child's own mean estimates
      sigma_d^2 directly (pooled: sums of squares over the sum of n - 1).

    `sigma_d` uses the differences alone once they carry `min_diff_df` degrees of freedom; before that it
    pools them with the conservative stand-in. Deterministic: the same data give the same estimate.
    """

    def __init__(self, min_diff_df: int = MIN_DIFF_DF) -> None:
        self.min_diff_df = min_diff_df
        self._replicates: dict[str, _Pool] = {}
        self._differences: dict[str, _Pool] = {}

    def add_replicates(self, cohort: str, node: str, values: Sequence[float]) -> None:
        """A node's values over its seeds (within-node spread); replaces that node's earlier entry."""
        self._replicates.setdefault(cohort, _Pool()).put(node, [float(v) for v in values])

    def add_differences(self, cohort: str, node: str, diffs: Sequence[float]) -> None:
        """A decided child's paired differences with its parent; replaces that node's earlier entry."""
        self._differences.setdefault(cohort, _Pool()).put(node, [float(v) for v in diffs])

    def sigma_d(self, cohort: str, pending: Sequence[float] = ()) -> tuple[float, float] | None:
        """(estimate of sigma_d, its degrees of freedom), or None while nothing is known.

        `pending`: the open child's own differences, pooled in too (as in a pooled-variance t statistic).
        """
        rep = self._replicates.get(cohort)
        dif = self._differences.get(cohort)
        ss_d = dif.total_ss if dif else 0.0
        df_d = dif.total_dof if dif else 0
        if len(pending) >= 2:
            ss_d += _sum_sq_dev([float(v) for v in pending])
            df_d += len(pending) - 1
        df_r = rep.total_dof if rep else 0
        if df_d >= self.min_diff_df or (df_d > 0 and df_r == 0):
            return math.sqrt(ss_d / df_d), float(df_d)
        if rep and df_r:
            return math.sqrt((2.0 * rep.total_ss + ss_d) / (df_r + df_d)), float(df_r + df_d)
        return None


# ---------------------------------------------------------------------------------------------
# the calibrated boundary


def crossing_probability(
    u: float, theta: float, n_min: int, n_max: int, beta: float | None = None, h: float = 0.2
) -> float:
    """P(S_n >= u / theta + n theta / 2 for some n_min <= n <= n_max) for a N(0, 1) random walk S_n.

    This is the chance, under H0, that the SPRT's log likelihood ratio theta S_n - n theta^2 / 2 reaches u
    at one of the looks. With `beta`, paths are also stopped (binding futility) once the ratio falls to
    log(beta), from the first seed on. Computed by the standard recursion on the density of the walk that
    has not stopped yet (Armitage, McPherson and Rowe), Simpson's rule on a grid of step h; relative
    error ~1e-5.
    """
    total = 0.0
    ys = np.zeros(1)  # S_0 = 0: a point mass, as Simpson-weighted density values on a grid
    gw = np.ones(1)
    for n in range(1, n_max + 1):
        c = u / theta + n * theta / 2.0 if n >= n_min else math.inf
        if n >= n_min:
            total += float(gw @ spsp.ndtr(ys - c))
        if n == n_max:
            break
        sd = math.sqrt(n)
        lo, hi = -8.0 * sd, min(c, 8.0 * sd)
        if beta is not None:
            lo = max(lo, math.log(beta) / theta + n * theta / 2.0)
        if hi <= lo:
            break
        m = max(2, math.ceil((hi - lo) / h / 2.0) * 2)
        xs = np.linspace(lo, hi, m + 1)
        w = np.ones(m + 1)
        w[1:-1:2] = 4.0
        w[2:-1:2] = 2.0
        w *= (hi - lo) / m / 3.0
        g = np.exp(-0.5 * (xs[:, None] - ys[None, :]) ** 2) @ gw / math.sqrt(2.0 * math.pi)
        ys, gw = xs, g * w
    return total


_U_GRID = np.round(np.arange(-8.0, 24.0001, 0.1), 10)


@lru_cache(maxsize=64)
def _design(theta: float, n_min: int, n_max: int, beta: float | None) -> np.ndarray:
    """log P_H0(max llr over the looks >= u) over _U_GRID, for one design (theta, n_min, n_max, beta)."""
    p = [crossing_probability(float(u), theta, n_min, n_max, beta) for u in _U_GRID]
    return np.log(np.maximum(np.array(p), 1e-300))


def _key(theta: float, beta: float | None) -> tuple[float, float | None]:
    return round(theta, 6), None if beta is None else round(beta, 6)


def upper_threshold(level: float, theta: float, n_min: int, n_max: int, beta: float | None = None) -> float:
    """The llr threshold u at which the truncated SPRT promotes under H0 with probability `level`.

    Interpolated (log-linear) in a table computed once per design (relative error ~1e-3 at most), and
    never above Wald's log(1 / level), which holds for any number of looks.
    """
    if level <= 0.0:
        return math.inf
    wald = math.log(1.0 / level)
    th, b = _key(theta, beta)
    logp = _design(th, n_min, n_max, b)
    target = math.log(level)
    below = np.nonzero(logp <= target)[0]  # logp decreases along the grid
    if len(below) == 0:
        return wald
    i = int(below[0])
    if i == 0:
        return float(_U_GRID[0])
    u0, u1, p0, p1 = float(_U_GRID[i - 1]), float(_U_GRID[i]), float(logp[i - 1]), float(logp[i])
    u = u0 + (u1 - u0) * (p0 - target) / (p0 - p1) if p0 > p1 else u1
    return min(u + 1e-9, wald)


def reach_probability(theta: float, n_min: int, n_max: int, beta: float | None = None) -> float:
    """P_H0(a child is not stopped for futility before n_min seeds): the p-values' range under H0.

    Under H0 the sequential p-value is uniform on [0, reach] with an atom at 1, so the ledger's `tau`
    must not exceed this for ADDIS's uniform-conservativeness condition.
    """
    return crossing_probability(-math.inf, theta, n_min, n_max, beta)


def p_value(max_llr: float, theta: float, n_min: int, n_max: int, beta: float | None = None) -> float:
    """P_H0(the largest llr over the looks n_min..n_max reaches max_llr): the test's sequential p-value.

    `max_llr` is the largest llr at the looks from n_min on, until the test stopped (-inf if it stopped
    before n_min). The test promotes at level a exactly when this p-value is <= a (stagewise ordering).
    """
    if max_llr == -math.inf:
        return 1.0
    th, b = _key(theta, beta)
    logp = _design(th, n_min, n_max, b)
    if max_llr >= float(_U_GRID[-1]):
        return min(math.exp(float(logp[-1])), math.exp(-max_llr))
    return float(min(1.0, math.exp(float(np.interp(max_llr, _U_GRID, logp)))))


# ---------------------------------------------------------------------------------------------
# the per-child test


@dataclass(frozen=True)
class SequentialDecision:
    verdict: Verdict
    rule: str  # "upper boundary", "futility", "worse", "seed cap" or "open"
    reason: str
    n: int
    mean: float  # mean paired gain (child minus parent, positive is better)
    sigma_d: float  # the noise estimate used, before inflation (nan: none)
    df: float  # its degrees of freedom
    inflation: float  # factor applied to sigma_d for its uncertainty
    delta1: float  # the alternative is gain = min_effect + delta1 (metric units)
    llr: float  # log likelihood ratio of H1 over H0
    upper: float  # promote when llr >= upper (calibrated so that P_H0(promote) = level)
    lower: float  # futility when llr <= lower = log(beta)
    level: float  # alpha / siblings
    max_llr: float  # largest llr at the looks from n_min on, with the current sigma (-inf before n_min)
    p_value: float  # sequential p-value P_H0(largest llr >= max_llr); a promotion has p_value <= level
    ci_low: float  # t interval at `confidence` from the pooled sigma_d (fixed-n; see docs)
    ci_high: float
    cs_low: float  # always-valid confidence sequence at `confidence` (normal mixture)
    cs_high: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = str(self.verdict)
        return d


def sequential_test(
    diffs: Sequence[float],
    *,
    sigma_d: float | None,
    df: float,
    alpha: float,
    beta: float = BETA,
    min_effect: float = 0.0,
    n_min: int = N_MIN,
    n_max: int = N_MAX,
    siblings: int = 1,
    theta: float = THETA,
    binding: bool = True,
    confidence: float = 0.95,
) -> SequentialDecision:
    """Promote, prune or continue one child from its paired differences so far (positive is better).

    Called after each new seed. With level = alpha / siblings, s = sigma_d * inflation(df, level) and
    delta1 = theta * s, the log likelihood ratio of H1 (gain = m + delta1) over H0 (gain = m), m = min_effect,
    is  llr = theta * sum(d - m) / s - n theta^2 / 2.

    - promote ("upper boundary"): n >= n_min and llr >= upper(level, theta, n_min, n_max);
    - prune ("futility"): llr <= log(beta); called "worse" when the t interval lies below zero;
    - prune ("seed cap"): n >= n_max and neither boundary was reached;
    - otherwise continue: add a seed.

    Guarantees, for normal differences with sigma_d known: P(promote | gain <= m) <= level when looked at
    after every seed up to n_max (fewer looks only lower it; futility stops never raise it);
    P(futility | gain >= m + delta1) <= beta. With sigma_d estimated, the inflation keeps the first
    statement approximately (checked by simulation in tests/orchestrator/test_sequential.py).
    `sigma_d=None`: the child's own spread is used (df = n - 1), and nothing is decided before 3 seeds.
    """
    if not 0.0 <= alpha < 1.0 or not 0.0 < beta < 1.0:
        raise ValueError(f"alpha ({alpha}) must lie in [0, 1) and beta ({beta}) in (0, 1)")
    if not 1 <= n_min <= n_max:
        raise ValueError(f"need 1 <= n_min ({n_min}) <= n_max ({n_max})")
    if theta <= 0:
        raise ValueError(f"theta must be positive, got {theta}")
    values = [float(v) for v in diffs]
    n = len(values)
    level = alpha / max(1, siblings)
    upper = upper_threshold(level, theta, n_min, n_max, beta if binding else None)
    lower = math.log(beta)
    m = min_effect
    mean = math.fsum(values) / n if n else math.nan
    if sigma_d is None and n >= 3:
        sigma_d, df = math.sqrt(_sum_sq_dev(values) / (n - 1)), float(n - 1)
    if n == 0 or sigma_d is None or not math.isfinite(sigma_d):
        return _undecided(n, n_max, mean, level, upper, lower)
    if sigma_d <= 1e-12 * max(1.0, abs(mean)):
        return _noiseless(n, n_min, n_max, mean, m, df, level, upper, lower)

    infl = inflation(df, level)
    s = sigma_d * infl
    d1 = theta * s
    llr, max_llr, total = -math.inf, -math.inf, 0.0
    for k, v in enumerate(values, start=1):  # the llr after each seed: its path
        total += v - m
        llr = theta * total / s - k * theta * theta / 2.0
        if k >= n_min:
            max_llr = max(max_llr, llr)
    pval = p_value(max_llr, theta, n_min, n_max, beta if binding else None)
    half = _t_quantile(0.5 + confidence / 2.0, df) * sigma_d / math.sqrt(n)
    ci_low, ci_high = mean - half, mean + half
    cs = _mixture_halfwidth(n, s, theta, 1.0 - confidence)
    stat = (
        f"gain {mean:+.4g} (CI {ci_low:+.4g} to {ci_high:+.4g}), n={n}, llr={llr:.3g} in "
        f"({lower:.3g}, {upper:.3g}), sigma_d={sigma_d:.4g} (df {df:.0f}, x{infl:.3g}), delta1={d1:.4g}"
    )

    def out(verdict: Verdict, rule: str, why: str) -> SequentialDecision:
        return SequentialDecision(
            verdict, rule, f"{why}: {stat}", n, mean, sigma_d, df, infl, d1, llr, upper, lower, level,
            max_llr, pval, ci_low, ci_high, mean - cs, mean + cs,
        )  # fmt: skip

    if llr >= upper and n >= n_min:
        return out(Verdict.PROMOTE, RULE_UPPER, f"better than the parent by more than {m:.4g} at level {level:.3g}")
    if llr <= lower:
        if ci_high < 0.0:
            return out(Verdict.PRUNE, RULE_WORSE, "worse than the parent")
        return out(Verdict.PRUNE, RULE_FUTILITY, f"futile: a gain of {m + d1:.4g} is unlikely")
    if n >= n_max:
        return out(Verdict.PRUNE, RULE_CAP, f"inconclusive at the seed cap ({n_max})")
    if llr >= upper:
        return out(Verdict.CONTINUE, RULE_OPEN, f"above the boundary, but {n} of {n_min} seeds")
    return out(Verdict.CONTINUE, RULE_OPEN, "inconclusive; adding a seed")


def first_decision(diffs: Sequence[float], **kwargs: Any) -> SequentialDecision:
    """`sequential_test` looked at after every seed, in seed order: the first look that stops, else the last.

    The boundaries assume a look after each seed (futility is binding). When seeds arrive in batches, or
    when a decision is rebuilt from stored data, replay the looks with this. Keyword arguments are those
    of `sequential_test`.
    """
    values = list(diffs)
    decision = sequential_test([], **kwargs)
    for k in range(1, len(values) + 1):
        decision = sequential_test(values[:k], **kwargs)
        if decision.verdict is not Verdict.CONTINUE:
            break
    return decision


def _undecided(n: int, n_max: int, mean: float, level: float, upper: float, lower: float) -> SequentialDecision:
    nan, inf = math.nan, math.inf
    if n >= n_max:
        verdict, rule, why = Verdict.PRUNE, RULE_CAP, f"no noise estimate at the seed cap ({n_max})"
    else:
        verdict, rule, why = Verdict.CONTINUE, RULE_OPEN, "no noise estimate yet; adding a seed"
    return SequentialDecision(
        verdict, rule, f"{why}: n={n}", n, mean, nan, 0.0, nan, nan, nan, upper, lower, level, -inf, 1.0,
        -inf, inf, -inf, inf,
    )  # fmt: skip


def _noiseless(
    n: int, n_min: int, n_max: int, mean: float, m: float, df: float, level: float, upper: float, lower: float
) -> SequentialDecision:
    """Identical differences on every seed (a deterministic trainer): the gain is exact."""
    if mean > m and n >= n_min:
        verdict, rule, why = Verdict.PROMOTE, RULE_UPPER, f"exact gain {mean:+.4g} > {m:.4g} with zero noise"
    elif mean <= m:
        verdict, rule = Verdict.PRUNE, RULE_WORSE if mean < 0 else RULE_FUTILITY
        why = f"exact gain {mean:+.4g} <= {m:.4g} with zero noise"
    elif n >= n_max:
        verdict, rule, why = Verdict.PRUNE, RULE_CAP, f"seed cap ({n_max})"
    else:
        verdict, rule, why = Verdict.CONTINUE, RULE_OPEN, f"exact gain, {n} of {n_min} seeds"
    inf = math.inf if verdict is Verdict.PROMOTE else -math.inf
    pval = 0.0 if verdict is Verdict.PROMOTE else 1.0
    return SequentialDecision(
        verdict, rule, f"{why}: n={n}", n, mean, 0.0, df, 1.0, 0.0, inf, upper, lower, level, inf, pval,
        mean, mean, mean, mean,
    )  # fmt: skip


def _mixture_halfwidth(n: int, s: float, tau: float, alpha: float) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence (mixing sd tau, in units of s).

    P(the true gain ever leaves mean +- halfwidth, over all n) <= alpha, for normal differences of sd s.
    """
    v = 1.0 + n * tau * tau
    return s / n * math.sqrt(v / (tau * tau) * (2.0 * math.log(1.0 / alpha) + math.log(v)))


# ---------------------------------------------------------------------------------------------
# online alpha spending over the stream of children


@dataclass
class AlphaLedger:
    """Alpha-wealth over the stream of all children of a campaign: each new test's level, at its start.

    Online FDR control in the generalized alpha-investing form of ADDIS (Tian and Ramdas 2019), which
    contains LORD++ (Ramdas et al. 2017) as the case lam=0, tau=1. The campaign starts with wealth w0. A
    test's level a is granted when it starts, and a / (tau - lam) is held back from the wealth while it
    runs. When it ends, it pays that amount only if its p-value landed in (lam, tau]: a promotion
    (p <= a <= lam) and a clearly hopeless child (p > tau: discarded) pay nothing. The first promotion
    earns fdr - w0, every later one fdr. What tests pay never exceeds max(w0, fdr * R) after R
    promotions, which gives, for tests whose null p-values are uniformly conservative (true of one-sided
    normal tests, for gains at or below min_effect), and independent of the past:

    - E[false promotions] <= fdr * E[max(R, 1)] (mFDR <= fdr), whatever the share of null changes;
    - if every change is null, P(any promotion in the campaign) <= w0.

    A new test gets `spend` times the free wealth as its reserve (a geometric spending sequence), and a
    level of at most `max_level`; with `remaining` (tests the budget still allows, an estimate known
    before the test) it spends faster near the end, so wealth is not left unused. Rebuildable: replay
    `start` and `finish` in ledger order. Tests overlapping in time are fine: each holds its reserve, and
    only promotions recorded before a test starts raise its level. Pass the level to `sequential_test`
    as `alpha` with `siblings=1` (the ledger has already split it among siblings).
    """

    fdr: float = FDR
    w0: float = W0
    spend: float = SPEND
    max_level: float = MAX_LEVEL
    lam: float = LAMBDA
    tau: float = TAU
    tests: int = 0
    paid: float = 0.0
    open: dict[int, float] = field(default_factory=dict)  # test -> level, while it runs
    rejections: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 < self.w0 <= self.fdr < 1.0:
            raise ValueError(f"need 0 < w0 ({self.w0}) <= fdr ({self.fdr}) < 1")
        if not 0.0 < self.spend <= 1.0:
            raise ValueError(f"spend ({self.spend}) must lie in (0, 1]")
        if not 0.0 <= self.lam < self.tau <= 1.0:
            raise ValueError(f"need 0 <= lam ({self.lam}) < tau ({self.tau}) <= 1")

    @property
    def earned(self) -> float:
        r = len(self.rejections)
        return self.w0 + (self.fdr - self.w0) * (r >= 1) + self.fdr * max(r - 1, 0)

    @property
    def wealth(self) -> float:
        """Free wealth: earned, less what finished tests paid and what running tests hold back."""
        held = sum(self.open.values()) / (self.tau - self.lam)
        return max(self.earned - self.paid - held, 0.0)

    def start(self, remaining: float | None = None, siblings: int = 1) -> tuple[int, float]:
        """A new test begins: its number and its level.

        `siblings`: children of the same parent open at the same time, this one included; the level one
        test would get is split evenly among them (Bonferroni within the batch: they share the parent's
        noise on the same seeds, so their errors are positively dependent).
        """
        frac = self.spend if remaining is None else max(self.spend, min(1.0, 1.0 / max(remaining, 1.0)))
        level = min(frac * self.wealth * (self.tau - self.lam), self.max_level, self.lam or 1.0) / max(1, siblings)
        self.tests += 1
        self.open[self.tests] = level
        return self.tests, level

    def finish(self, test: int, *, promoted: bool, p_value: float) -> float:
        """Test number `test` ended (promoted or pruned, with its p-value); returns what it paid."""
        if test not in self.open:
            raise ValueError(f"test {test} is not running")
        level = self.open.pop(test)
        if promoted:
            self.rejections.append(test)
            return 0.0
        cost = level / (self.tau - self.lam) if self.lam < p_value <= self.tau else 0.0
        self.paid += cost
        return cost
