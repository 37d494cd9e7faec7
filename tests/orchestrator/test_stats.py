from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from orchestrator.stats import Verdict, decide, paired_comparison, summarize


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


def test_zero_variance_is_a_deterministic_effect() -> None:
    better = paired_comparison({0: 1.1, 1: 1.2, 2: 1.3}, {0: 1.0, 1: 1.1, 2: 1.2}, direction="max")
    assert better.std == 0 and better.p_better == 0.0
    same = paired_comparison({0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0}, direction="max")
    assert same.p_better == 1.0 and same.p_worse == 1.0


def test_decide_promotes_prunes_and_continues() -> None:
    parent = {s: 0.9 + 0.01 * s for s in range(8)}
    strong = paired_comparison({s: v + 0.05 + 0.001 * (s % 2) for s, v in parent.items()}, parent, direction="max")
    assert decide(strong, alpha=0.05, siblings=3, min_effect=0.0, n_min=3, n_max=8).verdict is Verdict.PROMOTE
    assert decide(strong, alpha=0.05, siblings=3, min_effect=0.1, n_min=3, n_max=8).verdict is Verdict.PRUNE
    weak = paired_comparison({0: 0.91, 1: 0.90, 2: 0.93}, {0: 0.9, 1: 0.91, 2: 0.92}, direction="max")
    assert decide(weak, alpha=0.05, siblings=1, min_effect=0.0, n_min=3, n_max=8).verdict is Verdict.CONTINUE
    assert decide(weak, alpha=0.05, siblings=1, min_effect=0.0, n_min=3, n_max=3).verdict is Verdict.PRUNE
    few = paired_comparison({0: 2.0}, {0: 1.0}, direction="max")
    assert decide(few, alpha=0.05, siblings=1, min_effect=0.0, n_min=3, n_max=8).verdict is Verdict.CONTINUE


def test_bonferroni_over_siblings_raises_the_bar() -> None:
    parent = {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}
    child = {0: 1.03, 1: 1.01, 2: 1.04, 3: 1.02}
    c = paired_comparison(child, parent, direction="max")
    assert 0.001 < c.p_better < 0.05
    assert decide(c, alpha=0.05, siblings=1, min_effect=0, n_min=3, n_max=4).verdict is Verdict.PROMOTE
    assert decide(c, alpha=0.05, siblings=100, min_effect=0, n_min=3, n_max=4).verdict is Verdict.PRUNE


@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=2, max_size=12), st.floats(-0.5, 0.5))
def test_promotion_implies_its_recorded_evidence(noise: list[float], effect: float) -> None:
    parent = {i: 0.0 for i in range(len(noise))}
    child = {i: effect + 0.01 * v for i, v in enumerate(noise)}
    c = paired_comparison(child, parent, direction="max")
    d = decide(c, alpha=0.05, siblings=2, min_effect=0.01, n_min=2, n_max=12)
    if d.verdict is Verdict.PROMOTE:
        assert c.p_better < d.alpha and c.mean > 0.01
    if d.verdict is Verdict.CONTINUE:
        assert c.n < 12


def test_summarize() -> None:
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["ci_low"] < 2.0 < s["ci_high"]
    assert math.isnan(summarize([])["mean"])
