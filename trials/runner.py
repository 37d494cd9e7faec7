"""One trial, start to finish: materialize the node's code, guard the evaluator, train, evaluate.

`run_trial` never raises for anything a user's project or a proposed change can cause: every
such failure becomes a TrialResult whose state, stage and message say what went wrong.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import socket
import tarfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trials import bytecode, retention
from trials.entrypoint import (
    Step,
    build_env,
    collect_metrics,
    command_fields,
    parse_report_line,
    render_command,
    run_command,
)
from trials.errors import ChainApplyError, CommandError, GitError, TemplateError, TrialPruned, TrialSetupError
from trials.fingerprint import take_fingerprint
from trials.fsutil import rmtree_force
from trials.gitutil import run_git
from trials.hashing import hash_path
from trials.layout import TrialPaths, scratch_dir
from trials.process import CommandOutcome, check_program
from trials.protect import file_digest, is_definition, split_entry
from trials.sandbox import BWRAP, Room, SandboxUnavailable, containment, existing, wrap
from trials.spec import FailureStage, Fingerprint, Placement, TrialResult, TrialSpec, TrialState
from trials.worktree import Worktree, ensure_cached_repo, materialize

SETUP_MIN_BUDGET_S = 600.0  # installs are slow; the setup step is not held to the train budget
_METRICS_OUTPUT_BYTES = 16 << 20  # regex metrics are read from the end of a step's output
TRAIN_TIME_METRIC = "train_time_s"  # measured by arborist, so a change cannot fake it
_STOPPED_WHY = "its wall-clock budget ran out (budget.max_wall_s and budget.grace_s); not a failure of the change"
_log = logging.getLogger(__name__)


def run_trial(
    spec: TrialSpec,
    fetch_bundle: Callable[[str], bytes],
    on_report: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
    placement: Placement | None = None,
    started_at: float | None = None,
    tidy_in_background: bool = False,
) -> TrialResult:
    """Run one trial of `spec` on this machine and say how it went.

    fetch_bundle(bundle_id) returns the campaign bundle's bytes (called once per machine).
    on_report receives each `ARBORIST_REPORT` object of the train step as it is printed; it
    may raise TrialPruned to stop the trial early (the result is then PRUNED). Setting `stop`
    is the campaign stopping the trial (its wall-clock budget ran out): the running step's
    processes are stopped and the result is STOPPED. `placement` is what a cluster knows of
    where the trial runs (its node id, IP and accelerator type); the result's placement adds
    this machine's hostname and the trial's GPU ids to it. `started_at` is when the trial took
    its slot (default: now).

    tidy_in_background: the trial's folder is recorded before this returns, and its worktree and
    scratch parts are removed, and the retention rule applied, by a thread of this process after
    it returns, so that the next trial in this process starts at once. The trial's lock is held
    until that ends: a process killed meanwhile leaves a recorded folder that the next pruning
    on the machine strips (trials/retention.py).
    """
    started_at = time.time() if started_at is None else started_at
    trial = _Trial(spec, fetch_bundle, on_report, stop)
    ending: _Ending | None = None
    try:
        ending = trial.run()
    except _End as end:
        ending = end.ending
    except Exception as exc:  # the last line of defence: a trial is never lost
        ending = _Ending(
            TrialState.FAIL,
            FailureStage.SETUP,
            f"arborist failed while running this trial ({type(exc).__name__}: {exc}); this is a "
            "problem of arborist or the machine, not of the change; the trial folder keeps its logs",
            log_tail=traceback.format_exc(limit=8),
        )
    finally:
        # Without an ending (the worker is being stopped) the folder keeps no record, and the
        # next trial on this machine cleans it up as lost.
        state = ending.state if ending is not None else None
        if tidy_in_background and ending is not None:
            trial.record(state)
            threading.Thread(target=trial.tidy, args=(state,), name=f"tidy-{spec.trial_id}", daemon=True).start()
        else:
            trial.tidy(state)
    fingerprint = trial.fingerprint or _best_effort_fingerprint(spec, trial.paths)
    return TrialResult(
        trial_id=spec.trial_id,
        node_id=spec.node_id,
        seed=spec.seed,
        state=ending.state,
        metrics=ending.metrics,
        failure_stage=ending.stage,
        message=ending.message,
        self_reported=spec.entrypoint.evaluate is None,
        reports=list(trial.reports),
        fingerprint=fingerprint,
        started_at=started_at,
        finished_at=time.time(),
        step_times={step: list(span) for step, span in trial.step_spans.items()},
        log_tail=ending.log_tail,
        worker=socket.gethostname(),
        sandbox=trial.containment,
        placement=_placement(spec, placement, fingerprint),
    )


def local_placement(spec: TrialSpec) -> Placement:
    """What this machine knows of where a trial of `spec` runs: its hostname, and the GPU ids the
    trial's steps are given (CUDA_VISIBLE_DEVICES as build_env passes it on, "" when unset)."""
    gpu_ids = spec.entrypoint.env.get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    return Placement(hostname=socket.gethostname(), gpu_ids=gpu_ids)


def _placement(spec: TrialSpec, cluster: Placement | None, fingerprint: Fingerprint) -> Placement:
    here = local_placement(spec)
    if cluster is None:
        return here  # no cluster: nothing to say of nodes or their accelerator type
    # A node that declares no accelerator type (a CPU node, or one started without GPU detection)
    # is described by the GPUs the trial saw, if any.
    return replace(cluster, hostname=here.hostname, gpu_ids=here.gpu_ids,
                   accelerator=cluster.accelerator or fingerprint.gpu_model)


@dataclass
class _Ending:
    state: TrialState
    stage: FailureStage | None
    message: str
    log_tail: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


class _End(Exception):
    """Ends a trial early with the given outcome."""

    def __init__(self, state: TrialState, stage: FailureStage | None, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.ending = _Ending(state, stage, message, log_tail)


class _Trial:
    def __init__(
        self,
        spec: TrialSpec,
        fetch_bundle: Callable[[str], bytes],
        on_report: Callable[[dict[str, Any]], None] | None,
        stop: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.scratch = scratch_dir(spec.scratch_dir)  # this machine's: bundles, worktrees, trial folders
        self.fetch_bundle = fetch_bundle
        self.on_report = on_report
        self.stop = stop  # the campaign's request to stop (see run_trial)
        self.pruned = False  # on_report asked to stop: a scheduler's early stop, not the campaign's
        self.paths: TrialPaths | None = None
        self.worktree: Worktree | None = None
        self.fingerprint: Fingerprint | None = None
        self.reports: list[dict[str, Any]] = []
        self.containment = ""
        self.lock: retention.TrialLock | None = None
        self.recorded = False  # the folder's record (finished.json) is written
        self.step_spans: dict[Step, tuple[float, float]] = {}  # each step's command: start and end (unix)

    def run(self) -> _Ending:
        spec = self.spec
        try:
            self.containment = containment(spec.sandbox.mode)
        except SandboxUnavailable as exc:
            raise _End(TrialState.FAIL, FailureStage.SETUP, str(exc)) from exc
        self._stop_if_asked("before it started")
        paths = self._prepare()
        try:
            self.worktree = self._materialize(paths)
        finally:
            self.fingerprint = _best_effort_fingerprint(spec, paths)
        self._guard(paths, after_train=False)
        if spec.entrypoint.setup:
            self._setup(paths, spec.entrypoint.setup)
        if spec.entrypoint.evaluate is None:
            paths.metrics_dir.mkdir()  # self-reported: the train step writes the metrics
        train = self._train(paths)
        self._guard(paths, after_train=True)
        if spec.entrypoint.evaluate is None:
            metrics = self._metrics(paths, "train", train)
            log_tail = train.output_tail
        else:
            evaluate = self._evaluate(paths, spec.entrypoint.evaluate)
            metrics = self._metrics(paths, "evaluate", evaluate)
            log_tail = evaluate.output_tail
        metrics[TRAIN_TIME_METRIC] = round(train.duration_s, 3)
        return _Ending(TrialState.COMPLETE, None, "", log_tail=log_tail, metrics=metrics)

    def record(self, state: TrialState | None) -> None:
        """Write how the trial ended into its folder (the folder is stripped by tidy)."""
        if self.lock is None or self.paths is None or state is None:
            return  # the folder was never this trial's to touch, or the trial has no ending
        try:
            retention.record(self.paths, state.value, time.time())
            self.recorded = True
        except OSError as exc:
            _log.warning("could not record the end of trial folder %s: %s", self.paths.root, exc)

    def tidy(self, state: TrialState | None) -> None:
        """Remove the worktree, strip the folder to its record, let go of it, apply the retention rule."""
        if self.worktree is not None:
            # A worktree left behind is cleaned by the next attempt of the trial.
            with contextlib.suppress(Exception):
                self.worktree.remove()
        if self.lock is None:
            return  # the folder was never this trial's to touch
        try:
            if not self.recorded:
                self.record(state)
            if self.paths is not None and self.recorded:
                retention.strip(self.paths)
        except OSError as exc:
            _log.warning("could not clean up trial folder %s: %s", self.paths.root if self.paths else "", exc)
        finally:
            self.lock.release()
            self.lock = None
        self._prune()

    def _prune(self) -> None:
        # Keeping the scratch folder bounded is never a reason to lose a trial.
        try:
            retention.prune(self.scratch, self.spec.retention)
        except Exception as exc:
            _log.warning("could not prune the trial folders of %s: %s", self.scratch, exc)

    # -- steps ------------------------------------------------------------------------------

    def _prepare(self) -> TrialPaths:
        try:
            paths = TrialPaths.for_trial(self.scratch, self.spec.trial_id)
            # Held until the trial ends: pruning by other trials on this machine skips its folder.
            self.lock = retention.TrialLock(self.scratch, self.spec.trial_id)
            self._prune()
            self.paths = paths
            paths.prepare()
            _write_params(paths, self.spec.params)
        except (ValueError, TypeError, OSError) as exc:
            raise _End(TrialState.FAIL, FailureStage.SETUP, f"could not prepare the trial folder: {exc}") from exc
        return paths

    def _materialize(self, paths: TrialPaths) -> Worktree:
        spec = self.spec
        try:
            repo = ensure_cached_repo(self.scratch, spec.bundle_id, self.fetch_bundle)
            return materialize(repo, spec.base_commit, spec.chain, paths.worktree)
        except ChainApplyError as exc:
            raise _End(TrialState.FAIL, FailureStage.APPLY, str(exc)) from exc
        except (TrialSetupError, OSError) as exc:
            raise _End(TrialState.FAIL, FailureStage.SETUP, f"could not check out the node's code: {exc}") from exc

    def _guard(self, paths: TrialPaths, *, after_train: bool) -> None:
        problems = protected_problems(self.spec.protected, paths.worktree)
        if not problems:
            return
        if after_train:
            message = (
                f"the train step changed protected paths while it ran: {'; '.join(problems)}; the "
                "evaluator and its data must stay frozen, so this trial's metrics cannot be trusted"
            )
        else:
            message = (
                f"protected paths differ from the campaign snapshot before the trial ran: "
                f"{'; '.join(problems)}; changes must not touch protected paths, and protected "
                "files outside the project must not change during a campaign"
            )
        raise _End(TrialState.INVALID, None, message)

    def _setup(self, paths: TrialPaths, template: str) -> None:
        budget = max(SETUP_MIN_BUDGET_S, self.spec.entrypoint.budget_s)
        outcome = self._run(paths, "setup", template, budget)
        if outcome.timed_out:
            raise _End(
                TrialState.FAIL,
                FailureStage.SETUP,
                f"setup command ran past {budget:g} s and was killed; see setup.log",
                outcome.output_tail,
            )
        if outcome.returncode != 0:
            raise _End(
                TrialState.FAIL,
                FailureStage.SETUP,
                f"setup command {_exit_text(outcome.returncode)}; see setup.log in the trial folder",
                outcome.output_tail,
            )

    def _stop_if_asked(self, when: str) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _End(TrialState.STOPPED, None, f"stopped by the campaign {when}: {_STOPPED_WHY}")

    def _train(self, paths: TrialPaths) -> CommandOutcome:
        budget = self.spec.entrypoint.budget_s
        # One event stops the step: the campaign's, which a scheduler's early stop also sets.
        stop = self.stop if self.stop is not None else threading.Event()

        def on_line(line: str) -> None:
            report = parse_report_line(line)
            if report is None:
                return
            self.reports.append(report)
            if self.on_report is None:
                return
            try:
                self.on_report(report)
            except TrialPruned:
                self.pruned = True
                stop.set()
            # Anything else a callback raises (including Ray's own SystemExit) ends the trial
            # through run_command, which stops the process group first.

        outcome = self._run(paths, "train", self.spec.entrypoint.train, budget, on_line, stop)
        if outcome.stopped:
            raise _End(
                TrialState.PRUNED,
                None,
                f"stopped early by the scheduler after {len(self.reports)} reports",
                outcome.output_tail,
            )
        if outcome.timed_out:
            raise _End(
                TrialState.TIMEOUT,
                FailureStage.RUN,
                f"train step ran past its budget of {budget:g} s; the whole process group was killed",
                outcome.output_tail,
            )
        if outcome.returncode != 0:
            raise _End(
                TrialState.FAIL,
                FailureStage.RUN,
                f"train step {_exit_text(outcome.returncode)}; see the log tail (train.log in the trial folder)",
                outcome.output_tail,
            )
        return outcome

    def _evaluate(self, paths: TrialPaths, template: str) -> CommandOutcome:
        budget = self.spec.entrypoint.evaluate_budget_s
        # Nothing the train step left may reach the evaluator: a planted metrics file, edited
        # params, modules in the worktree. (Its bytecode cache is made afresh by _room.)
        for folder in (paths.metrics_dir, paths.evaluate_home, paths.room):
            rmtree_force(folder)
            folder.mkdir(parents=True)
        _write_params(paths, self.spec.params)
        self._furnish_room(paths)
        outcome = self._run(paths, "evaluate", template, budget)
        if outcome.timed_out:
            raise _End(
                TrialState.TIMEOUT,
                FailureStage.METRICS,
                f"evaluate step ran past its budget of {budget:g} s; the whole process group was killed",
                outcome.output_tail,
            )
        if outcome.returncode != 0:
            raise _End(
                TrialState.FAIL,
                FailureStage.METRICS,
                f"evaluate step {_exit_text(outcome.returncode)}; see the log tail (evaluate.log in the trial "
                "folder); it runs in a clean checkout of the protected paths, so every file it reads from the "
                "project must be listed under `protected`",
                outcome.output_tail,
            )
        return outcome

    def _furnish_room(self, paths: TrialPaths) -> None:
        """Check out the protected paths, as the snapshot has them, into the evaluator's room."""
        assert self.worktree is not None  # materialized before any step runs
        # A protected definition (`file::name`) freezes part of a mutable file: the room holds
        # whole protected files only.
        relative = sorted(p for p in self.spec.protected if not os.path.isabs(p) and not is_definition(p))
        if relative:
            try:
                archive = run_git(
                    ["archive", "--format=tar", self.spec.base_commit, "--", *relative], cwd=self.worktree.repo
                ).stdout
                with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                    tar.extractall(paths.room, filter="data")
            except (GitError, tarfile.TarError, OSError) as exc:
                raise _End(
                    TrialState.FAIL, FailureStage.SETUP, f"could not check out the protected paths for evaluate: {exc}"
                ) from exc
        problems = protected_problems({p: self.spec.protected[p] for p in relative}, paths.room)
        if problems:
            raise _End(
                TrialState.INVALID,
                None,
                f"the campaign repository on this machine does not hold the protected files of the snapshot: "
                f"{'; '.join(problems)}; remove {self.worktree.repo} so that the next trial fetches it again",
            )
    def _metrics(self, paths: TrialPaths, step: Step, outcome: CommandOutcome) -> dict[str, float]:
        output = _read_end(paths.log(step), _METRICS_OUTPUT_BYTES)
        metrics, problems = collect_metrics(paths.metrics_file, output, self.spec.metrics, step=step)
        if problems:
            raise _End(TrialState.FAIL, FailureStage.METRICS, "; ".join(problems), outcome.output_tail)
        return metrics

    def _run(
        self,
        paths: TrialPaths,
        step: Step,
        template: str,
        budget_s: float,
        on_line: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
    ) -> CommandOutcome:
        spec = self.spec
        self._stop_if_asked(f"before its {step} step")
        room = self._room(paths, step)
        began = 0.0
        try:
            argv = render_command(template, spec.params, spec.seed, command_fields(spec, paths, step))
            env = build_env(spec, paths, step)
            if self.containment == BWRAP and argv:
                check_program(argv[0], room.cwd, env)
                argv = wrap(argv, room)
            began = time.time()
            outcome = run_command(
                argv,
                cwd=room.cwd,
                env=env,
                budget_s=budget_s,
                log_path=paths.log(step),
                on_line=on_line,
                tail_lines=spec.log_tail_lines,
                stop=stop if stop is not None else self.stop,
                limits=spec.limits,
                output_dir=None if step == "evaluate" else paths.output,
                contained=self.containment == BWRAP,
            )
        except (TemplateError, CommandError) as exc:
            raise _End(TrialState.FAIL, FailureStage.SETUP, f"the {step} command could not be started: {exc}") from exc
        finally:
            if began:
                self.step_spans[step] = (began, time.time())
        self._learn_bytecode(paths, step)  # also after a failed step: what it imported was imported
        if outcome.stopped and not self.pruned and self.stop is not None and self.stop.is_set():
            raise _End(TrialState.STOPPED, None, f"stopped by the campaign during its {step} step: {_STOPPED_WHY}",
                       outcome.output_tail)
        if outcome.limit:
            raise _End(TrialState.FAIL, FailureStage.LIMITS, f"{step} step went past a limit: {outcome.limit}",
                       outcome.output_tail)
        return outcome

    def _shared_bytecode(self) -> Path | None:
        """The machine's bytecode cache of the installation; None where steps must not share one.

        Unsandboxed, a step could write into the shared cache and so plant compiled code for
        every later step on the machine, evaluators included: each step then compiles into its
        own cache alone, as it always did.
        """
        return bytecode.shared_cache(self.scratch) if self.containment == BWRAP else None

    def _learn_bytecode(self, paths: TrialPaths, step: Step) -> None:
        shared = self._shared_bytecode()
        if shared is None:
            return
        try:
            bytecode.learn(paths.pycache / step, shared, exclude=[self.scratch])
        except Exception as exc:  # a slower next trial, never a lost one
            _log.warning("could not add the %s step's installed modules to %s: %s", step, shared, exc)

    def _room(self, paths: TrialPaths, step: Step) -> Room:
        """What the step sees under the sandbox (its cwd also without one)."""
        sandbox = self.spec.sandbox
        pycache = paths.pycache / step
        # A fresh cache per step: the evaluate step gets none of the train step's bytecode.
        shared = self._shared_bytecode()
        bytecode.furnish(pycache, shared)
        inputs = existing([*sandbox.read_only, paths.params_file, *([shared] if shared is not None else [])])
        if step == "evaluate":
            heldout = existing(p for p in self.spec.protected if os.path.isabs(p))
            return Room(
                cwd=paths.room,
                writable=[paths.metrics_dir, paths.evaluate_home, pycache],
                read_only=[*inputs, *heldout, paths.room, paths.output],
                network=sandbox.network,
            )
        writable = [paths.worktree, paths.output, paths.home, paths.tmp, pycache]
        if step == "train" and self.spec.entrypoint.evaluate is None:
            writable.append(paths.metrics_dir)
        return Room(cwd=paths.worktree, writable=writable, read_only=inputs, network=sandbox.network)


def protected_problems(expected: Mapping[str, str], worktree: Path) -> list[str]:
    """What differs between protected paths and their expected hashes (relative: in worktree)."""
    problems = []
    for name, digest in sorted(expected.items()):
        if is_definition(name):
            file, qualname = split_entry(name)
            if file_digest(worktree / file, qualname) != digest:
                problems.append(f"protected definition {name} changed, or is gone")
            continue
        path = Path(name)
        actual = hash_path(path if path.is_absolute() else worktree / path)
        if actual is None:
            problems.append(f"{name} is missing")
        elif actual != digest:
            problems.append(f"{name} changed (sha256 {actual[:12]}, expected {digest[:12]})")
    return problems


def _write_params(paths: TrialPaths, params: dict[str, Any]) -> None:
    paths.params_file.write_text(json.dumps(params, sort_keys=True, indent=2) + "\n")


def _exit_text(returncode: int) -> str:
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hint = " (often the out-of-memory killer)" if -returncode == signal.SIGKILL else ""
    return f"was killed by {name}{hint}"


def _read_end(path: Path, max_bytes: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _best_effort_fingerprint(spec: TrialSpec, paths: TrialPaths | None) -> Fingerprint:
    worktree = paths.worktree if paths is not None else Path("/nonexistent-arborist-worktree")
    try:
        return take_fingerprint(spec, worktree)
    except Exception:  # a fingerprint is a record, never a reason to lose a trial
        try:
            return Fingerprint(budget_s=float(spec.entrypoint.budget_s))
        except Exception:
            return Fingerprint()
