"""The command line as a user meets it: bad input, Ctrl-C, resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.ledger import load_events, open_filesystem
from tests.toy import write_config
from tests.waiting import wait_for

ARBORIST = [sys.executable, "-m", "orchestrator.cli"]


def arborist(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ARBORIST, *args], capture_output=True, text=True, timeout=timeout)


def test_bad_config_says_where_and_runs_nothing(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["seeds"] = {"baseline": 9, "max": 4}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    done = arborist("run", str(path))
    assert done.returncode == 2
    assert f"{path}:" in done.stderr and "seeds" in done.stderr and "must not exceed max" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "campaign").exists()


def test_missing_project(tmp_path: Path) -> None:
    path = write_config(tmp_path, project=str(tmp_path / "nowhere"))
    done = arborist("run", str(path))
    assert done.returncode == 2 and "nowhere does not exist" in done.stderr


@pytest.mark.parametrize("command", ["resume", "status", "report", "inject"])
def test_commands_on_a_folder_that_is_not_a_campaign(tmp_path: Path, command: str) -> None:
    extra = ["--hypothesis", "h", "--param", "x=2"] if command == "inject" else []
    done = arborist(command, str(tmp_path), *extra)
    assert done.returncode == 2
    assert "is not a campaign folder" in done.stderr and "Traceback" not in done.stderr


def _finished(campaign: Path) -> dict[str, float]:
    fs, root = open_filesystem(str(campaign / "ledger"))
    events = load_events(fs, root, campaign / "journal.wal")
    return {e.data["result"]["trial_id"]: e.data["result"]["finished_at"] for e in events if e.type == "trial_finished"}


@pytest.mark.slow
def test_ctrl_c_then_resume_finishes_without_repeating_a_trial(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    campaign = tmp_path / "campaign"
    proc = subprocess.Popen([*ARBORIST, "run", str(path), "--quiet"], stderr=subprocess.PIPE, text=True)

    def six_finished() -> dict[str, float] | None:
        found = _safe_finished(campaign)
        return found if len(found) >= 6 else None

    before = wait_for(
        six_finished, "6 finished trials in the ledger", seen=lambda: len(_safe_finished(campaign)),
        alive=lambda: proc.poll() is None,
    )
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"arborist resume {campaign}" in stderr
    interrupted = _finished(campaign)
    assert set(before) <= set(interrupted)

    status = arborist("status", str(campaign), "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["phase"] != "done"

    resumed = arborist("resume", str(campaign), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    after = _finished(campaign)
    for trial_id, finished_at in interrupted.items():
        assert after[trial_id] == finished_at, f"{trial_id} ran again after resume"
    summary = json.loads(arborist("report", str(campaign), "--json").stdout)
    assert summary["phase"] == "done"
    by_source = {d["source_id"]: d["status"] for d in summary["decisions"] if d["proposer"] == "queue"}
    assert by_source["better"] == "PROMOTED"
    assert (campaign / "report.md").exists()
    again = arborist("resume", str(campaign))
    assert again.returncode == 0 and "already finished" in again.stderr


def _safe_finished(campaign: Path) -> dict[str, float]:
    try:
        return _finished(campaign)
    except Exception:
        return {}


def test_report_writes_the_notebook(tmp_path: Path) -> None:
    # A campaign interrupted before its first trial still has a readable report.
    from orchestrator.campaign import prepare
    from orchestrator.config import load_config
    from orchestrator.search import SearchService

    config = load_config(write_config(tmp_path))
    SearchService(config.model_dump(mode="json"), prepare(config, None)).close()
    done = arborist("report", str(tmp_path / "campaign"))
    assert done.returncode == 0
    notebook = Path(done.stdout.strip()).read_text()
    assert "# Campaign toy" in notebook and "Phase: **baseline**" in notebook
    status = arborist("status", str(tmp_path / "campaign"))
    assert "baseline" in status.stdout



def test_inject_queues_a_change_and_refuses_a_bad_one(tmp_path: Path) -> None:
    from orchestrator.campaign import prepare
    from orchestrator.config import load_config
    from orchestrator.proposers.queue import load_queue
    from tests.toy import bonus_diff

    config = load_config(write_config(tmp_path))
    prepare(config, None)
    campaign = str(config.campaign_dir)
    diff = tmp_path / "bonus.diff"
    diff.write_text(bonus_diff("0.2"))
    done = arborist("inject", campaign, "--hypothesis", "a larger bonus", "--aspect", "architecture",
                    "--diff", str(diff))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("queued inject-1") and "arborist resume" in done.stderr
    done = arborist("inject", campaign, "--hypothesis", "move x", "--param", "x=9")
    assert done.returncode == 2 and "outside its range [0, 6]" in done.stderr and "Traceback" not in done.stderr
    done = arborist("inject", campaign, "--hypothesis", "h", "--aspect", "loss", "--diff", str(tmp_path / "no.diff"))
    assert done.returncode == 2 and f"{tmp_path / 'no.diff'} does not exist" in done.stderr  # one line, copyable
    assert "Traceback" not in done.stderr
    items = load_queue(Path(campaign) / "inbox.yaml")
    assert [i["id"] for i in items] == ["inject-1"] and items[0]["diff"] == bonus_diff("0.2")


def test_a_ray_that_cannot_be_joined_is_explained_and_leaves_no_folder(tmp_path: Path) -> None:
    path = write_config(tmp_path, ray={"address": "127.0.0.1:notaport"})
    done = arborist("run", str(path))
    assert done.returncode == 2, done.stderr
    assert "could not join the Ray cluster at 127.0.0.1:notaport" in done.stderr
    assert "Nothing was run" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "campaign").exists()  # so the same `run` works once Ray is fixed


@pytest.mark.slow
def test_a_campaign_whose_baseline_fails_exits_non_zero(tmp_path: Path) -> None:
    path = write_config(tmp_path, entrypoint={"train": "python -c 'raise SystemExit(\"no data\")'"})
    done = arborist("run", str(path), "--quiet")
    assert done.returncode == 3, done.stderr
    assert "the baseline failed" in done.stderr and "Traceback" not in done.stderr
    assert "Token authentication" not in done.stderr  # Ray's notice at every local start is not shown
    status = json.loads(arborist("status", str(tmp_path / "campaign"), "--json").stdout)
    assert status["phase"] == "done" and status["counts"]["nodes"] == {"FAILED": 1}
    assert "PENDING" not in status["counts"]["trials"]
    again = arborist("resume", str(tmp_path / "campaign"))
    assert again.returncode == 3 and "already finished" in again.stderr
