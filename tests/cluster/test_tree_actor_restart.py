"""The tree actor dies mid-campaign: Ray restarts it, it rebuilds its state from the journal,
and the campaign goes on with every trial recorded once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray

from cluster.actors import NAMESPACE
from orchestrator import campaign, report
from orchestrator.config import load_config
from orchestrator.ledger import load_events, open_filesystem
from tests.background import CampaignThread
from tests.toy import NO_WALL_LIMIT_S, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.usefixtures("ray_session")


def test_a_killed_tree_actor_is_restarted_and_the_campaign_goes_on(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, budget={"max_trials": 40, "max_wall_s": NO_WALL_LIMIT_S}))
    setup = campaign.prepare(config, None)
    ticks: list[dict[str, Any]] = []
    running = CampaignThread(config, setup=setup, on_progress=ticks.append, progress_every_s=0.3)
    wait_for(
        lambda: ticks and ticks[-1]["trials_spent"] >= 10, "10 trials spent by the campaign",
        seen=lambda: ticks[-1] if ticks else running.outcome, alive=running.is_alive,
    )
    actor = ray.get_actor(campaign.actor_name(config), namespace=NAMESPACE)
    ray.kill(actor, no_restart=False)  # a crash: Ray restarts it (max_restarts)
    assert running.summary()["phase"] == "done"
    fs, root = open_filesystem(str(Path(config.campaign_dir or "") / "ledger"))
    events = load_events(fs, root, Path(config.campaign_dir or "") / "journal.wal")
    assert sum(1 for e in events if e.type == "session_started") >= 2  # the restarted actor's own session
    finished = [e.data["result"]["trial_id"] for e in events if e.type == "trial_finished"]
    assert len(finished) == len(set(finished))
    assert report.load_tree(config).phase.value == "done"
