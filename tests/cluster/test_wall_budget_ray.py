"""The wall-clock budget on the shared local Ray: trials still running after its grace are
stopped on their workers (the trainable asks the tree actor), so Tune does not wait for them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator import campaign, report
from orchestrator.config import load_config
from orchestrator.ledger import load_events, open_filesystem
from tests.toy import gated, write_config
from trials.spec import TrialState

pytestmark = pytest.mark.usefixtures("ray_session")


def test_trials_past_the_grace_are_stopped_on_their_workers(tmp_path: Path) -> None:
    # The gate never opens: the baseline's trials wait in their train step until they are stopped.
    # 30 s leaves Tune ample time to start them; their own train budget (600 s) is far beyond.
    config = load_config(write_config(
        tmp_path, **gated(tmp_path, budget_s=600), budget={"max_trials": 20, "max_wall_s": 30, "grace_s": 1},
        integration={"enabled": False},
    ))
    began = time.monotonic()
    final = campaign.run(config, setup=campaign.prepare(config, None))
    took = time.monotonic() - began
    assert final["phase"] == "done"
    assert took < 300, f"the campaign waited {took:.0f} s: its stopped trials kept running"
    tree = report.load_tree(config)
    assert "before the baseline was measured" in (tree.finished_reason or "")
    stopped = [r for r in tree.trials.values() if r.state is TrialState.STOPPED]
    assert len(stopped) == config.ray.max_concurrent, tree.counts()
    campaign_dir = Path(str(config.campaign_dir))
    fs, root = open_filesystem(str(campaign_dir / "ledger"))
    events = load_events(fs, root, campaign_dir / "journal.wal")
    start = next(e.ts for e in events if e.type == "session_started")
    assert all(e.ts <= start + 30 for e in events if e.type == "trial_started")
    # The workers' own reports of the stop came after the campaign's record, and changed nothing.
    assert not [e for e in events if e.type == "note" and "refused" in e.data.get("message", "")]
    assert all(r.result is not None and "budget.grace_s" in r.result.message for r in stopped)
