from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from orchestrator.stats import paired_comparison, summarize


def test_paired_comparison_matches_scipy_ttest_rel() -> None:
    rng = np.random.default_rng(0)
    parent = {s: float(v) for s, v in enumerate(rng.normal(0.9, 0.05, 6))}
    child = {s: parent[s] + 0.01 + float(rng.normal(0, 0.005)) for s in parent}
    c = paired_comparison(child, parent, direction="max")
    ref = sps.ttest_rel([child[s] for s in range(6)], [parent[s] for s in range(6)], alternative="greater")
    assert c.n == 6
    assert c.p_better == pytest.approx(ref.pvalue)
    assert c.ci_low < c.mean < c.ci_high


def test_direction_min_flips_the_sign() -> None:
    parent = {0: 1.0, 1: 1.1, 2: 0.9}
    child = {0: 0.8, 1: 0.92, 2: 0.69}
    c = paired_comparison(child, parent, direction="min")
    assert c.mean > 0 and c.p_better < 0.05


def test_only_shared_seeds_are_paired() -> None:
    c = paired_comparison({0: 1.0, 1: 2.0, 7: 9.0}, {0: 0.5, 1: 1.0, 3: 0.0}, direction="max")
    assert c.seeds == [0, 1] and c.n == 2
def test_summarize() -> None:
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["ci_low"] < 2.0 < s["ci_high"]
    assert math.isnan(summarize([])["mean"])


def test_zero_variance_is_a_deterministic_effect() -> None:
    better = paired_comparison({0: 1.1, 1: 1.2, 2: 1.3}, {0: 1.0, 1: 1.1, 2: 1.2}, direction="max")
    assert better.std == 0 and better.p_better == 0.0
    same = paired_comparison({0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0}, direction="max")
    assert same.p_better == 1.0 and same.p_worse == 1.0
