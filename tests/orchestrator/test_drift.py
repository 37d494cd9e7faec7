"""The drift monitor: it sees a shift in the controls, and does not cry wolf on noise."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator import drift
from orchestrator.config import CampaignConfig
from orchestrator.simulator import SCENARIOS, default_sim_config, simulate
from orchestrator.tree import ROOT_ID, SearchTree
from trials.spec import TrialResult, TrialState


def _config() -> CampaignConfig:
    return CampaignConfig.model_validate({
        "name": "t", "project": "/p", "entrypoint": {"train": "x"},
        "metrics": {"acc": {"direction": "max", "role": "objective"}},
        "search": {"proposers": [{"type": "random"}]},
    })


def _controls(values: list[float]) -> SearchTree:
    """The baseline's trials, one per value, dispatched in order."""
    tree = SearchTree()
    tree.record("session_started", ts=0.0)
    tree.record("node_created", node_id=ROOT_ID, parent_id=None, change=None, commit="c", params={}, origin="root")
    tree.record("seeds_requested", node_id=ROOT_ID, seeds=list(range(len(values))))
    for seed, value in enumerate(values):
        tid = f"{ROOT_ID}-s{seed}"
        tree.record("trial_started", trial_id=tid, node_id=ROOT_ID, seed=seed)
        tree.record("trial_finished", result=TrialResult(tid, ROOT_ID, seed, TrialState.COMPLETE,
                                                         metrics={"acc": value}).to_dict())
    return tree


def test_the_spread_of_a_drifting_series_is_its_noise_not_its_drift() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(400)
    drifting = list(noise + 0.05 * np.arange(400))  # 20 sds of drift over the series
    assert drift.successive_spread(drifting) == pytest.approx(1.0, abs=0.1)
    assert float(np.std(drifting)) > 5.0


def test_a_shift_in_the_controls_is_found_with_its_figures() -> None:
    rng = np.random.default_rng(1)
    values = list(rng.normal(0.0, 0.1, 8)) + list(rng.normal(1.0, 0.1, 4))
    finding = drift.detect(_controls(values), _config(), ROOT_ID)
    assert finding is not None and finding.z > 4 and finding.shift == pytest.approx(
        np.mean(values[-4:]) - np.mean(values[:4])
    )
    assert finding.at_order == 11 and finding.since_order == 0  # the clock: trials finished before each started


def test_noise_alone_rarely_raises_an_alarm_however_often_it_is_looked_at() -> None:
    rng = np.random.default_rng(2)
    config, runs, alarms = _config(), 60, 0
    for _ in range(runs):
        tree = _controls(list(rng.standard_normal(120)))
        # Looked at after every control, as the engine does.
        points = drift.node_controls(tree, config, ROOT_ID)
        values = [p.value for p in points]
        alarms += any(
            drift.detect(_controls(values[:k]), config, ROOT_ID) is not None for k in range(8, 121, 4)
        )
    assert alarms / runs <= 0.05


def test_simulated_drift_is_journaled_and_a_campaign_without_drift_stays_quiet() -> None:
    drifting = SCENARIOS["all_null_drift"]
    tree, _ = simulate(default_sim_config(drifting), drifting, seed=3)
    assert tree.drift_events and all(e["z"] > 0 for e in tree.drift_events)  # the metric drifts upwards
    steady = SCENARIOS["all_null"]
    quiet, _ = simulate(default_sim_config(steady), steady, seed=3)
    assert not quiet.drift_events
