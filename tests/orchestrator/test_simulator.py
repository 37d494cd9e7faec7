"""The simulator drives the real engine; small runs check it is wired and scores honestly."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.simulator import (
    SCENARIOS,
    default_sim_config,
    greedy_campaign,
    random_search_campaign,
    sim_config,
    simulate,
    simulate_campaign,
    summarize,
)

SMALL = replace(SCENARIOS["S"], budget=120)


def test_a_campaign_spends_its_budget_and_scores_against_the_truth() -> None:
    outcome = simulate_campaign(default_sim_config(SMALL), SMALL, seed=1)
    assert outcome.trials == SMALL.budget
    assert outcome.candidates > 10
    assert 0 <= outcome.false_promoted <= outcome.promoted
    assert outcome.positives_found <= outcome.positives_tested


def test_same_seed_same_campaign() -> None:
    config = default_sim_config(SMALL)
    assert simulate_campaign(config, SMALL, seed=5) == simulate_campaign(config, SMALL, seed=5)


def test_all_null_campaigns_rarely_promote_anything() -> None:
    null = replace(SCENARIOS["all_null"], budget=120)
    outcomes = [simulate_campaign(default_sim_config(null), null, seed) for seed in range(20)]
    summary = summarize("arborist", null, outcomes)
    assert summary.mean_true_gain == 0.0
    assert summary.share_promoting_any <= 0.15  # 5% expected; 20 campaigns leave room for chance


def test_the_rule_beats_greedy_on_false_discoveries() -> None:
    seeds = range(30)
    ours = summarize("arborist", SMALL, [simulate_campaign(default_sim_config(SMALL), SMALL, s) for s in seeds])
    greedy = summarize("greedy-1", SMALL, [greedy_campaign(SMALL, s, 1) for s in seeds])
    assert greedy.fdr > 0.4
    assert ours.fdr < greedy.fdr / 2


def test_baselines_spend_the_same_budget() -> None:
    assert greedy_campaign(SMALL, 3, 3).trials <= SMALL.budget
    random = random_search_campaign(SMALL, 3, 3)
    assert random.trials <= SMALL.budget and random.promoted <= 1


def test_concurrent_campaigns_run_on_a_simulated_clock() -> None:
    outcome = simulate_campaign(default_sim_config(SMALL, concurrent=2), SMALL, seed=2)
    assert outcome.trials == SMALL.budget and outcome.gpu_hours > 0


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from orchestrator.tree import Event, NodeStatus, SearchTree  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["S", "heavy_tails", "node_noise"]))
def test_every_decision_satisfies_its_rule_and_replays(seed: int, name: str) -> None:
    scenario = replace(SCENARIOS[name], budget=100)
    config = default_sim_config(scenario)
    journal: list[Event] = []
    tree, _ = simulate(config, scenario, seed, sink=journal.append)
    for node in tree.nodes.values():
        if node.change is None or node.status is NodeStatus.OPEN:
            continue
        evidence = (node.decision or {}).get("evidence") or {}
        if node.status is NodeStatus.PROMOTED:
            assert evidence["rule"] == "upper boundary"
            assert evidence["llr"] >= evidence["upper"] and evidence["p_value"] <= evidence["level"]
            assert evidence["n"] >= config.stats.min_seeds and evidence["mean"] > config.stats.min_effect
            fresh = evidence["confirm_diffs"]
            assert sum(fresh) / len(fresh) > config.stats.min_effect - evidence["confirm_tolerance"]
        elif evidence:
            assert evidence.get("rule") in {"futility", "worse", "seed cap", "upper boundary"}
    replayed = SearchTree.replay(journal)
    assert (replayed.nodes, replayed.trials, replayed.incumbent_id) == (tree.nodes, tree.trials, tree.incumbent_id)


def test_a_wall_budget_stops_a_simulated_campaign_on_simulated_time() -> None:
    wall_s = 20 * 3600.0  # about 20 of the scenario's hour-long trials, one at a time
    config = sim_config(SMALL, budget={"max_wall_s": wall_s})
    tree, outcome = simulate(config, SMALL, seed=3)
    assert tree.finished_reason is not None and "wall-clock budget reached" in tree.finished_reason
    # It ran well past its baseline (real time, a wall-clock date, would stop it at once) and
    # stopped once simulated time ran out, long before the trial budget.
    assert config.seeds.baseline < outcome.trials < SMALL.budget
    assert wall_s <= tree.elapsed_s() < wall_s + 10 * 3600.0
