"""kill -9 of the driver (and the local Ray it started) at random moments, ten times, then
`arborist resume`: no completed trial lost or repeated, and the final tree equals an
uninterrupted run's."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator import report
from orchestrator.campaign import load_campaign_config
from orchestrator.ledger import load_events, open_filesystem
from tests.toy import NO_WALL_LIMIT_S, write_config
from tests.waiting import wait_for

ARBORIST = [sys.executable, "-m", "orchestrator.cli"]
KILLS = 10


def _config(root: Path) -> Path:
    # One trial at a time and seeded proposers: the run is deterministic, so two runs can be compared.
    return write_config(
        root, search={"proposers": [{"type": "grid"}, {"type": "random"}], "max_children": 30},
        ray={"max_concurrent": 1}, budget={"max_trials": 150, "max_wall_s": NO_WALL_LIMIT_S}, seeds={"baseline": 3,
                                                                                       "max": 5},
    )


def _start(*args: str, log: Path) -> subprocess.Popen[bytes]:
    # Its own session: killing the group kills the driver and the local Ray it started, as a
    # machine or container dying would.
    with open(log, "ab") as out:
        return subprocess.Popen([*ARBORIST, *args, "--quiet"], stdout=out, stderr=out, start_new_session=True)


def _finished(campaign: Path) -> int:
    """Trials finished so far, as the ledger (Parquet and journal) has them."""
    if not (campaign / "ledger").exists():
        return 0
    try:
        fs, root = open_filesystem(str(campaign / "ledger"))
        return sum(1 for e in load_events(fs, root, campaign / "journal.wal") if e.type == "trial_finished")
    except Exception:
        return 0  # a part being written right now: ask again


def _tree_shape(campaign: Path) -> dict[str, Any]:
    config = load_campaign_config(campaign)
    tree = report.load_tree(config)
    return {
        "phase": tree.phase.value,
        "incumbent": tree.incumbent_id,
        "nodes": sorted(
            (n.node_id, n.parent_id, n.change.describe() if n.change else "", n.status.value, tuple(n.seeds))
            for n in tree.nodes.values()
        ),
        "trials": sorted(
            (r.trial_id, r.state.value, round(r.result.metrics.get("score", 0.0), 9) if r.result else None)
            for r in tree.trials.values()
        ),
    }


@pytest.mark.slow
@pytest.mark.long
def test_kill_9_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    reference = tmp_path / "reference"
    done = subprocess.run([*ARBORIST, "run", str(_config(reference)), "--quiet"], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]

    faulty = tmp_path / "faulty"
    config_path = _config(faulty)
    campaign = faulty / "campaign"
    log = tmp_path / "faulty.log"
    kills = 0
    for attempt in range(KILLS * 2):
        args = ("run", str(config_path)) if attempt == 0 else ("resume", str(campaign))
        before = _finished(campaign)
        proc = _start(*args, log=log)
        # Each kill lands in the middle of the campaign: after this session finished a trial,
        # at a random moment (in a trial, a decision, a journal write, a Parquet flush).
        wait_for(
            lambda p=proc, b=before: _finished(campaign) > b or p.poll() is not None,  # type: ignore[misc]
            f"a trial finished by session {attempt + 1} (the ledger had {before})",
            seen=lambda: _finished(campaign), every_s=0.3,
        )
        # Trials take about 0.3 s here: a session lives long enough for a few, and ten kills land
        # before the budget of 150 runs out.
        time.sleep(rng.uniform(0.0, 3.0))
        if proc.poll() is not None:
            assert proc.returncode == 0, log.read_text()[-3000:]
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        if kills == KILLS:
            break
    assert kills == KILLS, f"the campaign finished after {kills} kills; give it a larger budget"
    final = subprocess.run([*ARBORIST, "resume", str(campaign), "--quiet"], capture_output=True, text=True,
                           timeout=900)
    assert final.returncode == 0, final.stderr[-3000:]

    # Exactly once: every finished trial recorded once, none lost across the kills.
    config = load_campaign_config(campaign)
    fs, root = open_filesystem(str(campaign / "ledger"))
    events = load_events(fs, root, campaign / "journal.wal")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    finished = [e.data["result"]["trial_id"] for e in events if e.type == "trial_finished"]
    assert len(finished) == len(set(finished))
    assert sum(1 for e in events if e.type == "session_started") == KILLS + 1  # every kill hit a live session
    assert report.load_tree(config).phase.value == "done"
    # The same tree as the uninterrupted run: nodes, changes, decisions, seeds, trial results.
    assert _tree_shape(campaign) == _tree_shape(reference / "campaign")
