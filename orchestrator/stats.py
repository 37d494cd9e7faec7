"""Paired-seed comparisons of a child against its parent.

A child runs on its parent's seeds, so per-seed differences cancel the seed's share of the
noise. The test is a one-sided paired t-test (scipy), Bonferroni-corrected for the siblings
tested under the same parent. docs/statistics.md states each rule in words.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import stats as sps


class Verdict(StrEnum):
    PROMOTE = "promote"
    PRUNE = "prune"
    CONTINUE = "continue"  # evidence still open: add a seed


@dataclass(frozen=True)
class Comparison:
    """Child minus parent on shared seeds, signed so that positive is better."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    p_better: float  # one-sided p-value for "child is better"
    p_worse: float  # one-sided p-value for "child is worse"
    seeds: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    comparison: Comparison | None
    alpha: float  # the corrected level the p-values were held to


def paired_comparison(
    child: dict[int, float], parent: dict[int, float], *, direction: str, confidence: float = 0.95
) -> Comparison:
    seeds = sorted(set(child) & set(parent))
    sign = 1.0 if direction == "max" else -1.0
    diffs = np.array([sign * (child[s] - parent[s]) for s in seeds], dtype=float)
    n = len(diffs)
    if n == 0:
        return Comparison(0, math.nan, math.nan, math.nan, math.nan, 1.0, 1.0, [])
    mean = float(diffs.mean())
    if n == 1:
        return Comparison(1, mean, math.nan, -math.inf, math.inf, 1.0, 1.0, seeds)
    std = float(diffs.std(ddof=1))
    if std <= 1e-12 * max(1.0, abs(mean)):  # float round-off, not noise
        std = 0.0
    if std == 0.0:
        # Identical differences on every seed: a deterministic effect, no sampling noise left.
        p_better = 0.0 if mean > 0 else 1.0
        p_worse = 0.0 if mean < 0 else 1.0
        return Comparison(n, mean, 0.0, mean, mean, p_better, p_worse, seeds)
    sem = std / math.sqrt(n)
    t = mean / sem
    p_better = float(sps.t.sf(t, df=n - 1))
    p_worse = float(sps.t.cdf(t, df=n - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2, df=n - 1)) * sem
    return Comparison(n, mean, std, mean - half, mean + half, p_better, p_worse, seeds)


def decide(
    comparison: Comparison,
    *,
    alpha: float,
    siblings: int,
    min_effect: float,
    n_min: int,
    n_max: int,
) -> Decision:
    """Promote, prune or continue, from paired evidence.

    Promote: p_better below alpha / siblings and mean gain above min_effect.
    Prune: p_worse below alpha / siblings (significantly worse), or still no promotion at the
    seed cap. Otherwise add a seed.
    """
    level = alpha / max(1, siblings)
    c = comparison
    if c.n < n_min:
        return Decision(Verdict.CONTINUE, f"{c.n} of {n_min} paired seeds so far", c, level)
    if c.p_better < level and c.mean > min_effect:
        return Decision(
            Verdict.PROMOTE,
            f"better than parent by {c.mean:+.4g} (CI {c.ci_low:+.4g} to {c.ci_high:+.4g}, "
            f"p={c.p_better:.3g} < {level:.3g}, n={c.n})",
            c,
            level,
        )
    if c.p_worse < level:
        return Decision(
            Verdict.PRUNE,
            f"worse than parent by {c.mean:+.4g} (CI {c.ci_low:+.4g} to {c.ci_high:+.4g}, "
            f"p={c.p_worse:.3g} < {level:.3g}, n={c.n})",
            c,
            level,
        )
    if c.n >= n_max:
        why = "gain below the minimum effect" if c.p_better < level else "no significant gain"
        return Decision(
            Verdict.PRUNE,
            f"{why} at the seed cap: {c.mean:+.4g} (CI {c.ci_low:+.4g} to {c.ci_high:+.4g}, "
            f"p={c.p_better:.3g}, n={c.n})",
            c,
            level,
        )
    return Decision(
        Verdict.CONTINUE, f"inconclusive at n={c.n} (p={c.p_better:.3g}); adding a seed", c, level
    )


def summarize(values: list[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean and confidence interval of one node's metric over its seeds."""
    arr = np.array(values, dtype=float)
    n = len(arr)
    if n == 0:
        return {"n": 0, "mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "std": math.nan}
    mean = float(arr.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "ci_low": -math.inf, "ci_high": math.inf, "std": math.nan}
    std = float(arr.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "ci_low": mean - half, "ci_high": mean + half, "std": std}
