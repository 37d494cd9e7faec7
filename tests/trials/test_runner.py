"""run_trial end to end, on a real campaign repository and real train/evaluate scripts."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.trials.conftest import PY, Campaign, git, score_diff, unified_diff
from trials.errors import TrialPruned
from trials.layout import SCRATCH_ENV
from trials.runner import run_trial
from trials.spec import CodeChange, FailureStage, Placement, TrialResult, TrialSpec, TrialState


def run(campaign: Campaign, spec: TrialSpec, **kwargs: Any) -> TrialResult:
    result = run_trial(spec, campaign.fetch, **kwargs)
    # Every outcome leaves the trial folder with its logs and no worktree behind.
    trial_dir = Path(spec.scratch_dir) / "trials" / spec.trial_id
    assert not (trial_dir / "worktree").exists()
    assert TrialResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    return result


def trial_dir(spec: TrialSpec) -> Path:
    return Path(spec.scratch_dir) / "trials" / spec.trial_id


def test_a_complete_trial(campaign: Campaign) -> None:
    chain = [
        CodeChange("c1", "architecture", score_diff(0.5, 0.6)),
        CodeChange("c2", "architecture", score_diff(0.6, 0.7)),
    ]
    spec = campaign.spec(chain=chain, seed=3)
    reports: list[dict[str, Any]] = []
    result = run(campaign, spec, on_report=reports.append)

    assert result.state is TrialState.COMPLETE, result.message
    assert result.failure_stage is None and result.message == ""
    score = 0.7 + 0.1 + 0.03
    assert result.metrics["accuracy"] == pytest.approx(score)
    assert result.metrics["test_loss"] == pytest.approx(round(1 - score, 4))  # the last match, not 9.9999
    assert 0 < result.metrics["train_time_s"] < 10
    assert reports == result.reports == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
    assert not result.self_reported
    assert result.fingerprint.python and result.fingerprint.budget_s == 20.0
    assert result.fingerprint.packages.startswith("numpy=") and result.fingerprint.lock_hash
    assert result.worker and result.finished_at >= result.started_at > 0
    assert "test loss" in result.log_tail
    folder = trial_dir(spec)
    assert (folder / "train.log").exists() and (folder / "evaluate.log").exists()
    assert json.loads((folder / "params.json").read_text()) == spec.params
    assert (folder / "output" / "model.json").exists()


def test_a_node_with_its_own_scratch_folder_keeps_its_trials_there(
    campaign: Campaign, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "node-scratch"
    monkeypatch.setenv(SCRATCH_ENV, str(own))
    fetched: list[str] = []

    def fetch(bundle_id: str) -> bytes:
        fetched.append(bundle_id)
        return campaign.fetch(bundle_id)

    spec = campaign.spec(seed=1)
    for seed in (1, 2):
        result = run_trial(replace(spec, seed=seed, trial_id=f"n0-s{seed}"), fetch)
        assert result.state is TrialState.COMPLETE, result.message
    assert fetched == [spec.bundle_id]  # once for the node, whatever the trials
    assert (own / "repos" / f"{spec.bundle_id}.git").is_dir()
    assert {p.name for p in (own / "trials").iterdir()} == {"n0-s1", "n0-s2"}
    assert not Path(spec.scratch_dir).exists()  # ray.scratch_dir, as the spec carries it, is not used


def test_a_trial_records_where_it_ran(campaign: Campaign, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # as Ray sets it for a trial given a GPU
    spec = campaign.spec()
    alone = run(campaign, spec)
    assert alone.placement == Placement(hostname=socket.gethostname(), gpu_ids="3")  # no cluster: no node
    # On a cluster the node comes from it; a node without an accelerator type is described by
    # the fingerprint's GPU model (none here: no nvidia-smi to name GPU 3).
    cluster = Placement(ray_node_id="f" * 56, node_ip="10.0.0.7")
    placed = run(campaign, replace(spec, entrypoint=replace(spec.entrypoint, env={"CUDA_VISIBLE_DEVICES": "0,1"})),
                 placement=cluster)
    assert placed.state is TrialState.COMPLETE, placed.message
    assert placed.placement == Placement("f" * 56, "10.0.0.7", socket.gethostname(), "0,1",
                                         placed.fingerprint.gpu_model)


def test_the_same_trial_can_run_again_on_the_same_machine(campaign: Campaign) -> None:
    spec = campaign.spec()
    first = run(campaign, spec)
    second = run(campaign, spec)
    assert first.state is second.state is TrialState.COMPLETE
    assert first.metrics["accuracy"] == second.metrics["accuracy"]
    assert campaign.fetches == [campaign.bundle_id]  # the bundle was fetched once


def test_train_crash_fails_in_run(campaign: Campaign) -> None:
    result = run(campaign, campaign.spec(params={"mode": "crash"}))
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.RUN)
    assert "exited with code 3" in result.message
    assert "CUDA out of memory" in result.log_tail


def test_train_past_its_budget_times_out(campaign: Campaign) -> None:
    # 3 s: the reports come after Python's and the sandbox's start, slow on a loaded machine.
    result = run(campaign, campaign.spec(params={"mode": "hang"}, budget_s=3.0))
    assert (result.state, result.failure_stage) == (TrialState.TIMEOUT, FailureStage.RUN)
    assert result.message == "train step ran past its budget of 3 s; the whole process group was killed"
    assert len(result.reports) == 2  # reports printed before the hang still count


def test_missing_metrics_fail_in_metrics(campaign: Campaign) -> None:
    result = run(campaign, campaign.spec(params={"mode": "nometrics"}))
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.METRICS)
    assert "was not written" in result.message and "$ARBORIST_METRICS_FILE" in result.message


def test_nan_metrics_fail_in_metrics(campaign: Campaign) -> None:
    result = run(campaign, campaign.spec(params={"mode": "nan"}))
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.METRICS)
    assert "metric accuracy is nan" in result.message
    assert "metric test_loss is nan in the evaluate output" in result.message
    assert result.metrics == {}


def test_an_evaluate_step_that_crashes_fails_in_metrics(campaign: Campaign) -> None:
    result = run(campaign, campaign.spec(evaluate=f"{PY} -c 'raise SystemExit(4)'"))
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.METRICS)
    assert "evaluate step exited with code 4" in result.message


def test_a_train_step_that_rewrites_the_evaluator_is_invalid(campaign: Campaign) -> None:
    result = run(campaign, campaign.spec(params={"mode": "tamper"}))
    assert result.state is TrialState.INVALID
    assert "the train step changed protected paths" in result.message and "evaluate.py changed" in result.message
    assert result.metrics == {}


def test_importing_a_protected_package_is_not_tampering(campaign: Campaign) -> None:
    # Both steps import evallib (protected); its bytecode must not land in the worktree.
    spec = campaign.spec(env={"PYTHONVERBOSE": "1"})  # Python logs each bytecode file it writes
    result = run(campaign, spec)
    assert result.state is TrialState.COMPLETE, result.message
    for step in ("train", "evaluate"):
        log = (trial_dir(spec) / f"{step}.log").read_text()
        written = re.findall(r"^# created '(\S+/metric\.\S+\.pyc)'$", log, re.M)
        # Compiled into the step's own cache, once per step...
        assert [Path(w).parent.name for w in written] == ["evallib"], step
        assert Path(written[0]).is_relative_to(trial_dir(spec) / "pycache" / step)
    assert not (trial_dir(spec) / "pycache").exists()  # ...which goes with the trial


def test_a_chain_that_edits_a_protected_file_is_invalid_before_it_runs(campaign: Campaign) -> None:
    evaluate = (campaign.project / "evaluate.py").read_text()
    chain = [CodeChange("c1", "loss", unified_diff("evaluate.py", evaluate, evaluate + "print('accuracy: 1.0')\n"))]
    result = run(campaign, campaign.spec(chain=chain))
    assert result.state is TrialState.INVALID
    assert "before the trial ran" in result.message and "evaluate.py" in result.message
    assert not (trial_dir(campaign.spec()) / "train.log").exists()


def test_a_chain_that_does_not_apply_fails_in_apply(campaign: Campaign) -> None:
    chain = [
        CodeChange("c1", "architecture", score_diff(0.5, 0.6)),
        CodeChange("c2", "architecture", score_diff(0.5, 0.9)),
    ]
    result = run(campaign, campaign.spec(chain=chain))
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.APPLY)
    assert result.message.startswith("change c2 does not apply")
    assert result.fingerprint.python  # recorded even though nothing ran


def test_a_metrics_file_planted_by_the_train_step_is_ignored(campaign: Campaign) -> None:
    # The train step writes {"accuracy": 99} where the evaluate step's metrics file will be;
    # the evaluate step writes none, so the trial must fail rather than report 99.
    result = run(campaign, campaign.spec(params={"mode": "plant"}))
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.METRICS)
    assert "was not written" in result.message


def test_secrets_of_the_worker_do_not_reach_the_trial(campaign: Campaign, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("HF_TOKEN", "passed-on-purpose")
    spec = campaign.spec(params={"mode": "env"}, inherit_env=["HF_TOKEN"], evaluate_env={"DUMP_ENV": "1"})
    result = run(campaign, spec)
    assert result.state is TrialState.COMPLETE, result.message
    folder = trial_dir(spec)
    for step, dump, home, tmp in (
        ("train", folder / "output" / "train_env.json", folder / "home", folder / "tmp"),
        ("evaluate", folder / "metrics" / "evaluate_env.json", folder / "evaluate-home", folder / "evaluate-home"),
    ):
        env = json.loads(dump.read_text())
        assert "AWS_SECRET_ACCESS_KEY" not in env and "OPENAI_API_KEY" not in env, step
        assert env["HF_TOKEN"] == "passed-on-purpose"
        assert env["HOME"] == str(home) and env["TMPDIR"] == str(tmp)
        assert env["ARBORIST_TRIAL_ID"] == "t1" and env["ARBORIST_SEED"] == "1"
    train_env = json.loads((folder / "output" / "train_env.json").read_text())
    assert "ARBORIST_METRICS_FILE" not in train_env  # the train step has no say in the metrics


def test_single_command_mode_marks_metrics_self_reported(campaign: Campaign) -> None:
    result = run(campaign, campaign.spec(evaluate=None))
    assert result.state is TrialState.COMPLETE, result.message
    assert result.self_reported
    assert result.metrics["accuracy"] == pytest.approx(0.5 + 0.1 + 0.01)
    assert "train_time_s" in result.metrics


def test_a_scheduler_can_stop_a_trial_early(campaign: Campaign) -> None:
    def on_report(report: dict[str, Any]) -> None:
        if report["step"] == 2:
            raise TrialPruned

    result = run(campaign, campaign.spec(params={"mode": "slow"}), on_report=on_report)
    assert result.state is TrialState.PRUNED and result.failure_stage is None
    assert result.duration_s < 10


def test_setup_and_start_failures_fail_in_setup(campaign: Campaign) -> None:
    result = run(campaign, campaign.spec(setup=f"{PY} -c 'raise SystemExit(2)'"))
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.SETUP)
    assert "setup command exited with code 2" in result.message

    result = run(campaign, campaign.spec(train="no-such-trainer-xyz --lr {lr}"))
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.SETUP)
    assert "no such program" in result.message

    result = run(campaign, campaign.spec(train=f"{PY} train.py --lr {{learning_rate}}"))
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.SETUP)
    assert "unknown placeholder {learning_rate}" in result.message


def test_a_corrupt_bundle_is_a_setup_failure_not_an_exception(campaign: Campaign) -> None:
    spec = campaign.spec()
    result = run_trial(spec, lambda _id: b"garbage")
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.SETUP)
    assert "content hash" in result.message


def test_a_bad_trial_id_is_a_setup_failure(campaign: Campaign) -> None:
    result = run_trial(campaign.spec(trial_id="../../escape"), campaign.fetch)
    assert (result.state, result.failure_stage) == (TrialState.FAIL, FailureStage.SETUP)
    assert "cannot be used as a folder name" in result.message


def test_the_campaign_repo_is_not_touched_by_trials(campaign: Campaign) -> None:
    refs = git(campaign.repo.path, "show-ref")
    run(campaign, campaign.spec())
    assert git(campaign.repo.path, "show-ref") == refs
