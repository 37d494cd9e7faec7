"""A process on the cluster that finds the live tree actor cannot record a result it made up:
complete() wants the token that only the driver's Tune bridge holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray

from cluster.actors import NAMESPACE
from orchestrator import campaign
from orchestrator.config import load_config
from orchestrator.ledger import load_events, open_filesystem
from orchestrator.tree import Event, trial_id_for
from tests.background import CampaignThread
from tests.toy import NO_WALL_LIMIT_S, gate_at, gated, write_config
from tests.waiting import wait_for
from trials.spec import TrialResult, TrialState

pytestmark = pytest.mark.usefixtures("ray_session")


@ray.remote(num_cpus=0)  # the trials hold every CPU while they wait at the gate
def forge(actor_name: str, trial_id: str, node_id: str, seed: int) -> Any:
    actor = ray.get_actor(actor_name, namespace=NAMESPACE)
    result = TrialResult(trial_id, node_id, seed, TrialState.COMPLETE, metrics={"score": 99.0, "size": 1.0})
    return ray.get(actor.complete.remote(trial_id, "f" * 32, result.to_dict()))


def test_a_forged_complete_on_the_live_tree_actor_is_refused(tmp_path: Path) -> None:
    gate = gate_at(tmp_path)
    # Trials wait at the gate, so the forgeries land while trials are running and pending.
    config = load_config(write_config(
        tmp_path, **gated(tmp_path, budget_s=300),
        budget={"max_trials": 10, "max_wall_s": NO_WALL_LIMIT_S}, integration={"enabled": False},
    ))
    setup = campaign.prepare(config, None)
    campaign_dir = Path(config.campaign_dir or "")
    fs, root = open_filesystem(str(campaign_dir / "ledger"))

    def journal() -> list[Event]:
        return load_events(fs, root, campaign_dir / "journal.wal")

    running_campaign = CampaignThread(config, setup=setup)
    try:
        started = wait_for(
            lambda: [e.data for e in journal() if e.type == "trial_started"], "a trial handed to Tune",
            seen=lambda: running_campaign.outcome, alive=running_campaign.is_alive,
        )
        seeds = next(e.data["seeds"] for e in journal() if e.type == "seeds_requested" and e.data["node_id"] == "n0")
        running = started[0]
        pending = next(seed for seed in seeds if seed not in {s["seed"] for s in started})
        targets = [(running["trial_id"], running["seed"]), (trial_id_for("n0", pending), pending)]
        taken = ray.get([forge.remote(campaign.actor_name(config), tid, "n0", seed) for tid, seed in targets])
        assert taken == [False, False]
    finally:
        gate.touch()
    assert running_campaign.summary()["phase"] == "done"
    events = journal()
    notes = [e.data["message"] for e in events if e.type == "note"]
    for trial_id, _ in targets:
        assert sum(1 for n in notes if n.startswith(f"refused a result for trial '{trial_id}'")) == 1, notes
        results = [e.data["result"] for e in events
                   if e.type == "trial_finished" and e.data["result"]["trial_id"] == trial_id]
        assert len(results) == 1
        assert results[0]["state"] == "COMPLETE" and results[0]["metrics"]["score"] < 2  # the real run's
    finished = [e.data["result"]["trial_id"] for e in events if e.type == "trial_finished"]
    assert len(finished) == len(set(finished))
