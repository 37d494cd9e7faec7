"""Campaigns for the web view's tests: the toy campaign run for real (its trials run in git
worktrees by trials/runner.py, one at a time in this process: no Ray needed for a view of its
ledger), and a 100,000-node ledger from scripts/bench_scale.py's synthetic history."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from orchestrator.campaign import prepare
from orchestrator.config import CampaignConfig, load_config
from orchestrator.search import SearchService
from orchestrator.tree import Event, SearchTree
from tests.scripts import load_script
from tests.toy import write_config
from trials.runner import run_trial
from trials.spec import TrialSpec

ROOT = Path(__file__).resolve().parents[2]


def run_toy_campaign(tmp: Path, max_trials: int = 40) -> CampaignConfig:
    """The toy campaign (tests/toy.py) to its end, trials run here one after another."""
    config = load_config(write_config(tmp, budget={"max_trials": max_trials}))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    try:
        while True:
            dispatch = service.suggest()
            if not isinstance(dispatch, dict):
                # One trial at a time: nothing is running, so nothing to wait for means the end.
                break
            spec = TrialSpec.from_dict(dispatch["spec"])
            result = run_trial(spec, service.bundle_bytes)
            if not service.complete(spec.trial_id, dispatch["token"], result.to_dict()):
                raise RuntimeError(f"the campaign refused the result of {spec.trial_id}")
    finally:
        service.close()
    return config


def synthetic_campaign(tmp: Path, nodes: int, seed: int = 0) -> CampaignConfig:
    """A campaign of `nodes` nodes: started for bench_scale's tiny project, its journal extended
    with bench_scale's synthetic history (scripts/bench_scale.py synthesize_history)."""
    bench = load_script("bench_scale")
    raw: dict[str, Any] = bench.actor_config(tmp, 4)
    config = CampaignConfig.model_validate(raw)
    first = SearchService(raw, prepare(config, None))
    first.close()
    events: list[Event] = []
    tree = SearchTree.replay(first.ledger.load_events(), sink=events.append)
    bench.synthesize_history(tree, nodes, random.Random(seed))
    bench.write_journal(Path(raw["campaign_dir"]) / "journal.wal", events)
    return config
