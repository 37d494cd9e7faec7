"""Drift, machines, interacting changes, the scenario grid, paired greedy and the summaries'
intervals: what the decision benchmark's scenarios are made of, checked against their definitions."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from orchestrator.change import Change
from orchestrator.simulator import (
    GRID_DRIFTS,
    GRID_EFFECTS,
    GRID_NULLS,
    GRID_RHOS,
    GRID_TAILS,
    SCENARIOS,
    Scenario,
    _campaign,
    _SyntheticWorkspace,
    _Truth,
    default_sim_config,
    greedy_campaign,
    grid,
    paired_greedy_campaign,
    simulate,
    summarize,
    wilson_interval,
)
from orchestrator.tree import Event, Node

# rho = 1: a trial's noise is its seed's alone, so the same node on the same seed reads the same
# value unless drift or the machine moved it.
STEADY = Scenario(name="steady", rho=1.0)


def test_drift_grows_with_each_trial_dispatched_whatever_the_node() -> None:
    truth = _Truth.for_campaign(replace(STEADY, drift=0.25, sigma=2.0), seed=3)
    truth.add_node("n1", "n0", [])
    values = [truth.run(node, 7, False) for node in ("n0", "n1", "n0", "n1")]
    steps = [b - a for a, b in itertools.pairwise(values)]
    assert steps == pytest.approx([0.5, 0.5, 0.5])  # 0.25 sigma per trial, sigma = 2


def test_machine_offsets_are_fixed_per_campaign_and_placed_round_robin() -> None:
    scenario = replace(STEADY, machines=4, machine_offset_sd=0.5)
    truth = _Truth.for_campaign(scenario, seed=11)
    assert truth.offsets == _Truth.for_campaign(scenario, seed=11).offsets
    assert truth.offsets != _Truth.for_campaign(scenario, seed=12).offsets
    assert len(set(truth.offsets)) == 4
    reference = truth.sample("n0", 5, False)  # the node's value on seed 5, on no machine
    machines = [truth.place() for _ in range(8)]
    assert machines == [0, 1, 2, 3, 0, 1, 2, 3]
    read = [truth.run("n0", 5, False, machine=m) - reference for m in machines]
    assert read == pytest.approx([truth.offsets[m] for m in machines])


def test_a_machine_drifts_with_the_trials_it_ran() -> None:
    truth = _Truth.for_campaign(replace(STEADY, machines=2, machine_drift=0.1), seed=0)
    base = truth.sample("n0", 1, False)
    on_first = [truth.run("n0", 1, False, machine=0) - base for _ in range(3)]
    on_second = truth.run("n0", 1, False, machine=1) - base
    assert on_first == pytest.approx([0.1, 0.2, 0.3])
    assert on_second == pytest.approx(0.1)  # its own first trial: the other machine's runs do not count


def test_placement_skips_busy_machines() -> None:
    truth = _Truth.for_campaign(replace(STEADY, machines=3), seed=0)
    assert truth.place([0, 0, 0]) == 0
    assert truth.place([1, 1, 0]) == 2  # machine 1 is next in turn but busy
    assert truth.place([1, 1, 1]) == 0  # none free: the next in turn shares


def test_campaign_trials_land_on_machines_in_turn_and_replay_exactly() -> None:
    scenario = replace(SCENARIOS["machines"], budget=60)
    config = default_sim_config(scenario)
    runs = []
    for _ in range(2):
        journal: list[Event] = []
        simulate(config, scenario, seed=4, sink=journal.append)
        # One trial at a time: each finishes before the next is dispatched.
        runs.append(
            [
                (e.data["result"]["worker"], e.data["result"]["metrics"]["value"])
                for e in journal
                if e.type == "trial_finished"
            ]
        )
    assert runs[0] == runs[1]
    assert len(runs[0]) == 60
    assert [worker for worker, _ in runs[0]] == [f"machine-{i % 4}" for i in range(60)]


def test_drift_makes_greedy_crown_null_changes() -> None:
    seeds = range(8)
    steady = [greedy_campaign(SCENARIOS["all_null"], s, 1).promoted for s in seeds]
    drifting = [greedy_campaign(SCENARIOS["all_null_drift"], s, 1).promoted for s in seeds]
    # A record score on a steady metric is rarely beaten by null changes (about log of the
    # number tried); under drift every later trial reads higher than the record it is compared to.
    assert sum(drifting) > 3 * sum(steady)
    assert min(drifting) >= 10


def test_paired_greedy_is_blind_to_drift_where_greedy_is_not() -> None:
    seeds = range(8)
    paired = [paired_greedy_campaign(SCENARIOS["all_null"], s).promoted for s in seeds]
    paired_drift = [paired_greedy_campaign(SCENARIOS["all_null_drift"], s).promoted for s in seeds]
    greedy = [greedy_campaign(SCENARIOS["all_null"], s, 1).promoted for s in seeds]
    greedy_drift = [greedy_campaign(SCENARIOS["all_null_drift"], s, 1).promoted for s in seeds]
    # Each pair runs at once, so drift cancels in every paired difference: the same decisions.
    assert paired_drift == paired
    assert sum(greedy_drift) - sum(greedy) > 50
    # Keeping any positive mean difference still keeps about half of null candidates.
    candidates = sum(paired_greedy_campaign(SCENARIOS["all_null"], s).candidates for s in seeds)
    assert 0.35 < sum(paired) / candidates < 0.65


def test_interaction_penalty_is_in_the_truth_of_a_chain_holding_both() -> None:
    scenario = Scenario(name="pairs", p_null=0.0, p_positive=1.0, interaction_share=1.0, interaction=-1.5, sigma=2.0)
    truth = _Truth.for_campaign(scenario, seed=0)
    effects = {c: truth.draw_candidate(c) for c in ("c1", "c2", "c3", "c4")}
    assert truth.partner == {"c1": "c2", "c2": "c1", "c3": "c4", "c4": "c3"}
    assert truth.add_node("n1", "n0", ["c1"]) == effects["c1"]
    assert truth.add_node("n2", "n1", ["c2"]) == pytest.approx(effects["c2"] - 3.0)  # -1.5 sigma
    assert truth.means["n2"] == pytest.approx(effects["c1"] + effects["c2"] - 3.0)
    truth.add_node("n3", "n0", ["c2"])
    truth.add_node("n4", "n1", ["c3"])
    assert truth.means["n3"] == effects["c2"] and truth.means["n4"] == pytest.approx(effects["c1"] + effects["c3"])
    truth.add_node("n5", "n2", ["c3"])  # the pair stays completed above: no second penalty
    assert truth.means["n5"] - truth.means["n2"] == effects["c3"]

    # A graft of a sibling's chain onto n1 completes the pair too.
    workspace = _SyntheticWorkspace(truth)
    n1 = Node("n1", "n0", None, "n1", {}, ["n1"], "search")
    graft = Change(
        kind="code",
        aspect="integration",
        hypothesis="graft n3",
        proposer="integration",
        diff="+candidate = c2\n+candidate = c4\n",
        source_id="n3",
    )
    workspace.commit(n1, "n6", graft, {})
    assert truth.means["n6"] == pytest.approx(effects["c1"] + effects["c2"] + effects["c4"] - 3.0)


def test_integration_grafts_carry_the_interaction_and_every_node_is_scored_by_its_chain() -> None:
    scenario = replace(SCENARIOS["interactions"], budget=200, interaction_share=1.0)
    config = default_sim_config(scenario, 2, integration=True)
    for seed in range(40):  # the first campaign whose integration grafts a chain that completes a pair
        tree, truth, outcome = _campaign(config, scenario, seed=seed)
        grafts = [n for n in tree.nodes.values() if n.origin == "integration"]
        if any(truth._pairs(truth.chains[n.node_id]) > truth._pairs(truth.chains[n.parent_id or "n0"]) for n in grafts):
            break
    else:
        raise AssertionError("no campaign of 40 grafted a chain that completes a pair")
    for node_id, chain in truth.chains.items():
        expected = sum(truth.effects[c] for c in chain) + scenario.interaction * truth._pairs(chain)
        assert truth.means[node_id] == pytest.approx(expected), node_id
    assert outcome.true_gain == truth.means[tree.incumbent_id or "n0"]


def test_grid_covers_every_level_of_every_factor_at_least_four_times() -> None:
    cells = grid()
    assert len({c.name for c in cells}) == len(cells)
    varied = [c for c in cells if c.signal != "null"]
    levels = {
        "effect": (GRID_EFFECTS, lambda c: round(c.effect, 9)),
        "null": (GRID_NULLS, lambda c: c.p_null),
        "tails": (GRID_TAILS, lambda c: c.tail_df),
        "rho": (GRID_RHOS, lambda c: c.rho),
        "drift": (GRID_DRIFTS, lambda c: c.drift),
    }
    for factor, (values, read) in levels.items():
        counts = {v: sum(1 for c in varied if read(c) == v) for v in values}
        assert min(counts.values()) >= 4, (factor, counts)
        assert sum(counts.values()) == len(varied), factor  # no cell off the levels
    nulls = [c for c in cells if c.signal == "null"]
    assert sorted(c.drift for c in nulls) == sorted(GRID_DRIFTS)
    assert all(c.p_null == 1.0 and c.p_positive == 0.0 for c in nulls)
    for c in varied:
        assert (c.signal == "low") == (c.effect <= 0.5 and c.p_null >= 0.7), c.name
        assert c.p_positive == pytest.approx((1 - c.p_null) / 2)
    assert "e0.5-n90-t5-r0.9-d0" in {c.name for c in cells}


def test_named_families_are_what_they_say() -> None:
    assert SCENARIOS["drift"] == replace(SCENARIOS["S"], name="drift", drift=0.02)
    assert SCENARIOS["all_null_drift"].drift == 0.02 and SCENARIOS["all_null_drift"].signal == "null"
    assert SCENARIOS["low_signal"].signal == "low"
    machines = SCENARIOS["machines"]
    assert (machines.machines, machines.machine_offset_sd, machines.machine_drift) == (4, 0.5, 0.01)


def test_intervals_hold_the_estimate_and_shrink_with_more_campaigns() -> None:
    scenario = SCENARIOS["S"]
    outcomes = [greedy_campaign(scenario, s, 1) for s in range(240)]
    few, many = summarize("greedy-1", scenario, outcomes[:24]), summarize("greedy-1", scenario, outcomes)
    assert summarize("greedy-1", scenario, outcomes[:24]) == few  # a fixed bootstrap seed
    for estimate, ci in (
        ("fdr", "fdr_ci"),
        ("mean_fdp", "mean_fdp_ci"),
        ("mean_true_gain", "mean_true_gain_ci"),
        ("share_promoting_any", "share_promoting_any_ci"),
    ):
        for summary in (few, many):
            low, high = getattr(summary, ci)
            assert low <= getattr(summary, estimate) <= high, (estimate, summary.campaigns)
        width_few = few.__dict__[ci][1] - few.__dict__[ci][0]
        width_many = many.__dict__[ci][1] - many.__dict__[ci][0]
        assert width_many < width_few, estimate
    assert many.fdr == sum(o.false_promoted for o in outcomes) / sum(o.promoted for o in outcomes)
    assert many.mean_fdp == pytest.approx(sum(o.false_promoted / max(o.promoted, 1) for o in outcomes) / 240)


def test_wilson_interval_matches_its_formula_at_the_edges() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(1.959964**2 / (10 + 1.959964**2))
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(10 / (10 + 1.959964**2))
    low, high = wilson_interval(50, 100)
    assert low + high == pytest.approx(1.0) and math.isclose(high - low, 0.192, abs_tol=0.002)
