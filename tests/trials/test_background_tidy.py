"""A trial tidied in the background: its result comes back before its folder is stripped, the next
trial does not wait for it, and a worker killed before it is tidied leaves nothing the next
pruning does not strip. Real trials (real git worktrees, real processes) on the project of conftest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from tests.trials.conftest import Campaign, folder, git
from trials import retention
from trials.layout import TrialPaths
from trials.runner import run_trial
from trials.spec import RetentionSpec, TrialSpec, TrialState

RECORD = {"train.log", "evaluate.log", "params.json", "metrics", "output", "finished.json"}


def wait_tidied(spec: TrialSpec) -> None:
    """Wait until the trial's tidying thread (if it still runs) has ended."""
    for thread in threading.enumerate():
        if thread.name == f"tidy-{spec.trial_id}":
            thread.join()


def registered_worktrees(campaign: Campaign) -> int:
    """Worktrees git knows of in the machine's cached repository, the bare repository itself included."""
    repo = campaign.scratch / "repos" / f"{campaign.bundle_id}.git"
    return len(git(repo, "worktree", "list").splitlines())


def test_the_result_comes_back_recorded_and_the_folder_is_stripped_after(campaign: Campaign) -> None:
    first, second = campaign.spec(trial_id="first"), campaign.spec(trial_id="second", params={"mode": "crash"})
    result = run_trial(first, campaign.fetch, tidy_in_background=True)
    assert result.state is TrialState.COMPLETE, result.message
    # The record is written before the result is handed back: how the trial ended is never lost.
    assert json.loads((folder(first) / "finished.json").read_text())["state"] == "COMPLETE"
    # The next trial starts at once, while the first may still be tidied (its lock keeps the
    # next trial's pruning off its folder).
    assert run_trial(second, campaign.fetch, tidy_in_background=True).state is TrialState.FAIL
    assert json.loads((folder(second) / "finished.json").read_text())["state"] == "FAIL"
    wait_tidied(first)
    wait_tidied(second)
    for done in (first, second):
        assert {p.name for p in folder(done).iterdir()} <= RECORD, done.trial_id
        assert (folder(done) / "train.log").exists()
    assert registered_worktrees(campaign) == 1
    assert list(campaign.scratch.rglob("worktree")) == []


def test_each_step_records_when_its_command_ran(campaign: Campaign) -> None:
    spec = campaign.spec(trial_id="timed")
    result = run_trial(spec, campaign.fetch, started_at=123.0, tidy_in_background=True)
    wait_tidied(spec)
    assert result.state is TrialState.COMPLETE, result.message
    assert result.started_at == 123.0  # the slot's start, as the caller says
    train, evaluate = result.step_times["train"], result.step_times["evaluate"]
    assert 123.0 < train[0] < train[1] <= evaluate[0] < evaluate[1] <= result.finished_at
    # The train step's command span holds the train time arborist measures.
    assert train[1] - train[0] >= result.metrics["train_time_s"] - 0.01


def test_a_recorded_folder_whose_worker_died_before_tidying_is_stripped_by_the_next_pruning(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    paths = TrialPaths.for_trial(scratch, "died")
    paths.prepare()
    for part in (paths.worktree, paths.pycache / "train", paths.room):
        part.mkdir(parents=True)
        (part / "left.txt").write_text("scratch")
    (paths.output / "model.json").write_text("{}")
    retention.record(paths, TrialState.COMPLETE.value, 5.0)
    assert retention.prune(scratch, RetentionSpec(keep_complete=1, keep_failed=0)) == []
    assert {p.name for p in paths.root.iterdir()} <= RECORD
    assert (paths.output / "model.json").exists()
    assert retention.read_record(paths) == retention.Record("COMPLETE", 5.0)  # not marked lost


def test_a_worker_killed_while_tidying_loses_no_record_and_leaves_no_scratch(
    campaign: Campaign, tmp_path: Path
) -> None:
    cut = campaign.spec(trial_id="cut")
    bundle = tmp_path / "bundle"
    bundle.write_bytes(campaign.bundle_bytes)
    # The worker exits as soon as the result is back: the tidying thread dies with it, wherever it
    # got to (usually before it removed anything), as when Ray stops the actor or the node is lost.
    code = textwrap.dedent(
        f"""
        import json, os, pathlib
        from trials.runner import run_trial
        from trials.spec import TrialSpec
        spec = TrialSpec.from_dict(json.loads({json.dumps(json.dumps(cut.to_dict()))}))
        result = run_trial(spec, lambda _id: pathlib.Path({str(bundle)!r}).read_bytes(), tidy_in_background=True)
        print(result.state.value, flush=True)
        os._exit(0)
        """
    )
    worker = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2], capture_output=True,
                            text=True, check=True)
    assert worker.stdout.strip() == "COMPLETE"
    assert json.loads((folder(cut) / "finished.json").read_text())["state"] == "COMPLETE"

    after = campaign.spec(trial_id="after")
    assert run_trial(after, campaign.fetch).state is TrialState.COMPLETE
    assert {p.name for p in folder(cut).iterdir()} <= RECORD
    assert json.loads((folder(cut) / "finished.json").read_text())["state"] == "COMPLETE"
    assert registered_worktrees(campaign) == 1


def test_trials_tidied_in_the_background_keep_the_scratch_folder_within_the_retention_rule(
    campaign: Campaign,
) -> None:
    keep = RetentionSpec(keep_complete=1, keep_failed=1)
    specs = [campaign.spec(trial_id=f"r{i}", params={"mode": mode}, retention=keep)
             for i, mode in enumerate(["ok", "crash", "ok", "crash", "ok"])]
    for spec in specs:
        run_trial(spec, campaign.fetch, tidy_in_background=True)
    for spec in specs:
        wait_tidied(spec)
    # Each tidying lets go of its folder before it prunes, so the last pruning to run saw every folder.
    trials = campaign.scratch / "trials"
    kept = {p.name: json.loads((p / "finished.json").read_text())["state"] for p in trials.iterdir()}
    assert kept == {"r4": "COMPLETE", "r3": "FAIL"}
    for name in kept:
        assert {p.name for p in (trials / name).iterdir()} <= RECORD
    assert registered_worktrees(campaign) == 1
