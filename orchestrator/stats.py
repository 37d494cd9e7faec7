"""Paired-seed summaries: a node against another on shared seeds, and one node's interval.

Decisions are made by orchestrator/sequential.py; these describe effects for reports and the
policy's estimates (a one-sided paired t-test and t intervals, through scipy).
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
