"""The simulator drives the real engine; small runs check it is wired and scores honestly."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.simulator import (
    SCENARIOS,
    SimulatedDrafts,
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
    assert outcome.candidates > 3
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


import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from orchestrator import blocks, fdr  # noqa: E402
from orchestrator.tree import Event, NodeStatus, SearchTree  # noqa: E402


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["S", "heavy_tails", "drift", "all_null_drift", "machines"]))
def test_every_decision_satisfies_its_rule_and_the_accounting_replays(seed: int, name: str) -> None:
    scenario = replace(SCENARIOS[name], budget=100)
    config = default_sim_config(scenario, concurrent=2)
    journal: list[Event] = []
    tree, _ = simulate(config, scenario, seed, sink=journal.append)
    window = blocks.window(config)
    horizon = config.stats.tests_expected or fdr.expected_tests(config.budget.max_trials)
    promotions = sorted(
        n.decided_seq for n in tree.nodes.values()
        if n.status is NodeStatus.PROMOTED and n.test and "suspect" not in ((n.decision or {}).get("evidence") or {})
    )
    tested = sorted((n for n in tree.nodes.values() if n.test), key=lambda n: n.test)
    # Tests are numbered 1, 2, ... in the order they started; each level is e-LOND's, from the
    # promotions recorded before it started; the budget they draw on never exceeds 1.
    assert [n.test for n in tested] == list(range(1, len(tested) + 1))
    assert [n.test_seq for n in tested] == sorted(n.test_seq for n in tested)
    for node in tested:
        before = sum(1 for seq in promotions if seq < node.test_seq)
        expected = fdr.gamma(node.test, horizon) * (config.stats.initial_wealth + config.stats.fdr * before)
        assert node.level == pytest.approx(expected, rel=1e-12) and node.level > 0
    assert sum(fdr.gamma(n.test, horizon) for n in tested) <= 1.0
    for node in tree.nodes.values():
        if node.change is None or node.status is NodeStatus.OPEN:
            continue
        evidence = (node.decision or {}).get("evidence") or {}
        # No pair outside its time window: a test's pairs in one block; screening's may reuse the
        # parent's recent controls (it only chooses what to test).
        limit = blocks.screen_window(config) if evidence.get("test") == "screening" else window
        for block in evidence.get("blocks", []):
            assert block["apart"] <= limit
        if node.status is NodeStatus.PROMOTED:
            assert node.test and evidence["rule"] == "e-value"
            assert evidence["e_value"] >= evidence["threshold"] == pytest.approx(1 / node.level)
            assert evidence["n"] >= config.stats.min_seeds and evidence["n"] == len(evidence["test_diffs"])
            test_trials = [tree.trials[f"{node.node_id}-s{s}"] for s in evidence["test_seeds"]]
            assert all(t.requested_seq > node.test_seq for t in test_trials)  # screening data stay out
            # No promotion rests only on blocks from before a drift detected ahead of it.
            last_block = max(t.requested_seq for t in test_trials)
            assert not [e for e in tree.drift_events if last_block < e["seq"] < node.decided_seq]
        elif evidence.get("rule"):
            assert evidence["rule"] in {"futility", "worse", "seed cap", "screened out"}
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


def test_drafts_on_the_simulated_clock_come_back_after_the_llm_latency() -> None:
    """The baseline's trials end at 30 s; the first draft is asked for then and comes back at 50 s:
    no search node exists before, and the first search trials start then."""
    scenario = replace(SCENARIOS["S"], budget=10**6)
    config = sim_config(scenario, ray={"max_concurrent": 8}, search={"max_open_nodes": 8})
    drafts = SimulatedDrafts(20.0, k=4, ready=2)
    events: list[Event] = []
    simulate(config, scenario, 3, events.append, drafts=drafts, trial_s=30.0, until_s=200.0)
    created = [e.ts for e in events if e.type == "node_created" and e.data["parent_id"] is not None]
    assert created and min(created) == 50.0
    starts = [e.ts for e in events if e.type == "trial_started" and e.data["node_id"] != "n0"]
    assert starts and min(starts) == 50.0
    assert drafts.requests >= 2  # asked again for the next parents as the tree grew
