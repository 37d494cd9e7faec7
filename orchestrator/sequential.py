"""Sequential paired decisions: a pooled noise model, a truncated SPRT per child, online alpha spending.

Three pieces, all pure and deterministic (rebuildable from the ledger's data):

- `NoiseModel` pools the noise seen in a campaign (per cohort of comparable trials) into an estimate
  of sigma_d, the standard deviation of one paired difference, with its degrees of freedom.
- `sequential_test` decides one child from its paired differences: a one-sided sequential probability
  ratio test (SPRT) of H0: gain <= min_effect against H1: gain = min_effect + delta1, checked after each
  seed, with a futility boundary and a seed cap. delta1 is `theta` pooled noise sds unless given.
- `AlphaLedger` hands every new child its level: online FDR control (LORD++) over the stream of all
  children of the campaign, so that the number of tests does not inflate false promotions.

docs/statistics.md states each rule in words, with its guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from scipy import special as spsp
from scipy import stats as sps

from orchestrator.stats import Verdict

# Defaults (docs/statistics.md explains how they were chosen).
ALPHA_FDR = 0.10  # target false-discovery rate of promotions over a campaign (LORD++)
W0 = 0.05  # initial alpha-wealth: the chance that a campaign of null changes promotes anything
BETA = 0.20  # futility: at gain = min_effect + delta1, P(pruned for futility) <= BETA
THETA = 0.9  # delta1 in pooled noise sds of one paired difference
N_MIN = 3  # no promotion on fewer paired seeds
N_MAX = 12  # seed cap per child
GAMMA_POWER = 1.6  # alpha-spending sequence gamma_j proportional to j ** -GAMMA_POWER
MIN_DIFF_DF = 8  # below this many pooled-difference dof, the baseline's replicates also inform sigma_d

RULE_UPPER = "upper boundary"
RULE_FUTILITY = "futility"
RULE_WORSE = "worse"
RULE_CAP = "seed cap"
RULE_OPEN = "open"


# ---------------------------------------------------------------------------------------------
# quantiles (cached: they are the only scipy calls on the hot path)


@lru_cache(maxsize=4096)
def _t_ppf(q: float, df: float) -> float:
    if math.isinf(df):
        return float(sps.norm.ppf(q))
    return float(sps.t.ppf(q, df))


@lru_cache(maxsize=64)
def _z_ppf(q: float) -> float:
    return float(sps.norm.ppf(q))


def inflation(df: float, level: float) -> float:
    """Factor on an estimated sigma_d for its own uncertainty: t quantile over z quantile at `level`.

    With sigma_d estimated on `df` degrees of freedom, z = mean / (sigma_d / sqrt(n)) is t-distributed
    under H0, not normal; scaling sigma_d by this factor makes a one-look test at `level` exact, and the
    sequential boundaries conservative in the same way. It is 1 for a known sigma (df = inf).
    """
    if math.isinf(df):
        return 1.0
    df = max(df, 1.0)
    lev = min(max(level, 1e-12), 0.5)
    q = 1.0 - lev
    return _t_ppf(q, round(df, 6)) / _z_ppf(round(q, 15)) if lev < 0.5 else 1.0


# ---------------------------------------------------------------------------------------------
# pooled noise


@dataclass
class _Pool:
    ss: dict[str, float] = field(default_factory=dict)  # node -> sum of squared deviations
    dof: dict[str, int] = field(default_factory=dict)  # node -> n - 1
    total_ss: float = 0.0
    total_dof: int = 0

    def put(self, node: str, values: Sequence[float]) -> None:
        if node in self.ss:
            self.total_ss -= self.ss.pop(node)
            self.total_dof -= self.dof.pop(node)
        n = len(values)
        if n < 2:
            return
        ss = _sum_sq_dev(values)
        self.ss[node] = ss
        self.dof[node] = n - 1
        self.total_ss += ss
        self.total_dof += n - 1


def _sum_sq_dev(values: Sequence[float]) -> float:
    n = len(values)
    mean = math.fsum(values) / n
    return math.fsum((v - mean) ** 2 for v in values)


class NoiseModel:
    """Pooled estimate of sigma_d, the sd of one paired difference (child minus parent on one seed).

    Per cohort (a string: trials whose noise is assumed alike, e.g. one objective under one fingerprint)
    two pools are kept, each by node so that re-adding a node replaces its earlier entry:

    - replicates: a node's values over its seeds; their spread estimates the per-trial variance s_r^2.
      A paired difference has variance 2 s_r^2 (1 - rho) <= 2 s_r^2 when seed effects correlate
      positively (rho >= 0), so 2 s_r^2 is a conservative stand-in before differences exist.
    - differences: a child's paired differences; their spread around the child's own mean estimates
      sigma_d^2 directly (pooled: sum of squares over sum of n - 1).

    `sigma_d` uses the differences alone once they carry `min_diff_df` degrees of freedom; before that,
    it pools them with the conservative stand-in. Deterministic: the same data give the same estimate.
    """

    def __init__(self, min_diff_df: int = MIN_DIFF_DF) -> None:
        self.min_diff_df = min_diff_df
        self._replicates: dict[str, _Pool] = {}
        self._differences: dict[str, _Pool] = {}

    def add_replicates(self, cohort: str, node: str, values: Sequence[float]) -> None:
        """A node's values over its seeds (within-node spread); replaces that node's earlier entry."""
        self._replicates.setdefault(cohort, _Pool()).put(node, [float(v) for v in values])

    def add_differences(self, cohort: str, node: str, diffs: Sequence[float]) -> None:
        """A child's paired differences with its parent; replaces that node's earlier entry."""
        self._differences.setdefault(cohort, _Pool()).put(node, [float(v) for v in diffs])

    def sigma_d(self, cohort: str, pending: Sequence[float] = ()) -> tuple[float, float] | None:
        """(estimate of sigma_d, its degrees of freedom), or None when nothing is known yet.

        `pending`: the open child's own differences, pooled in as well (a pooled-variance t statistic).
        """
        rep = self._replicates.get(cohort)
        dif = self._differences.get(cohort)
        ss_d = dif.total_ss if dif else 0.0
        df_d = dif.total_dof if dif else 0
        if len(pending) >= 2:
            ss_d += _sum_sq_dev(pending)
            df_d += len(pending) - 1
        if df_d >= self.min_diff_df or (df_d > 0 and not (rep and rep.total_dof)):
            return math.sqrt(ss_d / df_d), float(df_d)
        if rep and rep.total_dof:
            ss = 2.0 * rep.total_ss + ss_d
            df = rep.total_dof + df_d
            return math.sqrt(ss / df), float(df)
        return None


# ---------------------------------------------------------------------------------------------
# the per-child test


@dataclass(frozen=True)
class SequentialDecision:
    verdict: Verdict
    rule: str  # "upper boundary", "futility", "worse", "seed cap" or "open"
    reason: str
    n: int
    mean: float  # mean paired gain (child minus parent, positive is better)
    sigma_d: float  # the noise estimate used (before inflation); nan if none
    df: float  # its degrees of freedom
    inflation: float  # factor applied to sigma_d for its uncertainty
    delta1: float  # the alternative: gain = min_effect + delta1
    llr: float  # log likelihood ratio of H1 over H0
    upper: float  # promote when llr >= upper = log(1 / level)
    lower: float  # futility when llr <= lower = log(beta)
    level: float  # alpha / siblings
    ci_low: float  # fixed-n t interval at `confidence` (pooled sigma_d, df)
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
    delta1: float | None = None,
    confidence: float = 0.95,
) -> SequentialDecision:
    """Promote, prune or continue one child from its paired differences so far (positive is better).

    Called after each new seed. With s = sigma_d * inflation(df, level), level = alpha / siblings and
    delta1 = theta * sigma_d unless given, the log likelihood ratio of H1 (gain = m + delta1) over
    H0 (gain = m), m = min_effect, is  llr = delta1 / s^2 * sum(d - m) - n delta1^2 / (2 s^2).

    - promote ("upper boundary"): n >= n_min and llr >= log(1 / level);
    - prune ("futility"): llr <= log(beta); labelled "worse" when the t interval lies below zero;
    - prune ("seed cap"): n >= n_max and neither boundary was reached;
    - otherwise continue (add a seed).

    Guarantee (normal differences, sigma_d known): P(ever promote | gain <= m) <= level, whatever the
    number of looks (Ville's inequality); P(pruned for futility | gain >= m + delta1) <= beta.
    `sigma_d=None`: the child's own spread is used (df = n - 1), and nothing is decided before 3 seeds.
    """
    if not 0.0 < alpha < 1.0 or not 0.0 < beta < 1.0:
        raise ValueError(f"alpha ({alpha}) and beta ({beta}) must lie in (0, 1)")
    if n_max < 1 or n_min < 1:
        raise ValueError("n_min and n_max must be at least 1")
    values = [float(v) for v in diffs]
    n = len(values)
    level = alpha / max(1, siblings)
    upper = math.log(1.0 / level)
    lower = math.log(beta)
    m = min_effect
    mean = math.fsum(values) / n if n else math.nan
    if sigma_d is None and n >= 3:
        sigma_d, df = math.sqrt(_sum_sq_dev(values) / (n - 1)), float(n - 1)
    if n == 0 or sigma_d is None or not math.isfinite(sigma_d):
        return _open_or_cap(n, n_max, mean, level, upper, lower, "no noise estimate yet")

    if sigma_d <= 1e-12 * max(1.0, abs(mean)):  # no noise left: the differences are exact
        ci = (mean, mean)
        if n >= n_min and mean > m:
            dec = (Verdict.PROMOTE, RULE_UPPER, f"exact gain {mean:+.4g} > {m:.4g} with zero noise")
        elif mean <= m:
            dec = (Verdict.PRUNE, RULE_WORSE if mean < 0 else RULE_FUTILITY, f"exact gain {mean:+.4g} <= {m:.4g}")
        elif n >= n_max:
            dec = (Verdict.PRUNE, RULE_CAP, "seed cap")
        else:
            dec = (Verdict.CONTINUE, RULE_OPEN, f"{n} of {n_min} seeds")
        return SequentialDecision(
            dec[0], dec[1], dec[2], n, mean, 0.0, df, 1.0, math.nan, math.nan, upper, lower, level, *ci, *ci
        )

    infl = inflation(df, level)
    s = sigma_d * infl
    d1 = theta * sigma_d if delta1 is None else delta1
    if d1 <= 0:
        raise ValueError(f"delta1 must be positive, got {d1}")
    llr = d1 / (s * s) * (mean - m) * n - n * d1 * d1 / (2.0 * s * s)
    half = _t_ppf(0.5 + confidence / 2.0, round(max(df, 1.0), 6)) * sigma_d / math.sqrt(n)
    ci_low, ci_high = mean - half, mean + half
    cs = _mixture_halfwidth(n, s, d1 / s, 1.0 - confidence)
    cs_low, cs_high = mean - cs, mean + cs
    stat = (
        f"gain {mean:+.4g} (CI {ci_low:+.4g} to {ci_high:+.4g}), n={n}, llr={llr:.3g} "
        f"in ({lower:.3g}, {upper:.3g}), sigma_d={sigma_d:.4g} (df {df:.0f}, x{infl:.3g}), delta1={d1:.4g}"
    )

    def out(verdict: Verdict, rule: str, why: str) -> SequentialDecision:
        return SequentialDecision(
            verdict, rule, f"{why}: {stat}", n, mean, sigma_d, df, infl, d1, llr, upper, lower, level,
            ci_low, ci_high, cs_low, cs_high,
        )  # fmt: skip

    if llr >= upper and n >= n_min:
        return out(Verdict.PROMOTE, RULE_UPPER, f"better than parent + {m:.4g} at level {level:.3g}")
    if llr <= lower:
        if ci_high < 0.0:
            return out(Verdict.PRUNE, RULE_WORSE, "worse than the parent")
        return out(Verdict.PRUNE, RULE_FUTILITY, f"futile: a gain of {m + d1:.4g} is unlikely")
    if n >= n_max:
        return out(Verdict.PRUNE, RULE_CAP, f"inconclusive at the seed cap ({n_max})")
    if llr >= upper:
        return out(Verdict.CONTINUE, RULE_OPEN, f"above the boundary, but {n} of {n_min} seeds")
    return out(Verdict.CONTINUE, RULE_OPEN, "inconclusive; adding a seed")


def _open_or_cap(
    n: int, n_max: int, mean: float, level: float, upper: float, lower: float, why: str
) -> SequentialDecision:
    nan = math.nan
    if n >= n_max:
        verdict, rule, why = Verdict.PRUNE, RULE_CAP, f"{why} at the seed cap ({n_max})"
    else:
        verdict, rule = Verdict.CONTINUE, RULE_OPEN
    return SequentialDecision(
        verdict, rule, f"{why}: n={n}", n, mean, nan, 0.0, nan, nan, nan, upper, lower, level,
        -math.inf, math.inf, -math.inf, math.inf,
    )  # fmt: skip


def _mixture_halfwidth(n: int, s: float, tau: float, alpha: float) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence (mixing sd tau, in units of s)."""
    v = 1.0 + n * tau * tau
    return s / n * math.sqrt(v / (tau * tau) * (2.0 * math.log(1.0 / alpha) + math.log(v)))


# ---------------------------------------------------------------------------------------------
# online alpha spending over the stream of children


@lru_cache(maxsize=16)
def _zeta(p: float) -> float:
    return float(spsp.zeta(p, 1))


def gamma(j: int, power: float = GAMMA_POWER) -> float:
    """Spending sequence gamma_j = j^-power / zeta(power), j >= 1: positive, summing to 1."""
    if j < 1:
        return 0.0
    return j**-power / _zeta(power)


def lord_level(
    t: int, rejections: Iterable[int], *, alpha: float = ALPHA_FDR, w0: float = W0, power: float = GAMMA_POWER
) -> float:
    """LORD++ level of test number t (1-based), given the numbers of the tests promoted before it started.

    alpha_t = gamma_t w0 + (alpha - w0) gamma_{t - tau_1} + alpha * sum_{j >= 2} gamma_{t - tau_j}.
    """
    if not 0.0 < w0 <= alpha < 1.0:
        raise ValueError(f"need 0 < w0 ({w0}) <= alpha ({alpha}) < 1")
    taus = sorted(r for r in rejections if r < t)
    level = gamma(t, power) * w0
    for i, tau in enumerate(taus):
        level += (alpha - w0 if i == 0 else alpha) * gamma(t - tau, power)
    return level


@dataclass
class AlphaLedger:
    """Numbers children in the order their tests start and gives each its LORD++ level at its start.

    Rebuildable: replay `start` and `promoted` in ledger order. Only promotions recorded before a test
    starts raise its level, so tests that overlap in time stay valid (asynchronous online testing).
    """

    alpha: float = ALPHA_FDR
    w0: float = W0
    power: float = GAMMA_POWER
    tests: int = 0
    rejections: list[int] = field(default_factory=list)

    def start(self) -> tuple[int, float]:
        """A new test begins: its number and level."""
        self.tests += 1
        return self.tests, lord_level(self.tests, self.rejections, alpha=self.alpha, w0=self.w0, power=self.power)

    def promoted(self, test: int) -> None:
        if not 1 <= test <= self.tests:
            raise ValueError(f"unknown test {test}")
        if test not in self.rejections:
            self.rejections.append(test)
