"""A trial's Ray worker dies mid-trial: the trial is recorded lost on the node it ran on (it said
where before it started training), runs again, and the report's Placement section shows both."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import ray

from orchestrator import campaign, report
from orchestrator.config import load_config
from orchestrator.ledger import load_events, open_filesystem
from tests.background import CampaignThread
from tests.toy import NO_WALL_LIMIT_S, gate_at, gated, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.usefixtures("ray_session")


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("PPid:"))


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _trial_worker(gate: Path) -> int | None:
    """The Ray worker whose trial waits at the gate: the `ray::` ancestor of the waiting step."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or str(gate) not in _cmdline(int(entry)) or "while" not in _cmdline(int(entry)):
            continue
        pid = int(entry)
        try:
            while pid > 1:
                if _cmdline(pid).startswith("ray::"):
                    return pid
                pid = _parent(pid)
        except (OSError, StopIteration):
            continue  # it ended while we looked
    return None


def test_a_trial_whose_worker_dies_is_lost_on_its_node_and_runs_again(tmp_path: Path) -> None:
    gate = gate_at(tmp_path)
    config = load_config(write_config(
        tmp_path, **gated(tmp_path, budget_s=300), seeds={"baseline": 2, "max": 4}, ray={"max_concurrent": 1},
        budget={"max_trials": 2, "max_wall_s": NO_WALL_LIMIT_S}, integration={"enabled": False},
    ))
    setup = campaign.prepare(config, None)
    campaign_dir = Path(config.campaign_dir or "")
    fs, root = open_filesystem(str(campaign_dir / "ledger"))

    def lost() -> list[dict[str, Any]]:
        return [e.data for e in load_events(fs, root, campaign_dir / "journal.wal") if e.type == "trial_lost"]

    running = CampaignThread(config, setup=setup)
    try:
        worker = wait_for(lambda: _trial_worker(gate) or 0, "a trial waiting at the gate",
                          seen=lambda: running.outcome, alive=running.is_alive)
        os.kill(worker, signal.SIGKILL)
        (event,) = wait_for(lost, "the killed trial recorded lost", seen=lambda: running.outcome,
                            alive=running.is_alive)
    finally:
        gate.touch()
    running.summary()
    (node,) = [n for n in ray.nodes() if n["Alive"]]
    assert event["reason"] == "worker lost"
    assert event["placement"]["ray_node_id"] == node["NodeID"]
    assert event["placement"]["node_ip"] == node["NodeManagerAddress"]
    tree = report.load_tree(config)
    record = tree.trials[event["trial_id"]]
    assert record.attempts == 2 and record.result is not None
    assert record.result.placement.ray_node_id == node["NodeID"]
    summary = report.summary(config, tree)["placement"]
    (row,) = summary["nodes"]
    assert (row["lost"], row["retried"], row["run"]) == (1, 1, len(tree.finished_trials()) + 1)
    (lost_row,) = summary["lost"]
    assert (lost_row["on"], lost_row["retried_on"]) == (node["NodeID"], node["NodeID"])
    assert f"| {event['trial_id']} |" in report.notebook(config, tree).split("### Lost trials", 1)[1]
