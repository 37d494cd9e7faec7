"""The e-process test, screening, the noise pool and e-LOND: each guarantee checked by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator import fdr
from orchestrator import sequential as sq
from orchestrator.noise import NoiseModel
from orchestrator.stats import Verdict


def _e(diffs: list[float] | np.ndarray, **kwargs: float) -> float:
    return math.exp(sq.log_e_value(list(diffs), **kwargs))


@pytest.mark.parametrize("pool_df", [0, 6, 40])
def test_the_e_value_has_expectation_one_under_the_null(pool_df: int) -> None:
    rng = np.random.default_rng(pool_df)
    values = []
    for _ in range(4000):
        pool_ss = float((rng.standard_normal(pool_df) ** 2).sum()) * 9.0  # sigma 3: the scale does not matter
        values.append(_e(3.0 * rng.standard_normal(5), pool_ss=pool_ss, pool_df=pool_df))
    mean, se = float(np.mean(values)), float(np.std(values)) / math.sqrt(len(values))
    assert mean <= 1.0 + 3 * se
    assert mean > 0.5  # not trivially small: the ratio is a likelihood ratio, not a shrunk one


def test_looking_after_every_seed_keeps_the_level() -> None:
    # An e-process: stopping at the first look where e >= 1 / level is a level test (Ville).
    rng = np.random.default_rng(1)
    level, runs, promoted = 0.05, 1000, 0
    for _ in range(runs):
        pool_ss = float((rng.standard_normal(10) ** 2).sum())
        diffs = rng.standard_normal(24)
        decision = sq.first_decision(diffs, level=level, pool=(pool_ss, 10.0), beta=1e-9, n_min=1, n_max=24)
        promoted += decision.verdict is Verdict.PROMOTE
    assert promoted / runs <= level + 3 * math.sqrt(level / runs)


def test_a_worse_child_is_promoted_even_less() -> None:
    rng = np.random.default_rng(2)
    promoted = sum(
        sq.first_decision(rng.normal(-0.3, 1.0, 24), level=0.05, pool=(20.0, 20.0), n_max=24).verdict
        is Verdict.PROMOTE
        for _ in range(1000)
    )
    assert promoted <= 10


def test_a_real_gain_is_promoted_and_a_null_one_is_stopped_for_futility() -> None:
    rng = np.random.default_rng(3)
    real = [sq.first_decision(rng.normal(1.0, 1.0, 32), level=0.01, pool=(40.0, 40.0)) for _ in range(300)]
    null = [sq.first_decision(rng.normal(0.0, 1.0, 32), level=0.01, pool=(40.0, 40.0)) for _ in range(300)]
    assert sum(d.verdict is Verdict.PROMOTE for d in real) / 300 >= 1 - sq.BETA  # futility takes at most beta
    assert np.mean([d.n for d in real if d.verdict is Verdict.PROMOTE]) < 16
    futile = [d for d in null if d.rule in (sq.RULE_FUTILITY, sq.RULE_WORSE)]
    assert len(futile) / 300 >= 0.9 and np.mean([d.n for d in futile]) < 12
    # P(futility | gain = theta sigma_d) <= beta
    at_theta = [sq.first_decision(rng.normal(sq.THETA, 1.0, 32), level=0.01, pool=(400.0, 400.0))
                for _ in range(400)]
    assert sum(d.rule == sq.RULE_FUTILITY for d in at_theta) / 400 <= sq.BETA + 0.05


def test_the_e_value_does_not_depend_on_the_metrics_scale() -> None:
    diffs = [0.3, 1.2, -0.4, 0.9]
    base = sq.log_e_value(diffs, pool_ss=7.0, pool_df=5)
    scaled = sq.log_e_value([1000 * d for d in diffs], pool_ss=7.0e6, pool_df=5)
    assert scaled == pytest.approx(base, rel=1e-9)
    assert sq.log_e_value([]) == 0.0


def test_a_large_gain_is_provable_on_a_handful_of_seeds() -> None:
    # The scale-invariant ratio is bounded for a given number of seeds; the large alternatives in
    # the mixture put that bound where a real, large change can reach a small level.
    decision = sq.sequential_test([3.0, 3.1, 2.9], level=0.005, pool=(10.0, 10.0))  # 3 sigma_d
    assert decision.verdict is Verdict.PROMOTE and decision.e_value >= decision.threshold == pytest.approx(200.0)


def test_large_evidence_stays_finite() -> None:
    log_e = sq.log_e_value([50.0] * 30, pool_ss=1.0, pool_df=100)
    assert math.isfinite(log_e) and log_e > 100


def test_promotion_needs_min_seeds_and_a_level() -> None:
    assert sq.sequential_test([3.0, 3.1], level=0.05, pool=(1.0, 5.0), n_min=3).verdict is Verdict.CONTINUE
    assert sq.sequential_test([3.0, 3.1, 2.9], level=0.0, pool=(1.0, 5.0)).verdict is not Verdict.PROMOTE
    with pytest.raises(ValueError):
        sq.sequential_test([1.0], level=1.5, pool=None)


def test_clearly_worse_is_labelled_worse_and_the_cap_prunes() -> None:
    worse = sq.first_decision([-3.0, -3.2, -2.9, -3.1], level=0.01, pool=(2.0, 8.0))
    assert worse.verdict is Verdict.PRUNE and worse.rule == sq.RULE_WORSE
    capped = sq.sequential_test([0.5, -0.2, 0.4], level=1e-9, pool=(3.0, 3.0), beta=1e-9, n_max=3)
    assert capped.rule == sq.RULE_CAP


def test_screening_drops_below_the_bar_and_waits_for_its_blocks() -> None:
    pool = (10.0, 10.0)  # sigma_d 1
    assert sq.screen([0.1], pool=pool, blocks=2).verdict is Verdict.CONTINUE
    dropped = sq.screen([0.1, -0.2], pool=pool, blocks=2, screen_z=0.5)
    assert dropped.verdict is Verdict.PRUNE and dropped.rule == sq.RULE_SCREENED
    kept = sq.screen([1.0, 0.8], pool=pool, blocks=2, screen_z=0.5)
    assert sq.passed(kept) and kept.z == pytest.approx(0.9 * math.sqrt(2) / math.sqrt(10.02 / 11), rel=1e-3)
    assert sq.passed(sq.screen([0.3, 0.2], pool=None, blocks=2))  # nothing to screen with: the test decides


def test_noise_model_pools_and_replaces_by_node() -> None:
    m = NoiseModel(min_diff_df=4)
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
    a, b = NoiseModel(), NoiseModel()
    for k in data:
        a.add_differences("c", k, data[k])
    for k in reversed(list(data)):
        b.add_differences("c", k, data[k])
    assert a.sigma_d("c") == b.sigma_d("c")


# --- e-LOND ---------------------------------------------------------------------------------------


def test_gamma_sums_to_at_most_one() -> None:
    for horizon in (4.0, 16.0, 200.0):
        total = sum(fdr.gamma(t, horizon) for t in range(1, 2_000_000))
        assert total <= 1.0
        assert total >= horizon / (horizon + 1) - 1e-3  # most of it is spendable


def test_levels_follow_the_rule_and_replay() -> None:
    ledger = fdr.ELond(fdr=0.1, w0=0.05, horizon=10.0)
    t1, l1 = ledger.start()
    assert (t1, l1) == (1, pytest.approx(fdr.gamma(1, 10.0) * 0.05))
    ledger.finish(t1, promoted=True)
    t2, l2 = ledger.start()
    assert t2 == 2
    assert l2 == pytest.approx(fdr.gamma(2, 10.0) * (0.05 + 0.1))
    with pytest.raises(ValueError):
        ledger.finish(t1, promoted=False)
    replay = fdr.ELond(fdr=0.1, w0=0.05, horizon=10.0)
    replay.resume(1, l1)
    replay.finish(1, promoted=True)
    replay.resume(2, l2)
    assert replay.levels == ledger.levels and replay.promotions_at_start == ledger.promotions_at_start
    assert ledger.budget_used() <= 1.0


def _stream(rng: np.random.Generator, effects: np.ndarray, shared: float) -> tuple[int, int]:
    """Tests whose e-values share one noise draw (dependent), run as a campaign would; (false, all)."""
    ledger = fdr.ELond(fdr=0.1, w0=0.05, horizon=len(effects) / 2)
    common = rng.standard_normal(12)
    false = promoted = 0
    for mu in effects:
        test, level = ledger.start()
        diffs = mu + math.sqrt(shared) * common + math.sqrt(1 - shared) * rng.standard_normal(12)
        win = sq.first_decision(diffs, level=level, pool=None, n_max=12).verdict is Verdict.PROMOTE
        ledger.finish(test, promoted=win)
        promoted += win
        false += win and mu <= 0
    return false, promoted


def test_all_null_streams_rarely_promote_even_when_tests_share_noise() -> None:
    rng = np.random.default_rng(7)
    runs = 200
    any_promoted = sum(_stream(rng, np.zeros(20), shared=0.5)[1] > 0 for _ in range(runs))
    assert any_promoted / runs <= 0.05 + 3 * math.sqrt(0.05 / runs)


def test_false_discoveries_stay_below_fdr_under_dependence() -> None:
    rng = np.random.default_rng(8)
    fdps = []
    for _ in range(120):
        effects = np.where(rng.random(20) < 0.3, 1.5, 0.0)
        false, promoted = _stream(rng, effects, shared=0.5)
        fdps.append(false / max(promoted, 1))
    assert float(np.mean(fdps)) <= 0.1
