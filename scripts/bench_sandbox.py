"""Benchmark: what the trial sandbox costs per trial, measured in one run.

The same trivial trial (a train command and an evaluate command, each a fresh Python process,
in a real worktree of a real campaign repository) runs N times with sandbox.mode none and N
times under bubblewrap, interleaved so that machine load hits both alike. A trial's time is
mostly git and processes, so the cost of one sandboxed step (`python -c pass` through
run_command, bare and wrapped) is measured on its own too.

Usage: .venv/bin/python scripts/bench_sandbox.py [--trials 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trials.process import run_command  # noqa: E402
from trials.runner import run_trial  # noqa: E402
from trials.sandbox import Room, bwrap_problem, wrap  # noqa: E402
from trials.spec import EntrypointSpec, MetricSpec, SandboxSpec, TrialSpec, TrialState  # noqa: E402
from trials.worktree import CampaignRepo, snapshot_project  # noqa: E402

TRAIN = textwrap.dedent(
    """
    import json, os
    open(os.path.join(os.environ["ARBORIST_OUTPUT_DIR"], "pred.json"), "w").write(json.dumps({"score": 1.0}))
    """
)
EVALUATE = textwrap.dedent(
    """
    import json, os
    pred = json.load(open(os.path.join(os.environ["ARBORIST_OUTPUT_DIR"], "pred.json")))
    json.dump({"score": pred["score"]}, open(os.environ["ARBORIST_METRICS_FILE"], "w"))
    """
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="trials per mode")
    args = parser.parse_args()
    problem = bwrap_problem()
    if problem is not None:
        print(f"bubblewrap cannot run here ({problem}); nothing to compare", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="arborist-bench-sandbox-") as tmp:
        base = Path(tmp)
        project = base / "project"
        project.mkdir()
        (project / "train.py").write_text(TRAIN)
        (project / "evaluate.py").write_text(EVALUATE)
        commit = snapshot_project(project, base / "campaign" / "repo")
        repo = CampaignRepo(base / "campaign" / "repo")
        bundle = base / "campaign" / "snapshot.bundle"
        bundle_id = repo.bundle(bundle)
        data = bundle.read_bytes()
        spec = TrialSpec(
            trial_id="t",
            node_id="n",
            seed=0,
            params={},
            base_commit=commit,
            bundle_id=bundle_id,
            chain=[],
            entrypoint=EntrypointSpec(train=f"{sys.executable} train.py", evaluate=f"{sys.executable} evaluate.py"),
            metrics=[MetricSpec("score")],
            protected={p: h for p, h in repo.protected_hashes(commit, ["evaluate.py"]).items() if h},
            scratch_dir=str(base / "scratch"),
        )
        times: dict[str, list[float]] = {"none": [], "bwrap": []}
        for i in range(args.trials + 1):  # the first round warms the cached repository
            for mode in times:
                one = replace(spec, trial_id=f"{mode}-{i}", sandbox=SandboxSpec(mode=mode))
                started = time.perf_counter()
                result = run_trial(one, lambda _id: data)
                elapsed = time.perf_counter() - started
                if result.state is not TrialState.COMPLETE or result.sandbox != mode:
                    print(f"trial {one.trial_id} did not complete: {result.message}", file=sys.stderr)
                    return 1
                if i:
                    times[mode].append(elapsed)
        steps = _step_times(base, args.trials * 3)
    trial = {mode: statistics.median(v) for mode, v in times.items()}
    step = {mode: statistics.median(v) for mode, v in steps.items()}
    summary: dict[str, Any] = {
        "trial_median_s": {mode: round(v, 4) for mode, v in trial.items()},
        "bwrap_cost_per_trial_s": round(trial["bwrap"] - trial["none"], 4),
        "step_median_s": {mode: round(v, 4) for mode, v in step.items()},
        "bwrap_cost_per_step_s": round(step["bwrap"] - step["none"], 4),
    }
    print(json.dumps({"trials_per_mode": args.trials, **summary}, indent=2))
    return 0


def _step_times(base: Path, n: int) -> dict[str, list[float]]:
    argv = [sys.executable, "-c", "pass"]
    room = Room(cwd=base, writable=[base])
    times: dict[str, list[float]] = {"none": [], "bwrap": []}
    for _ in range(n):
        for mode, command in (("none", argv), ("bwrap", wrap(argv, room))):
            started = time.perf_counter()
            outcome = run_command(command, cwd=base, env={}, budget_s=30, log_path=base / "step.log",
                                  contained=mode == "bwrap")
            times[mode].append(time.perf_counter() - started)
            assert outcome.returncode == 0, outcome.output_tail
    return times


if __name__ == "__main__":
    raise SystemExit(main())
