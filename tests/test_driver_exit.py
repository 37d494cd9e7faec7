"""Every way a started campaign's driver ends early leaves a report and says how to go on.

The driver is a real `arborist run` process that joins the session's Ray (tests/conftest.py) as a
driver joins a cluster; trials wait on a gate file, so "trials are running" is arranged, not
hoped for.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from tests.toy import gate_at, gated, write_config
from tests.waiting import events_so_far, wait_for

ARBORIST = [sys.executable, "-m", "orchestrator.cli"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def _config(root: Path) -> Path:
    return write_config(
        root, **gated(root), budget={"max_trials": 12}, integration={"enabled": False},
        ray={"address": ray.get_runtime_context().gcs_address, "max_concurrent": 2},
    )


def _count(campaign: Path, kind: str) -> int:
    return sum(1 for e in events_so_far(campaign) if e.type == kind)


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*ARBORIST, "run", str(config), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _assert_says_how_to_go_on(stderr: str, campaign: Path) -> None:
    lines = [line for line in stderr.splitlines() if f"arborist resume {campaign}" in line]
    assert len(lines) == 1, stderr[-3000:]
    assert f"ray job submit --address http://HEAD:8265 -- python -m orchestrator.cli resume {campaign}" in lines[0]
    assert (campaign / "report.md").is_file(), stderr[-3000:]
    assert "# Campaign toy" in (campaign / "report.md").read_text()


def test_sigterm_mid_run_prints_how_to_resume_and_writes_the_report(tmp_path: Path) -> None:
    campaign = tmp_path / "campaign"
    proc = _start(_config(tmp_path))
    wait_for(lambda: _count(campaign, "trial_started") >= 2, "two trials running (held by the gate)",
             seen=lambda: [e.type for e in events_so_far(campaign)][-5:], alive=lambda: proc.poll() is None)
    proc.send_signal(signal.SIGTERM)  # what `ray job stop` and `kill` send
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    _assert_says_how_to_go_on(stderr, campaign)
    assert _count(campaign, "trial_finished") == 0  # they were stopped running: resume runs them again


def test_an_error_after_the_start_is_shown_with_the_report_and_how_to_resume(tmp_path: Path) -> None:
    campaign = tmp_path / "campaign"
    proc = _start(_config(tmp_path))
    wait_for(lambda: _count(campaign, "trial_started") >= 2, "two baseline trials running (held by the gate)",
             seen=lambda: [e.type for e in events_so_far(campaign)][-5:], alive=lambda: proc.poll() is None)
    # The campaign repository vanishes under the tree actor (a clean-up job, a volume swapped):
    # its next node cannot be committed there, and the tree actor raises.
    shutil.rmtree(campaign / "repo")
    gate_at(tmp_path).touch()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-3000:]
    error = [line for line in stderr.splitlines() if line.startswith("arborist: error: the campaign stopped on")]
    assert len(error) == 1, stderr[-3000:]
    assert "Traceback" in stderr  # an unforeseen error keeps its traceback: nothing of it is hidden
    _assert_says_how_to_go_on(stderr, campaign)
    assert _count(campaign, "trial_finished") >= 2  # the report holds what ran before the error
