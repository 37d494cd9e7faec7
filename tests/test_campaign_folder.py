"""A campaign folder has one owner: two drivers at once, a start that died before its first
event, a driver killed with -9 and resumed. Real CLI processes on a real local Ray.

Trials wait for a gate file the test creates, so "the first one is still running" is a fact
the test arranges, not a race it hopes to win.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.campaign import SETUP_FILE, prepare
from orchestrator.config import load_config
from orchestrator.ledger import load_events, open_filesystem
from orchestrator.ownership import LOCK_FILE
from orchestrator.search import SearchService
from orchestrator.tree import Event, SearchTree
from tests.orchestrator.test_search import drive
from tests.toy import gate_at, gated, write_config
from tests.waiting import wait_for

ARBORIST = [sys.executable, "-m", "orchestrator.cli"]

pytestmark = pytest.mark.slow


def _config(root: Path) -> Path:
    # A trial may wait on the gate while a second driver starts Ray: a generous budget.
    return write_config(root, **gated(root, budget_s=600), budget={"max_trials": 10}, integration={"enabled": False})


def _open_gate(root: Path) -> None:
    gate_at(root).touch()


def _start(*args: str) -> subprocess.Popen[str]:
    # Its own session, so kill -9 of the group takes the local Ray it started with it.
    return subprocess.Popen([*ARBORIST, *args, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _arborist(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ARBORIST, *args], capture_output=True, text=True, timeout=600)


def _events(campaign: Path) -> list[Event]:
    fs, root = open_filesystem(str(campaign / "ledger"))
    return load_events(fs, root, campaign / "journal.wal")


def _safe_events(campaign: Path) -> list[Event]:
    try:
        return _events(campaign)
    except Exception:
        return []  # a part being written right now: ask again


def _assert_one_clean_campaign(campaign: Path) -> None:
    events = _events(campaign)
    finished = [e.data["result"]["trial_id"] for e in events if e.type == "trial_finished"]
    assert finished and len(finished) == len(set(finished)), "a trial is in the ledger twice"
    assert [e.type for e in events].count("campaign_finished") == 1
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "two writers interleaved in the journal"


def _first_to_exit(procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    exited = wait_for(lambda: [p for p in procs if p.poll() is not None], "one driver to exit")
    return exited[0]


def test_two_resumes_at_once_one_runs_and_the_other_names_it(tmp_path: Path) -> None:
    path = _config(tmp_path)
    _open_gate(tmp_path)
    config = load_config(path)
    first = SearchService(config.model_dump(mode="json"), prepare(config, path))
    drive(first, stop_after=3)
    del first  # stopped midway, as a crashed driver leaves it
    gate_at(tmp_path).unlink()  # the resumed trials wait until the refusal is seen
    campaign = tmp_path / "campaign"
    procs = [_start("resume", str(campaign)), _start("resume", str(campaign))]
    loser = _first_to_exit(procs)
    winner = procs[1] if loser is procs[0] else procs[0]
    _, err = loser.communicate(timeout=60)
    assert loser.returncode == 2, err
    assert (f"campaign folder {campaign} is in use by `arborist resume` (pid {winner.pid} "
            f"on host {socket.gethostname()}") in err
    assert "Traceback" not in err
    _open_gate(tmp_path)
    _, err = winner.communicate(timeout=600)
    assert winner.returncode == 0, err[-3000:]
    _assert_one_clean_campaign(campaign)


@pytest.mark.long  # a minute or more: several drivers, each starting its own Ray
def test_two_runs_at_once_one_runs_and_the_other_changes_nothing(tmp_path: Path) -> None:
    path = _config(tmp_path)
    campaign = tmp_path / "campaign"
    procs = [_start("run", str(path)), _start("run", str(path))]
    loser = _first_to_exit(procs)
    winner = procs[1] if loser is procs[0] else procs[0]
    _, err = loser.communicate(timeout=60)
    assert loser.returncode == 2, err
    assert f"is in use by `arborist run` (pid {winner.pid}" in err and "Traceback" not in err
    _open_gate(tmp_path)
    _, err = winner.communicate(timeout=600)
    assert winner.returncode == 0, err[-3000:]
    _assert_one_clean_campaign(campaign)


@pytest.mark.long  # a minute or more: several drivers, each starting its own Ray
def test_a_start_that_died_while_being_prepared_is_finished_by_resume(tmp_path: Path) -> None:
    path = _config(tmp_path)
    _open_gate(tmp_path)
    config = load_config(path)
    prepare(config, path)
    campaign = tmp_path / "campaign"
    # As a start killed while bundling leaves it: its config written, its preparation not.
    (campaign / SETUP_FILE).unlink()
    for part in (campaign / "bundles").iterdir():
        part.unlink()
    done = _arborist("resume", str(campaign), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "held a start that failed before its first event; it died while being prepared" in done.stderr
    _assert_one_clean_campaign(campaign)


@pytest.mark.long  # a minute or more: several drivers, each starting its own Ray
def test_a_prepared_folder_that_never_started_is_replaced_by_run(tmp_path: Path) -> None:
    path = _config(tmp_path)
    _open_gate(tmp_path)
    config = load_config(path)
    prepare(config, path)
    campaign = tmp_path / "campaign"
    (campaign / "notes.txt").write_text("the user's own file")
    done = _arborist("run", str(path), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (f"{campaign} held a start that failed before its first event (nothing ran): removed "
            "campaign.json, config.yaml, inputs, repo, bundles, setup.json and starting fresh") in done.stderr
    assert (campaign / "notes.txt").read_text() == "the user's own file"  # not part of the layout: kept
    _assert_one_clean_campaign(campaign)
    again = _arborist("run", str(path))
    assert again.returncode == 2 and "already holds a campaign" in again.stderr


@pytest.mark.parametrize("command", ["resume", "status"])
def test_a_start_that_died_before_writing_its_config_says_so(tmp_path: Path, command: str) -> None:
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    (campaign / LOCK_FILE).write_text('{"pid": 1, "host": "gone", "command": "arborist run"}')
    done = _arborist(command, str(campaign))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "a start that failed before it wrote its config" in done.stderr
    assert f"arborist run CONFIG --campaign-dir {campaign}" in done.stderr


@pytest.mark.long  # a minute or more: several drivers, each starting its own Ray
def test_kill_9_then_resume_charges_no_dead_time_and_no_stale_lock(tmp_path: Path) -> None:
    path = _config(tmp_path)
    campaign = tmp_path / "campaign"
    proc = _start("run", str(path))

    def two_running() -> list[Event] | None:
        events = _safe_events(campaign)
        return events if sum(e.type == "trial_started" for e in events) >= 2 else None

    wait_for(two_running, "two baseline trials waiting on the gate", alive=lambda: proc.poll() is None)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _events(campaign)
    ran_before = SearchTree.replay(before).elapsed_s()
    assert json.loads((campaign / LOCK_FILE).read_text())["pid"] == proc.pid  # stale: its holder is dead

    _open_gate(tmp_path)
    done = _arborist("resume", str(campaign), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    events = _events(campaign)
    resumed_at = next(e.seq for e in events if e.type == "session_started" and e.data.get("resumed"))
    assert resumed_at == before[-1].seq + 1  # the resume's first event is its session's start
    lost = [e.seq for e in events if e.type == "trial_lost"]
    assert len(lost) >= 2 and min(lost) > resumed_at  # the cut-off trials are the new session's
    at_resume = SearchTree.replay(e for e in events if e.seq <= resumed_at)
    # The resumed session starts from the previous total (the Parquet ledger keeps times to the µs).
    assert at_resume.elapsed_s() == pytest.approx(ran_before, abs=1e-3)
    final = SearchTree.replay(events)
    assert final.sessions[0]["last_ts"] == pytest.approx(before[-1].ts, abs=1e-3)
    _assert_one_clean_campaign(campaign)
