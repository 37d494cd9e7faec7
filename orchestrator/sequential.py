"""Sequential paired decisions: screening, then an e-process that may be looked at after every block.

A child is judged on its paired differences with its parent (child minus parent on one seed, in one
block: orchestrator/blocks.py), positive is better. Two stages, both pure functions of the data:

- `screen`: after `screen_blocks` blocks, a child whose standardized gain is below `screen_z` is
  dropped; the others enter the test. Screening spends few trials on the many changes that do
  nothing, so the test's trials go to the few that might (docs/statistics.md argues the choice).
- `sequential_test`: on blocks run after screening only, the scale-invariant likelihood ratio of
  "gain = min_effect + delta sigma_d" against "gain = min_effect", averaged over a few deltas. With
  sigma unknown and integrated out under the right-Haar prior (Lai 1976; Perez-Ortiz, Lardy, de Heide
  and Grunwald 2024), this ratio is an e-process: under the null its expectation is at most 1 at
  every stopping time, so promoting when it reaches 1 / level is a level test however often it is
  looked at, and its e-value can enter online FDR control under any dependence (orchestrator/fdr.py).

The campaign's pooled noise (orchestrator/noise.py), frozen when the test starts, enters as extra
noise-only degrees of freedom: the ratio stays exact when the pool's residuals are independent of
the child's test data and share its sigma (the stated assumption).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import special as spsp

from orchestrator.stats import Verdict

# Defaults, tuned on simulated campaigns of the tuning seed range (docs/benchmarks.md).
FDR = 0.10  # bound on the false-discovery rate of promotions (orchestrator/fdr.py)
W0 = 0.05  # bound on P(any promotion) in a campaign whose every change is null
BETA = 0.2  # futility: stop when the ratio at theta falls to this
THETA = 1.0  # centre of the alternatives, in sds of one paired difference
# The alternatives, as multiples of theta, and their weights: most mass near theta, where real
# changes are; some on large multiples, so that a large gain is provable on a handful of seeds
# (the scale-invariant ratio is bounded for a given number of seeds and delta).
DELTAS = ((0.5, 0.3), (1.0, 0.3), (2.0, 0.2), (4.0, 0.1), (8.0, 0.1))
SCREEN_BLOCKS = 2  # blocks a child is screened on
SCREEN_Z = 0.5  # standardized screening gain needed to enter the test
N_MIN = 3  # no promotion on fewer paired seeds in the test
CLIP = 3.0  # differences are pulled to within this many pooled sds of min_effect
MIN_CLIP_DF = 8  # ...once the pool is worth trusting that far
N_MAX = 32  # seed cap per child (screening and test together)

RULE_UPPER = "e-value"
RULE_FUTILITY = "futility"
RULE_WORSE = "worse"
RULE_CAP = "seed cap"
RULE_OPEN = "open"
RULE_SCREENED = "screened out"


def _sum_sq_dev(values: Sequence[float]) -> float:
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values)


# ---------------------------------------------------------------------------------------------
# the e-process


def _log_radial(dims: int, r: float) -> float:
    """log of the integral over u > 0 of u^(dims-1) exp(-u^2 / 2 + r u), exactly.

    Gamma(dims) exp(r^2 / 4) D_{-dims}(-r), with D the parabolic cylinder function; where that
    overflows (very large evidence), the Laplace approximation, whose relative error is O(1 / dims).
    """
    value = float(spsp.pbdv(-float(dims), -r)[0])
    if math.isfinite(value) and value > 0.0:
        return math.lgamma(dims) + r * r / 4.0 + math.log(value)
    k = dims - 1.0
    mode = (r + math.sqrt(r * r + 4.0 * k)) / 2.0
    curvature = 1.0 + k / (mode * mode)
    return k * math.log(mode) - mode * mode / 2.0 + r * mode + 0.5 * math.log(2.0 * math.pi / curvature)


def log_e_value(
    diffs: Sequence[float],
    *,
    min_effect: float = 0.0,
    pool_ss: float = 0.0,
    pool_df: float = 0.0,
    theta: float = THETA,
    deltas: Sequence[tuple[float, float]] = DELTAS,
) -> float:
    """log of the test's e-value after `diffs` (the test's paired differences, in order).

    For one alternative delta (in sds of a paired difference), with x = d - min_effect over n seeds,
    B = sum x, A = sum x^2 + pool_ss and N = n + pool_df noise dimensions, the right-Haar likelihood
    ratio of the scale-invariant statistic is

        exp(-n delta^2 / 2) * I(N, delta B / sqrt(A)) / (2^(N/2 - 1) Gamma(N / 2)),

    I(N, r) = integral over u > 0 of u^(N-1) exp(-u^2 / 2 + r u). The e-value averages it over
    delta in theta * multiple, weighted, for each (multiple, weight) in `deltas` (weights sum to 1).
    It is 1 before any data.
    """
    values = [float(v) - min_effect for v in diffs]
    n = len(values)
    if n == 0:
        return 0.0
    dims = n + pool_df
    total = math.fsum(values)
    scale = math.fsum(v * v for v in values) + pool_ss
    if scale <= 0.0 or dims < 1.0:
        return 0.0
    norm = (dims / 2.0 - 1.0) * math.log(2.0) + math.lgamma(dims / 2.0)
    logs, weights = [], []
    for multiple, weight in deltas:
        delta = theta * multiple
        r = delta * total / math.sqrt(scale)
        logs.append(-n * delta * delta / 2.0 + _log_radial(round(dims), r) - norm)
        weights.append(weight)
    return float(spsp.logsumexp(logs, b=np.array(weights) / sum(weights)))


def _mixture_halfwidth(n: int, s: float, tau: float, alpha: float) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence (mixing sd tau, in units of s).

    P(the true gain ever leaves mean +- halfwidth, over all n) <= alpha, for normal differences of sd s.
    """
    v = 1.0 + n * tau * tau
    return s / n * math.sqrt(v / (tau * tau) * (2.0 * math.log(1.0 / alpha) + math.log(v)))


# ---------------------------------------------------------------------------------------------
# decisions


@dataclass(frozen=True)
class SequentialDecision:
    verdict: Verdict
    rule: str  # "e-value", "futility", "worse", "seed cap", "screened out" or "open"
    reason: str
    n: int  # paired seeds the decision read
    mean: float  # their mean gain (child minus parent, positive is better)
    sigma_d: float  # the noise estimate (pool and own differences; nan: none)
    df: float  # its degrees of freedom
    level: float  # the level the test was granted (0 in screening)
    e_value: float  # the test's e-value (1 in screening)
    threshold: float  # promote when e_value >= threshold = 1 / level
    p_value: float  # min(1, 1 / e_value): an anytime-valid p-value
    z: float  # standardized gain, mean / (sigma_d / sqrt(n)) (what screening reads)
    ci_low: float  # always-valid confidence sequence at `confidence` (normal mixture, sigma_d as known)
    ci_high: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = str(self.verdict)
        return d


def _interval(n: int, mean: float, sigma: float, confidence: float) -> tuple[float, float]:
    if n == 0 or not math.isfinite(sigma):
        return -math.inf, math.inf
    half = _mixture_halfwidth(n, max(sigma, 1e-300), THETA, 1.0 - confidence) if sigma > 0 else 0.0
    return mean - half, mean + half


def _noise(values: list[float], pool: tuple[float, float] | None) -> tuple[float, float]:
    ss, df = pool if pool is not None else (0.0, 0.0)
    if len(values) >= 2:
        ss += _sum_sq_dev(values)
        df += len(values) - 1
    return (math.sqrt(ss / df), df) if df > 0 else (math.nan, 0.0)


def _standardized(n: int, gain: float, sigma: float) -> float:
    if n == 0 or math.isnan(sigma):
        return math.nan
    if sigma == 0.0:
        return math.copysign(math.inf, gain) if gain else 0.0
    return gain * math.sqrt(n) / sigma


def screen(
    diffs: Sequence[float],
    *,
    pool: tuple[float, float] | None,
    blocks: int = SCREEN_BLOCKS,
    screen_z: float = SCREEN_Z,
    min_effect: float = 0.0,
    confidence: float = 0.95,
) -> SequentialDecision:
    """Drop a child whose screening gain is below `screen_z` standard errors, after `blocks` seeds.

    CONTINUE with rule "open" means: not screened yet (fewer than `blocks` seeds), or passed
    (`passed(decision)`): the child enters the test. Screening spends no error budget: the test
    that follows reads only seeds run after it.
    """
    values = [float(v) for v in diffs]
    n = len(values)
    mean = math.fsum(values) / n if n else math.nan
    sigma, df = _noise(values, pool)
    z = _standardized(n, mean - min_effect, sigma)
    low, high = _interval(n, mean, sigma, confidence)
    stat = f"gain {mean:+.4g} over {n} seed(s), z={z:.3g}, sigma_d={sigma:.4g} (df {df:.0f})"

    def out(verdict: Verdict, rule: str, why: str) -> SequentialDecision:
        return SequentialDecision(verdict, rule, f"{why}: {stat}", n, mean, sigma, df, 0.0, 1.0, math.inf, 1.0,
                                  z, low, high)

    if n < blocks:
        return out(Verdict.CONTINUE, RULE_OPEN, f"screening, {n} of {blocks} seeds")
    if math.isnan(z):
        return out(Verdict.PROMOTE, RULE_OPEN, "no noise estimate to screen with; enters the test")
    if z < screen_z:
        if high < 0.0:
            return out(Verdict.PRUNE, RULE_WORSE, "worse than the parent in screening")
        return out(Verdict.PRUNE, RULE_SCREENED, f"screened out (z below {screen_z:g})")
    return out(Verdict.PROMOTE, RULE_OPEN, f"passed screening (z >= {screen_z:g}); enters the test")


def sequential_test(
    diffs: Sequence[float],
    *,
    level: float,
    pool: tuple[float, float] | None,
    beta: float = BETA,
    theta: float = THETA,
    deltas: Sequence[tuple[float, float]] = DELTAS,
    min_effect: float = 0.0,
    n_min: int = N_MIN,
    n_max: int = N_MAX,
    confidence: float = 0.95,
    clip: float = CLIP,
) -> SequentialDecision:
    """Promote, prune or continue a child in its test, from the test's paired differences so far.

    - promote ("e-value"): n >= n_min and e-value >= 1 / level;
    - prune ("futility"): the ratio at theta alone <= beta (called "worse" when the confidence
      sequence lies below 0); P(futility | gain = min_effect + theta sigma_d) <= beta;
    - prune ("seed cap"): n >= n_max without either;
    - otherwise continue: add a block.

    Guarantee (normal differences; pool residuals independent of the test's data, same sigma):
    P(promote | gain <= min_effect) <= level, whatever the looks and however the test stops.
    """
    if not 0.0 <= level < 1.0 or not 0.0 < beta < 1.0:
        raise ValueError(f"level ({level}) must lie in [0, 1) and beta ({beta}) in (0, 1)")
    if not 1 <= n_min <= n_max:
        raise ValueError(f"need 1 <= n_min ({n_min}) <= n_max ({n_max})")
    if theta <= 0:
        raise ValueError(f"theta must be positive, got {theta}")
    values = [float(v) for v in diffs]
    n = len(values)
    mean = math.fsum(values) / n if n else math.nan
    pool_ss, pool_df = pool if pool is not None else (0.0, 0.0)
    evidence = _winsorized(values, min_effect, pool_ss, pool_df, clip)
    log_e = log_e_value(evidence, min_effect=min_effect, pool_ss=pool_ss, pool_df=pool_df, theta=theta, deltas=deltas)
    e_value = math.exp(min(log_e, 700.0))
    # Futility reads the ratio at theta alone: averaged with the smallest alternative, the e-value
    # of a change that does nothing decays too slowly to stop it before the seed cap.
    log_e_theta = log_e_value(
        evidence, min_effect=min_effect, pool_ss=pool_ss, pool_df=pool_df, theta=theta, deltas=((1.0, 1.0),)
    )
    threshold = 1.0 / level if level > 0 else math.inf
    sigma, df = _noise(values, pool)
    z = _standardized(n, mean - min_effect, sigma)
    low, high = _interval(n, mean, sigma, confidence)
    stat = (
        f"gain {mean:+.4g} (CS {low:+.4g} to {high:+.4g}), n={n}, e-value {e_value:.3g} "
        f"(promote at {threshold:.3g}, futile at {beta:g}), sigma_d={sigma:.4g} (df {df:.0f})"
    )

    def out(verdict: Verdict, rule: str, why: str) -> SequentialDecision:
        return SequentialDecision(
            verdict, rule, f"{why}: {stat}", n, mean, sigma, df, level, e_value, threshold,
            min(1.0, 1.0 / e_value) if e_value > 0 else 1.0, z, low, high,
        )  # fmt: skip

    if n == 0:
        return out(Verdict.CONTINUE, RULE_OPEN, "no seeds yet")
    if e_value >= threshold and n >= n_min:
        why = f"better than the parent by more than {min_effect:.4g} at level {level:.3g}"
        return out(Verdict.PROMOTE, RULE_UPPER, why)
    if log_e_theta <= math.log(beta):
        if high < 0.0:
            return out(Verdict.PRUNE, RULE_WORSE, "worse than the parent")
        why = f"futile: a gain of theta sigma_d is {1 / beta:g} times less likely than none"
        return out(Verdict.PRUNE, RULE_FUTILITY, why)
    if n >= n_max:
        return out(Verdict.PRUNE, RULE_CAP, f"inconclusive at the seed cap ({n_max})")
    if e_value >= threshold:
        return out(Verdict.CONTINUE, RULE_OPEN, f"e-value reached, but {n} of {n_min} seeds")
    return out(Verdict.CONTINUE, RULE_OPEN, "inconclusive; adding a block")


def _winsorized(values: list[float], min_effect: float, pool_ss: float, pool_df: float, clip: float) -> list[float]:
    """The differences the e-value reads: each pulled to within `clip` pooled sds of min_effect.

    One heavy-tailed draw (a loss spike, a diverged seed) would otherwise count as evidence many
    times its share. The bound comes from the pool frozen before the test, not from the test's own
    data; for noise symmetric about the null, clipping keeps the null's mean where it was.
    """
    if clip <= 0 or pool_df < MIN_CLIP_DF or pool_ss <= 0:
        return values
    bound = clip * math.sqrt(pool_ss / pool_df)
    return [min_effect + min(max(v - min_effect, -bound), bound) for v in values]


def first_decision(diffs: Sequence[float], **kwargs: Any) -> SequentialDecision:
    """`sequential_test` looked at after every seed, in order: the first look that stops, else the last."""
    values = list(diffs)
    decision = sequential_test([], **kwargs)
    for k in range(1, len(values) + 1):
        decision = sequential_test(values[:k], **kwargs)
        if decision.verdict is not Verdict.CONTINUE:
            break
    return decision


def passed(decision: SequentialDecision) -> bool:
    """Screening let the child into the test."""
    return decision.verdict is Verdict.PROMOTE and decision.rule == RULE_OPEN

