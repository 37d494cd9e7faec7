from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import sequential as sq
from orchestrator.stats import Verdict

DESIGNS = [(sq.N_MIN, sq.N_MAX), (2, 8)]  # (n_min, n_max): few, so the calibration tables stay cached


def _run(rng: np.random.Generator, delta: float, *, level: float, sigma: float = 1.0, df: float = math.inf,
         n_min: int = sq.N_MIN, n_max: int = sq.N_MAX) -> sq.SequentialDecision:  # fmt: skip
    """One child, seed by seed, until the test decides. Differences N(delta, 1); the test is told `sigma`."""
    diffs: list[float] = []
    while True:
        diffs.append(float(rng.normal(delta, 1.0)))
        d = sq.sequential_test(diffs, sigma_d=sigma, df=df, alpha=level, n_min=n_min, n_max=n_max)
        if d.verdict is not Verdict.CONTINUE:
            return d


def _tolerance(p: float, n: int) -> float:
    return 4.0 * math.sqrt(p * (1.0 - p) / n)  # sampling tolerance: four standard errors


# --- the calibrated boundary ------------------------------------------------------------------


def test_crossing_probability_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    theta, n_min, n_max, beta, u = 0.9, 2, 8, 0.4, 2.0
    z = rng.standard_normal((200_000, n_max)).cumsum(axis=1)
    n = np.arange(1, n_max + 1)
    llr = theta * z - n * theta * theta / 2.0
    up = (llr >= u) & (n >= n_min)
    down = llr <= math.log(beta)
    first_up = np.where(up.any(axis=1), up.argmax(axis=1), n_max + 1)
    first_down = np.where(down.any(axis=1), down.argmax(axis=1), n_max + 1)
    mc = float((first_up < first_down).mean())
    exact = sq.crossing_probability(u, theta, n_min, n_max, beta)
    assert exact == pytest.approx(mc, abs=_tolerance(mc, 200_000))
    assert sq.crossing_probability(u, theta, n_min, n_max) > exact  # non-binding futility spends more


@pytest.mark.parametrize(("n_min", "n_max"), DESIGNS)
@pytest.mark.parametrize("level", [0.05, 0.01, 1e-3])
def test_threshold_spends_exactly_the_level(level: float, n_min: int, n_max: int) -> None:
    u = sq.upper_threshold(level, sq.THETA, n_min, n_max, sq.BETA)
    assert u <= math.log(1.0 / level)  # never above Wald's bound
    assert sq.crossing_probability(u, sq.THETA, n_min, n_max, sq.BETA) == pytest.approx(level, rel=2e-3)
    assert sq.p_value(u, sq.THETA, n_min, n_max, sq.BETA) == pytest.approx(level, rel=2e-3)


def test_threshold_edges() -> None:
    assert sq.upper_threshold(0.0, sq.THETA, sq.N_MIN, sq.N_MAX, sq.BETA) == math.inf
    assert sq.p_value(-math.inf, sq.THETA, sq.N_MIN, sq.N_MAX, sq.BETA) == 1.0
    assert sq.p_value(100.0, sq.THETA, sq.N_MIN, sq.N_MAX, sq.BETA) <= math.exp(-100.0)


def test_default_tau_respects_the_addis_condition() -> None:
    reach = sq.reach_probability(sq.THETA, sq.N_MIN, sq.N_MAX, sq.BETA)
    assert sq.LAMBDA < sq.TAU <= reach < 1.0


def test_inflation() -> None:
    assert sq.inflation(math.inf, 0.01) == 1.0
    factors = [sq.inflation(df, 0.01) for df in (2, 5, 20, 200)]
    assert all(a > b > 1.0 for a, b in itertools.pairwise(factors))


# --- error rates, simulated ---------------------------------------------------------------------


def test_type_one_error_with_known_sigma() -> None:
    rng = np.random.default_rng(1)
    runs, level = 3000, 0.05
    rate = sum(_run(rng, 0.0, level=level).verdict is Verdict.PROMOTE for _ in range(runs)) / runs
    assert rate <= level + _tolerance(level, runs)
    assert rate >= level - _tolerance(level, runs)  # calibrated, not merely conservative


def test_type_one_error_with_an_estimated_sigma() -> None:
    """sigma_d estimated on 5 dof (chi-square), made conservative by the t-based inflation."""
    rng = np.random.default_rng(2)
    runs, level, df = 3000, 0.05, 5.0
    promoted = 0
    for _ in range(runs):
        sigma = math.sqrt(rng.chisquare(df) / df)
        promoted += _run(rng, 0.0, level=level, sigma=sigma, df=df).verdict is Verdict.PROMOTE
    assert promoted / runs <= level + _tolerance(level, runs)


def test_worse_children_are_promoted_even_less() -> None:
    rng = np.random.default_rng(3)
    runs, level = 2000, 0.05
    rate = sum(_run(rng, -0.3, level=level).verdict is Verdict.PROMOTE for _ in range(runs)) / runs
    assert rate <= level / 2


def test_futility_bound_under_the_alternative() -> None:
    """At gain = delta1 = theta * sigma_d, futility prunes with probability at most beta."""
    rng = np.random.default_rng(4)
    runs = 2000
    rules = [_run(rng, sq.THETA, level=0.01).rule for _ in range(runs)]
    futile = sum(r in (sq.RULE_FUTILITY, sq.RULE_WORSE) for r in rules) / runs
    assert futile <= sq.BETA + _tolerance(sq.BETA, runs)
    assert rules.count(sq.RULE_UPPER) / runs > 0.3


def test_p_value_is_uniform_below_reach_under_h0() -> None:
    rng = np.random.default_rng(5)
    runs = 3000
    p = np.array([_run(rng, 0.0, level=0.0).p_value for _ in range(runs)])  # level 0: never stops above
    reach = sq.reach_probability(sq.THETA, sq.N_MIN, sq.N_MAX, sq.BETA)
    for x in (0.05, 0.2, sq.TAU):
        assert float((p <= x).mean()) == pytest.approx(x, abs=_tolerance(x, runs))
    assert float((p == 1.0).mean()) == pytest.approx(1.0 - reach, abs=_tolerance(reach, runs))


# --- the recorded evidence satisfies the rule that fired ---------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    noise=st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=20),
    effect=st.floats(-2, 2),
    sigma=st.floats(0.1, 3),
    df=st.sampled_from([3.0, 12.0, 60.0, math.inf]),
    alpha=st.floats(1e-4, 0.05),
    min_effect=st.sampled_from([0.0, 0.2]),
    design=st.sampled_from(DESIGNS),
    siblings=st.integers(1, 4),
)
def test_decision_evidence_satisfies_the_rule_that_fired(
    noise: list[float],
    effect: float,
    sigma: float,
    df: float,
    alpha: float,
    min_effect: float,
    design: tuple[int, int],
    siblings: int,
) -> None:
    n_min, n_max = design
    diffs = [effect + sigma * v for v in noise]

    def decide(values: list[float]) -> sq.SequentialDecision:
        return sq.sequential_test(
            values, sigma_d=sigma, df=df, alpha=alpha, min_effect=min_effect, n_min=n_min, n_max=n_max,
            siblings=siblings,
        )  # fmt: skip

    d = decide(diffs)
    assert d == decide(list(diffs))  # deterministic
    assert d.n == len(diffs) and d.level == pytest.approx(alpha / siblings)
    assert d.ci_low <= d.mean <= d.ci_high and d.cs_low <= d.mean <= d.cs_high
    assert d.llr <= d.max_llr or d.n < n_min
    if d.verdict is Verdict.PROMOTE:
        assert d.rule == sq.RULE_UPPER and d.n >= n_min and d.llr >= d.upper
        assert d.p_value <= d.level * (1 + 1e-6) and d.mean > min_effect
    elif d.rule in (sq.RULE_FUTILITY, sq.RULE_WORSE):
        assert d.verdict is Verdict.PRUNE and d.llr <= d.lower
        assert d.rule != sq.RULE_WORSE or d.ci_high < 0
    elif d.rule == sq.RULE_CAP:
        assert d.verdict is Verdict.PRUNE and d.n >= n_max and d.lower < d.llr
    else:
        assert d.verdict is Verdict.CONTINUE and d.n < n_max and d.lower < d.llr
        assert d.llr < d.upper or d.n < n_min
    assert d.to_dict()["verdict"] == d.verdict.value


def test_no_promotion_without_level_or_before_n_min() -> None:
    big = [5.0] * 6
    assert sq.sequential_test(big, sigma_d=1.0, df=math.inf, alpha=0.0).verdict is not Verdict.PROMOTE
    d = sq.sequential_test(big[:2], sigma_d=1.0, df=math.inf, alpha=0.05, n_min=3)
    assert d.verdict is Verdict.CONTINUE and d.llr >= d.upper
    assert sq.sequential_test(big[:3], sigma_d=1.0, df=math.inf, alpha=0.05, n_min=3).verdict is Verdict.PROMOTE


def test_first_decision_replays_the_looks() -> None:
    diffs = [-2.0, 3.0, 3.0, 3.0, 3.0]  # futile after the first seed, although the whole batch looks good
    kw = {"sigma_d": 1.0, "df": math.inf, "alpha": 0.05}
    assert sq.sequential_test(diffs, sigma_d=1.0, df=math.inf, alpha=0.05).verdict is Verdict.PROMOTE
    first = sq.first_decision(diffs, **kw)
    assert first.verdict is Verdict.PRUNE and first.n == 1
    assert sq.first_decision([0.1, 0.2], **kw).verdict is Verdict.CONTINUE
    assert sq.first_decision([], **kw).n == 0


def test_min_effect_raises_the_bar() -> None:
    diffs = [0.5, 0.6, 0.4, 0.55, 0.5, 0.45]
    assert sq.sequential_test(diffs, sigma_d=0.1, df=50, alpha=0.05).verdict is Verdict.PROMOTE
    d = sq.sequential_test(diffs, sigma_d=0.1, df=50, alpha=0.05, min_effect=0.6)
    assert d.verdict is Verdict.PRUNE and d.rule == sq.RULE_FUTILITY


def test_clearly_worse_is_labelled_worse() -> None:
    d = sq.sequential_test([-2.0, -2.5], sigma_d=1.0, df=30, alpha=0.05)
    assert d.verdict is Verdict.PRUNE and d.rule == sq.RULE_WORSE and d.ci_high < 0


def test_no_noise_estimate_yet() -> None:
    d = sq.sequential_test([0.3, 0.1], sigma_d=None, df=0, alpha=0.05)
    assert d.verdict is Verdict.CONTINUE and math.isnan(d.sigma_d)
    own = sq.sequential_test([0.3, 0.1, 0.2], sigma_d=None, df=0, alpha=0.05)
    assert own.df == 2 and own.sigma_d == pytest.approx(0.1)
    assert sq.sequential_test([0.3], sigma_d=None, df=0, alpha=0.05, n_min=1, n_max=1).rule == sq.RULE_CAP


def test_zero_noise_is_an_exact_gain() -> None:
    up = sq.sequential_test([0.1, 0.1, 0.1], sigma_d=0.0, df=10, alpha=0.05)
    assert up.verdict is Verdict.PROMOTE and up.ci_low == up.ci_high == pytest.approx(0.1)
    down = sq.sequential_test([-0.1], sigma_d=0.0, df=10, alpha=0.05)
    assert down.verdict is Verdict.PRUNE and down.rule == sq.RULE_WORSE


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        sq.sequential_test([0.1], sigma_d=1.0, df=5, alpha=1.0)
    with pytest.raises(ValueError):
        sq.sequential_test([0.1], sigma_d=1.0, df=5, alpha=0.05, n_min=5, n_max=3)
    with pytest.raises(ValueError):
        sq.sequential_test([0.1], sigma_d=1.0, df=5, alpha=0.05, theta=0.0)


# --- pooled noise --------------------------------------------------------------------------------


def test_noise_model_pools_and_replaces_by_node() -> None:
    m = sq.NoiseModel(min_diff_df=4)
    assert m.sigma_d("a") is None
    m.add_replicates("a", "root", [1.0, 2.0, 3.0])  # s_r^2 = 1, stand-in 2 s_r^2
    sd, df = m.sigma_d("a") or (0.0, 0.0)
    assert sd == pytest.approx(math.sqrt(2.0)) and df == 2
    m.add_differences("a", "c1", [0.0, 2.0])  # ss 2, dof 1: pooled with the stand-in
    assert m.sigma_d("a") == pytest.approx((math.sqrt((4.0 + 2.0) / 3.0), 3.0))
    m.add_differences("a", "c2", [1.0, 1.0, 1.0, 4.0])  # ss 6.75, dof 3: differences alone now
    assert m.sigma_d("a") == pytest.approx((math.sqrt(8.75 / 4.0), 4.0))
    m.add_differences("a", "c2", [1.0, 1.0, 1.0])  # replaced, not added
    assert m.sigma_d("a") == pytest.approx((math.sqrt((4.0 + 2.0) / 5.0), 5.0))
    assert m.sigma_d("a", pending=[0.0, 1.0, 2.0, 3.0]) == pytest.approx((math.sqrt(7.0 / 6.0), 6.0))
    assert m.sigma_d("other") is None


def test_noise_model_is_order_independent() -> None:
    rng = np.random.default_rng(6)
    data = {f"n{i}": list(rng.normal(0, 1, 4)) for i in range(30)}
    a, b = sq.NoiseModel(), sq.NoiseModel()
    for k in data:
        a.add_differences("c", k, data[k])
    for k in reversed(list(data)):
        b.add_differences("c", k, data[k])
    assert a.sigma_d("c") == b.sigma_d("c")


# --- alpha-wealth ----------------------------------------------------------------------------------


def _campaign(rng: np.random.Generator, ledger: sq.AlphaLedger, effects: np.ndarray) -> tuple[int, int]:
    """Tests with one-sided z p-values (effect in sd units), run one after another; (false, all) promotions."""
    false = rejected = 0
    for mu in effects:
        test, level = ledger.start()
        p = float(0.5 * math.erfc((rng.normal(mu, 1.0)) / math.sqrt(2.0)))
        promoted = p <= level
        ledger.finish(test, promoted=promoted, p_value=p)
        rejected += promoted
        false += promoted and mu <= 0
    return false, rejected


def test_all_null_campaigns_rarely_promote_anything() -> None:
    rng = np.random.default_rng(7)
    campaigns = 2000
    anything = sum(_campaign(rng, sq.AlphaLedger(), np.zeros(100))[1] > 0 for _ in range(campaigns))
    assert anything / campaigns <= sq.W0 + _tolerance(sq.W0, campaigns)


def test_mfdr_stays_below_the_target() -> None:
    rng = np.random.default_rng(8)
    false = total = 0
    for _ in range(400):
        effects = np.where(rng.random(100) < 0.2, 3.0, np.where(rng.random(100) < 0.5, 0.0, -1.0))
        f, r = _campaign(rng, sq.AlphaLedger(), effects)
        false, total = false + f, total + r
    assert total > 400 and false / total <= sq.FDR


def test_ledger_bookkeeping_and_replay() -> None:
    a = sq.AlphaLedger()
    t1, l1 = a.start()
    assert (t1, l1) == (1, pytest.approx(min(sq.SPEND * sq.W0 * (sq.TAU - sq.LAMBDA), sq.MAX_LEVEL)))
    t2, l2 = a.start(siblings=2)
    assert l2 < l1 and a.wealth < sq.W0
    assert a.finish(t1, promoted=False, p_value=0.3) == pytest.approx(l1 / (sq.TAU - sq.LAMBDA))  # in (lam, tau]
    assert a.finish(t2, promoted=False, p_value=0.9) == 0.0  # discarded: pays nothing
    t3, _ = a.start()
    a.finish(t3, promoted=True, p_value=0.0)
    assert a.earned == pytest.approx(sq.FDR)
    with pytest.raises(ValueError):
        a.finish(t3, promoted=True, p_value=0.0)
    _, late = a.start(remaining=1.0)  # the end of the budget: spend what is left, up to the cap
    assert late == pytest.approx(min(sq.MAX_LEVEL, sq.LAMBDA, (a.earned - a.paid) * (sq.TAU - sq.LAMBDA)))
    b = sq.AlphaLedger()
    for test, promoted, p in [(1, False, 0.3), (2, False, 0.9), (3, True, 0.0)]:
        assert b.start(siblings=2 if test == 2 else 1)[0] == test
        b.finish(test, promoted=promoted, p_value=p)
    assert b.start(remaining=1.0)[1] == late  # same events, same levels
    with pytest.raises(ValueError):
        sq.AlphaLedger(fdr=0.05, w0=0.1)
