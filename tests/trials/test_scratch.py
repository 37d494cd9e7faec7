"""The worker's scratch folder stays bounded: one bytecode cache per machine, and only records of ended trials.

Real trials (real git worktrees, real bubblewrap, real Python processes) on the tiny project of
conftest; Python's own verbose import log (PYTHONVERBOSE) says which modules a step compiled and
which bytecode it read.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from orchestrator.campaign import prepare
from orchestrator.config import ConfigError, load_config
from orchestrator.search import SearchService
from tests.toy import write_config
from tests.trials.conftest import Campaign, folder, git, run
from tests.waiting import wait_for
from trials import bytecode, retention, sandbox
from trials.layout import TrialPaths
from trials.spec import RetentionSpec, SandboxSpec, TrialSpec, TrialState

BWRAP_PROBLEM = sandbox.bwrap_problem()
needs_bwrap = pytest.mark.skipif(
    BWRAP_PROBLEM is not None, reason=f"bubblewrap cannot run here ({BWRAP_PROBLEM}); scripts/_env.sh installs it"
)
BWRAP = SandboxSpec(mode="bwrap")
VERBOSE = {"PYTHONVERBOSE": "1"}  # Python logs each module it compiles and each bytecode file it reads
TAG = sys.implementation.cache_tag
RECORD = {"train.log", "evaluate.log", "params.json", "metrics", "output", "finished.json"}



def compiled(log: str) -> list[str]:
    """Source files a step compiled itself (not found as current bytecode in its cache)."""
    return re.findall(r"^# code object from (/\S+\.py)$", log, re.M)


def cache_hits(log: str) -> list[tuple[str, str]]:
    """(bytecode file, source file) of each module a step read from bytecode."""
    return re.findall(r"^# (/\S+\.pyc) matches (/\S+\.py)$", log, re.M)


def installed(source: str) -> bool:
    real = Path(os.path.realpath(source))
    return any(real.is_relative_to(d) for d in bytecode.interpreter_dirs())


def source_of(rel: str) -> str:
    """The source file a shared cache entry (relative to the cache) was compiled from."""
    return "/" + re.sub(rf"\.{re.escape(TAG)}\.pyc$", ".py", rel)


def contents(shared: Path) -> dict[str, bytes]:
    return {p.relative_to(shared).as_posix(): p.read_bytes() for p in shared.rglob("*") if p.is_file()}


def identities(shared: Path) -> dict[str, tuple[int, int]]:
    """Which file (inode) each entry is and when it was written: a rewrite changes one or the other."""
    return {
        p.relative_to(shared).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in shared.rglob("*")
        if p.is_file()
    }


# -- the shared bytecode cache -------------------------------------------------------------------


@needs_bwrap
def test_the_second_trial_reads_the_shared_cache_and_compiles_nothing_into_it(campaign: Campaign) -> None:
    shared = bytecode.shared_cache(campaign.scratch)
    first = campaign.spec(sandbox=BWRAP, env=VERBOSE, trial_id="t1")
    assert run(campaign, first).state is TrialState.COMPLETE
    cold = {s for s in compiled((folder(first) / "train.log").read_text()) if installed(s)}
    assert any(s.endswith("/json/__init__.py") for s in cold) and any(s.endswith("/subprocess.py") for s in cold)
    before = identities(shared)
    # Each installed module the first trial compiled is in the shared cache now, and nothing else.
    assert {source_of(rel) for rel in before} >= cold
    assert all(installed(source_of(rel)) for rel in before)

    second = campaign.spec(sandbox=BWRAP, env=VERBOSE, trial_id="t2")
    result = run(campaign, second)
    assert result.state is TrialState.COMPLETE, result.message
    assert identities(shared) == before  # nothing compiled into it, nothing rewritten
    for step in ("train", "evaluate"):
        log = (folder(second) / f"{step}.log").read_text()
        assert [s for s in compiled(log) if installed(s)] == [], step  # every installed module: from the cache
        hits = {src: pyc for pyc, src in cache_hits(log)}
        json_init = next(src for src in hits if src.endswith("/json/__init__.py"))
        # Read through the step's own prefix, which links to the shared file.
        link = Path(hits[json_init])
        assert link.is_relative_to(folder(second) / "pycache" / step)
    train_log = (folder(second) / "train.log").read_text()
    assert {"model.py", "hostile.py", "metric.py"} <= {Path(s).name for s in compiled(train_log)}
    assert not (folder(second) / "pycache").exists()  # the project's bytecode went with the trial


@needs_bwrap
def test_a_trial_cannot_write_into_the_shared_cache(campaign: Campaign) -> None:
    shared = bytecode.shared_cache(campaign.scratch)
    assert run(campaign, campaign.spec(sandbox=BWRAP, trial_id="t1")).state is TrialState.COMPLETE
    before = contents(shared)
    json_rel = next(rel for rel in before if rel.endswith(f"/json/__init__.{TAG}.pyc"))
    t2 = campaign.scratch / "trials" / "t2"
    own_cache = t2 / "pycache" / "train"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    colorsys_rel = (stdlib / f"colorsys.{TAG}.pyc").relative_to("/").as_posix()  # a module no step imports
    worktree_rel = (t2 / "worktree" / f"model.{TAG}.pyc").relative_to("/").as_posix()
    attempts = {
        "shared file": str(shared / json_rel),
        "new shared file": str(shared / f"planted.{TAG}.pyc"),
        "new shared folder": str(shared / "planted" / f"x.{TAG}.pyc"),
        "link to a shared file": str(own_cache / json_rel),  # the link of the step's own prefix
        "own file named for an installed module": str(own_cache / colorsys_rel),
        "own file named for a project module": str(own_cache / worktree_rel),
    }
    params = {"mode": "snoop", "paths": [], "write": list(attempts.values())}
    result = run(campaign, campaign.spec(sandbox=BWRAP, trial_id="t2", params=params))
    assert result.state is TrialState.COMPLETE, result.message
    seen = json.loads((t2 / "output" / "snoop.json").read_text())
    outcome = {what: seen[path] for what, path in attempts.items()}
    assert outcome == {
        "shared file": "OSError",  # a read-only file system
        "new shared file": "OSError",
        "new shared folder": "OSError",
        "link to a shared file": "OSError",
        "own file named for an installed module": "written",
        "own file named for a project module": "written",
    }
    after = contents(shared)
    assert {rel: after[rel] for rel in before} == before  # no shared file changed
    # The step's own file named an installed module: the worker compiled that module from the
    # installation, and did not copy what the step wrote. Project files never go in.
    assert set(after) - set(before) == {colorsys_rel}
    planted = after[colorsys_rel]
    assert b"planted" not in planted and planted[:4] == importlib.util.MAGIC_NUMBER
    assert marshal.loads(planted[16:]).co_filename == str(stdlib / "colorsys.py")


def test_unsandboxed_steps_share_no_cache(campaign: Campaign) -> None:
    # Without the sandbox a step could write into a shared cache and plant code for later
    # evaluators: each step compiles into its own cache, removed with the trial.
    none = SandboxSpec(mode="none")
    for trial_id in ("t1", "t2"):
        spec = campaign.spec(sandbox=none, env=VERBOSE, trial_id=trial_id)
        assert run(campaign, spec).state is TrialState.COMPLETE
        log = (folder(spec) / "train.log").read_text()
        assert any(src.endswith("/json/__init__.py") for src in compiled(log))
    assert not bytecode.shared_cache(campaign.scratch).exists()


# -- what ended trials leave ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_after_k_trials_the_scratch_folder_holds_records_only(campaign: Campaign, mode: str) -> None:
    if mode == "bwrap" and BWRAP_PROBLEM:
        pytest.skip(BWRAP_PROBLEM)
    keep = RetentionSpec(keep_complete=1, keep_failed=2)
    modes = ["ok", "crash", "ok", "crash", "nometrics"]  # complete, failed at run, ..., failed at metrics
    for i, trial_mode in enumerate(modes):
        spec = campaign.spec(sandbox=SandboxSpec(mode=mode), trial_id=f"k{i}", params={"mode": trial_mode},
                             retention=keep)
        run(campaign, spec)
    trials = campaign.scratch / "trials"
    # The newest complete trial and the two newest others.
    assert sorted(p.name for p in trials.iterdir()) == ["k2", "k3", "k4"]
    states = {p.name: json.loads((p / "finished.json").read_text())["state"] for p in trials.iterdir()}
    assert states == {"k2": "COMPLETE", "k3": "FAIL", "k4": "FAIL"}
    for kept in trials.iterdir():
        assert {p.name for p in kept.iterdir()} <= RECORD, kept.name
    shared = bytecode.shared_cache(campaign.scratch)
    assert [p for p in campaign.scratch.rglob("*.pyc") if not p.is_relative_to(shared)] == []
    assert list(trials.rglob("worktree")) == []
    repo = campaign.scratch / "repos" / f"{campaign.bundle_id}.git"
    assert len(git(repo, "worktree", "list").splitlines()) == 1  # the bare repository alone
    locks = {p.name for p in (campaign.scratch / "locks").glob("trial-*")}
    assert locks == {"trial-k2.lock", "trial-k3.lock", "trial-k4.lock"}


def test_a_trial_cut_off_by_its_workers_death_is_cleaned_up_by_the_next(campaign: Campaign, tmp_path: Path) -> None:
    cut = campaign.spec(trial_id="cut", params={"mode": "hang"}, budget_s=120.0)
    bundle = tmp_path / "bundle"
    bundle.write_bytes(campaign.bundle_bytes)
    code = textwrap.dedent(
        f"""
        import json, pathlib
        from trials.runner import run_trial
        from trials.spec import TrialSpec
        spec = TrialSpec.from_dict(json.loads({json.dumps(json.dumps(cut.to_dict()))}))
        run_trial(spec, lambda _id: pathlib.Path({str(bundle)!r}).read_bytes())
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    train_log = folder(cut) / "train.log"
    try:
        wait_for(
            lambda: train_log.exists() and "ARBORIST_REPORT" in train_log.read_text(),
            "the cut trial's train step to report",
            alive=lambda: worker.poll() is None,
        )
    finally:
        worker.kill()  # as the OOM killer or a lost node would: no clean-up runs
        worker.wait()
    assert (folder(cut) / "worktree").is_dir() and (folder(cut) / "pycache").is_dir()
    assert not (folder(cut) / "finished.json").exists()

    assert run(campaign, campaign.spec(trial_id="next")).state is TrialState.COMPLETE
    assert {p.name for p in folder(cut).iterdir()} <= RECORD
    assert json.loads((folder(cut) / "finished.json").read_text())["state"] == retention.LOST
    assert (folder(cut) / "train.log").exists()  # kept for whoever debugs the lost trial
    repo = campaign.scratch / "repos" / f"{campaign.bundle_id}.git"
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_pruning_leaves_the_folder_of_a_running_trial_alone(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    busy = TrialPaths.for_trial(scratch, "busy")
    busy.prepare()
    busy.worktree.mkdir()
    lock = retention.TrialLock(scratch, "busy")
    try:
        assert retention.prune(scratch, RetentionSpec(keep_complete=0, keep_failed=0)) == []
        assert busy.worktree.is_dir() and not busy.finished_file.exists()
    finally:
        lock.release()
    # Once let go without a record, it is a lost trial, and keep_failed 0 keeps none of those.
    assert retention.prune(scratch, RetentionSpec(keep_complete=0, keep_failed=0)) == ["busy"]
    assert not busy.root.exists() and not retention.lock_path(scratch, "busy").exists()


def test_the_retention_config_reaches_every_trial(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ray={"keep_complete_trials": 0, "keep_failed_trials": 5}))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    try:
        dispatch = service.suggest()
        assert isinstance(dispatch, dict)
        spec = TrialSpec.from_dict(dispatch["spec"])
    finally:
        service.close()
    assert spec.retention == RetentionSpec(keep_complete=0, keep_failed=5)
    (tmp_path / "defaults").mkdir()
    defaults = load_config(write_config(tmp_path / "defaults")).ray
    assert RetentionSpec() == RetentionSpec(defaults.keep_complete_trials, defaults.keep_failed_trials)
    (tmp_path / "negative").mkdir()
    with pytest.raises(ConfigError, match="keep_failed_trials"):
        load_config(write_config(tmp_path / "negative", ray={"keep_failed_trials": -1}))
