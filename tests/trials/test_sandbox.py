"""Trial containment against hostile changes: real bubblewrap, real processes, real git."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator import report
from orchestrator.config import load_config
from orchestrator.tree import ROOT_ID, SearchTree
from tests.toy import write_config
from tests.trials.conftest import SHADOW_JSON, Campaign, folder, processes_with, run, unified_diff
from trials import sandbox
from trials.spec import CodeChange, FailureStage, LimitsSpec, SandboxSpec, TrialResult, TrialSpec, TrialState

BWRAP_PROBLEM = sandbox.bwrap_problem()
needs_bwrap = pytest.mark.skipif(
    BWRAP_PROBLEM is not None, reason=f"bubblewrap cannot run here ({BWRAP_PROBLEM}); scripts/_env.sh installs it"
)
BWRAP = SandboxSpec(mode="bwrap")



# -- the evaluator's room ----------------------------------------------------------------------


@needs_bwrap
def test_a_shadow_module_from_the_diff_does_not_change_what_evaluate_computes(campaign: Campaign) -> None:
    chain = [CodeChange("c1", "architecture", unified_diff("json.py", None, SHADOW_JSON))]
    honest = run(campaign, campaign.spec(sandbox=BWRAP))
    shadowed = run(campaign, campaign.spec(sandbox=BWRAP, chain=chain, trial_id="t2"))
    assert honest.state is shadowed.state is TrialState.COMPLETE, shadowed.message
    assert shadowed.metrics["accuracy"] == honest.metrics["accuracy"] != 99.0


@needs_bwrap
def test_a_shadow_module_written_by_train_does_not_change_what_evaluate_computes(campaign: Campaign) -> None:
    spec = campaign.spec(sandbox=BWRAP, params={"mode": "shadow"})
    result = run(campaign, spec)
    assert result.state is TrialState.COMPLETE, result.message
    assert result.metrics["accuracy"] == pytest.approx(0.5 + 0.1 + 0.01)
    assert result.sandbox == "bwrap"


def test_evaluate_runs_in_a_clean_checkout_of_the_protected_paths(campaign: Campaign) -> None:
    # Also without the sandbox, the evaluator's cwd and import path hold the protected files only.
    spec = campaign.spec(sandbox=SandboxSpec(mode="none"), params={"mode": "shadow"}, evaluate_env={"DUMP_ENV": "1"})
    result = run(campaign, spec)
    assert result.state is TrialState.COMPLETE, result.message
    assert result.metrics["accuracy"] == pytest.approx(0.61)
    room = folder(spec) / "room"
    assert json.loads((folder(spec) / "metrics" / "evaluate_cwd.json").read_text()) == [
        "evallib", "evallib/__init__.py", "evallib/metric.py", "evaluate.py"
    ]
    assert not room.exists()  # a copy of the protected files, removed with the trial
    env = json.loads((folder(spec) / "metrics" / "evaluate_env.json").read_text())
    assert env["PYTHONSAFEPATH"] == "1" and env["PYTHONNOUSERSITE"] == "1" and env["PYTHONPATH"] == str(room)


# -- what a step leaves behind -------------------------------------------------------------------


@needs_bwrap
def test_a_setsid_daemon_forked_by_train_dies_with_it(campaign: Campaign) -> None:
    token = f"arborist-daemon-{uuid.uuid4().hex}"
    spec = campaign.spec(sandbox=BWRAP, params={"mode": "daemon", "token": token})
    result = run(campaign, spec)
    assert result.state is TrialState.COMPLETE, result.message
    assert (folder(spec) / "output" / "daemon.ready").exists()  # it did start
    assert processes_with(token) == []
    assert result.metrics["accuracy"] == pytest.approx(0.61)
    assert json.loads((folder(spec) / "metrics" / "metrics.json").read_text()) == {"accuracy": pytest.approx(0.61)}


@needs_bwrap
def test_the_budget_kill_reaches_the_step_through_bwrap_with_its_grace_time(campaign: Campaign) -> None:
    spec = campaign.spec(sandbox=BWRAP, params={"mode": "trap"}, budget_s=2.0)
    result = run(campaign, spec)
    assert (result.state, result.failure_stage) == (TrialState.TIMEOUT, FailureStage.RUN)
    assert (folder(spec) / "output" / "flushed").read_text() == "checkpoint"


# -- what a step can see and write ----------------------------------------------------------------


@pytest.fixture
def ray_files() -> Iterator[Path]:
    # Ray keeps its sockets and session files under /tmp/ray; a marker stands for them.
    marker = Path("/tmp/ray") / f"arborist-test-{uuid.uuid4().hex}"
    marker.parent.mkdir(exist_ok=True)
    marker.write_text("ray session")
    yield marker
    marker.unlink()


@needs_bwrap
def test_train_sees_nothing_of_the_campaign_other_trials_or_ray(campaign: Campaign, ray_files: Path) -> None:
    campaign_file = campaign.repo.path.parent / "campaign.json"
    campaign_file.write_text('{"heldout": "/secret/test.npz"}')
    other = campaign.scratch / "trials" / "other" / "output" / "model.json"
    other.parent.mkdir(parents=True)
    other.write_text("other trial")
    run(campaign, campaign.spec(sandbox=BWRAP))  # caches the repository on this "worker"
    repo = campaign.scratch / "repos" / f"{campaign.bundle_id}.git"
    hook = repo / "hooks" / "post-checkout"
    paths = [str(campaign_file), str(other), str(ray_files), str(repo / "HEAD"), str(Path.home() / ".ray" / "x")]
    spec = campaign.spec(sandbox=BWRAP, trial_id="t2", params={"mode": "snoop", "paths": paths, "write": [str(hook)]})
    result = run(campaign, spec)
    assert result.state is TrialState.COMPLETE, result.message
    seen = json.loads((folder(spec) / "output" / "snoop.json").read_text())
    assert {seen[p] for p in paths} == {"FileNotFoundError"}
    # The write fails, or lands on the sandbox's own in-memory /tmp; never in the real repository.
    assert not hook.exists()


def test_without_the_sandbox_the_same_snoop_reads_everything(campaign: Campaign) -> None:
    # The control of the test above: what the sandbox hides is really there.
    campaign_file = campaign.repo.path.parent / "campaign.json"
    campaign_file.write_text("{}")
    spec = campaign.spec(sandbox=SandboxSpec(mode="none"), params={"mode": "snoop", "paths": [str(campaign_file)]})
    run(campaign, spec)
    assert json.loads((folder(spec) / "output" / "snoop.json").read_text()) == {str(campaign_file): "{}"}


@needs_bwrap
def test_train_cannot_read_the_workers_environment_from_proc(campaign: Campaign, tmp_path: Path) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    spec = campaign.spec(sandbox=BWRAP, params={"mode": "procscan", "secret": secret})
    result = _run_in_worker(campaign, spec, tmp_path, {"ARBORIST_TEST_SECRET": secret})
    assert result.state is TrialState.COMPLETE, result.message
    scan = json.loads((folder(spec) / "output" / "procscan.json").read_text())
    assert scan["found"] == []
    assert scan["pids"] <= 3  # bwrap's init, the step and its shell at most: a PID namespace of its own


def test_without_the_sandbox_proc_gives_the_secret_away(campaign: Campaign, tmp_path: Path) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    spec = campaign.spec(sandbox=SandboxSpec(mode="none"), params={"mode": "procscan", "secret": secret})
    _run_in_worker(campaign, spec, tmp_path, {"ARBORIST_TEST_SECRET": secret})
    assert json.loads((folder(spec) / "output" / "procscan.json").read_text())["found"]


def _run_in_worker(campaign: Campaign, spec: TrialSpec, tmp_path: Path, env: dict[str, str]) -> TrialResult:
    """run_trial in a process of its own whose environment holds `env`, as a Ray worker's would."""
    bundle = tmp_path / "bundle"
    bundle.write_bytes(campaign.bundle_bytes)
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    code = textwrap.dedent(
        f"""
        import json, pathlib
        from trials.runner import run_trial
        from trials.spec import TrialSpec
        spec = TrialSpec.from_dict(json.loads(pathlib.Path({str(tmp_path / "spec.json")!r}).read_text()))
        result = run_trial(spec, lambda _id: pathlib.Path({str(bundle)!r}).read_bytes())
        print(json.dumps(result.to_dict()))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True,
        cwd=Path(__file__).parents[2],
    )
    return TrialResult.from_dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- git -------------------------------------------------------------------------------------------


def test_a_hook_planted_in_the_cached_repository_never_runs(campaign: Campaign, tmp_path: Path) -> None:
    run(campaign, campaign.spec(sandbox=SandboxSpec(mode="none")))
    repo = campaign.scratch / "repos" / f"{campaign.bundle_id}.git"
    ran = tmp_path / "hook-ran"
    for name in ("post-checkout", "pre-commit", "reference-transaction"):
        hook = repo / "hooks" / name
        hook.write_text(f"#!/bin/sh\nenv > {ran}\n")
        hook.chmod(0o755)
    result = run(campaign, campaign.spec(sandbox=SandboxSpec(mode="none"), trial_id="t2"))
    assert result.state is TrialState.COMPLETE, result.message
    assert not ran.exists()


# -- limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_a_chatty_step_keeps_the_head_and_tail_of_its_log(campaign: Campaign, mode: str) -> None:
    if mode == "bwrap" and BWRAP_PROBLEM:
        pytest.skip(BWRAP_PROBLEM)
    limits = LimitsSpec(max_log_mb=0.05)
    spec = campaign.spec(sandbox=SandboxSpec(mode=mode), limits=limits, params={"mode": "chatty", "lines": 20_000})
    result = run(campaign, spec)
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.LIMITS)
    assert result.message.startswith("train step went past a limit: it printed 1.9 MB of output")
    assert "limits.max_log_mb = 0.05" in result.message
    log = (folder(spec) / "train.log").read_bytes()
    assert len(log) < 0.05 * (1 << 20) + 200
    assert log.startswith(b"ARBORIST_REPORT") and b"bytes of output were cut here" in log


@needs_bwrap
def test_an_output_dir_past_its_limit_stops_the_step(campaign: Campaign) -> None:
    spec = campaign.spec(sandbox=BWRAP, limits=LimitsSpec(max_output_mb=1), params={"mode": "bigout", "mb": 3})
    result = run(campaign, spec)
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.LIMITS)
    assert "output dir" in result.message and "3.0 MB, more than limits.max_output_mb = 1" in result.message
    assert result.finished_at - result.started_at < 15  # stopped long before its budget of 20 s


@needs_bwrap
def test_memory_past_its_limit_fails_in_limits(campaign: Campaign) -> None:
    spec = campaign.spec(sandbox=BWRAP, limits=LimitsSpec(memory_mb=300), params={"mode": "hog", "mb": 1024})
    result = run(campaign, spec)
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.LIMITS)
    assert "limits.memory_mb = 300" in result.message and "MemoryError" in result.log_tail


@needs_bwrap
def test_cpu_time_past_its_limit_fails_in_limits(campaign: Campaign) -> None:
    spec = campaign.spec(sandbox=BWRAP, limits=LimitsSpec(max_cpu_s=1), params={"mode": "spin"})
    result = run(campaign, spec)
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.LIMITS)
    assert "limits.max_cpu_s = 1 CPU seconds" in result.message


# -- when there is no sandbox ----------------------------------------------------------------------


def test_an_unsandboxed_trial_says_so_and_the_report_warns(campaign: Campaign, tmp_path: Path) -> None:
    result = run(campaign, campaign.spec(sandbox=SandboxSpec(mode="none")))
    assert result.state is TrialState.COMPLETE and result.sandbox == "none"
    assert TrialResult.from_dict({k: v for k, v in result.to_dict().items() if k != "sandbox"}).sandbox == ""
    notebook = report.notebook(load_config(write_config(tmp_path)), _tree_with(result))
    assert "WARNING: 1 trials ran UNSANDBOXED" in notebook


def test_mode_bwrap_without_bubblewrap_fails_in_setup(campaign: Campaign, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = campaign.spec(sandbox=BWRAP)
    monkeypatch.setenv("PATH", "/nonexistent")
    sandbox.bwrap_problem.cache_clear()
    try:
        result = run(campaign, spec)
    finally:
        sandbox.bwrap_problem.cache_clear()
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.SETUP)
    assert "install it (apt-get install bubblewrap" in result.message and result.sandbox == ""


def _tree_with(result: TrialResult) -> SearchTree:
    result = replace(result, node_id=ROOT_ID, trial_id=f"{ROOT_ID}-s{result.seed}")
    tree = SearchTree()
    tree.record("session_started", ts=0.0)
    tree.record("node_created", node_id=ROOT_ID, parent_id=None, change=None, commit="c", params={}, origin="root")
    tree.record("seeds_requested", node_id=ROOT_ID, seeds=[result.seed])
    tree.record("trial_started", trial_id=result.trial_id, node_id=ROOT_ID, seed=result.seed)
    tree.record("trial_finished", result=result.to_dict())
    return tree

