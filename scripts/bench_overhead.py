"""Benchmark: arborist's per-trial overhead against bare Ray Tune, measured in one run.

Both sides run the same trivial two-step trial (a train command and an evaluate command, each a
fresh Python process) N times, two at a time, on one local Ray:

- bare Ray Tune: a function trainable runs the two commands in the project folder;
- arborist: a full campaign (tree actor, Searcher bridge, worktree per trial, protected-path
  checks, fingerprint, ledger), with a random proposer and one seed per node.

--train-s makes each train step sleep that long first (a stand-in for real training).

Besides trials per second it reports, for arborist:
- the idle slot time per trial (mean, p95): how long a trial held its slot (and so, on a GPU
  cluster, its GPU) outside its train step, from the times each trial's result records (the
  slot taken, each step's command, the result ready); split into the evaluate step and the rest;
- the tree actor's serial time per trial (p50, p99): its suggest() and complete() calls;
- slot use for both sides: the train steps' time over the slots' time (max_concurrent x wall);
- steady throughput for both sides: trials over the span from the first trial's start to the last
  one's end, and the fixed rest of the wall time (starting and ending the run).

Usage: .venv/bin/python scripts/bench_overhead.py [--trials 40] [--train-s 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_CONCURRENT = 2
TRAIN = textwrap.dedent(
    """
    import json, os, time
    time.sleep(TRAIN_S)
    p = json.load(open(os.environ["ARBORIST_PARAMS"]))
    open(os.path.join(os.environ["ARBORIST_OUTPUT_DIR"], "pred.json"), "w").write(json.dumps({"score": -p["x"] ** 2}))
    """
)
EVALUATE = textwrap.dedent(
    """
    import json, os
    pred = json.load(open(os.path.join(os.environ["ARBORIST_OUTPUT_DIR"], "pred.json")))
    open(os.environ["ARBORIST_METRICS_FILE"], "w").write(json.dumps({"score": pred["score"]}))
    """
)


def make_project(root: Path, train_s: float) -> Path:
    project = root / "project"
    project.mkdir(parents=True)
    (project / "train.py").write_text(TRAIN.replace("TRAIN_S", repr(train_s)))
    (project / "evaluate.py").write_text(EVALUATE)
    return project


def bare_tune(project: Path, trials: int, scratch: Path) -> tuple[float, float, float]:
    """Wall seconds, the train steps' seconds summed, and the trials' span (first start to last end)."""
    from ray import tune

    def trainable(config: dict[str, Any]) -> None:
        started_at = time.time()
        out = scratch / f"t{config['i']}"
        out.mkdir(parents=True, exist_ok=True)
        params = out / "params.json"
        params.write_text(json.dumps({"x": config["x"]}))
        env = {"ARBORIST_PARAMS": str(params), "ARBORIST_OUTPUT_DIR": str(out),
               "ARBORIST_METRICS_FILE": str(out / "metrics.json"), "PATH": "/usr/bin:/bin"}
        began = time.perf_counter()
        subprocess.run([sys.executable, "train.py"], cwd=project, env=env, check=True)
        train_s = time.perf_counter() - began
        subprocess.run([sys.executable, "evaluate.py"], cwd=project, env=env, check=True)
        tune.report({**json.loads((out / "metrics.json").read_text()), "train_s": train_s,
                     "started_at": started_at, "finished_at": time.time()})

    start = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"i": tune.grid_search(list(range(trials))), "x": tune.uniform(-1, 1)},
        tune_config=tune.TuneConfig(max_concurrent_trials=MAX_CONCURRENT, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(scratch / "tune"), verbose=0),
    )
    results = tuner.fit()
    wall_s = time.perf_counter() - start
    metrics = [r.metrics for r in results]
    span_s = max(m["finished_at"] for m in metrics) - min(m["started_at"] for m in metrics)
    return wall_s, sum(float(m["train_s"]) for m in metrics), span_s


def arborist_campaign(project: Path, trials: int, root: Path) -> tuple[float, dict[str, Any], list[dict[str, Any]]]:
    """Wall seconds, the campaign's final summary, and each finished trial's result."""
    from orchestrator import campaign, reader
    from orchestrator.config import load_config

    config_path = root / "bench.yaml"
    config_path.write_text(yaml.safe_dump({
        "name": "bench",
        "project": str(project),
        "campaign_dir": str(root / "campaign"),
        "entrypoint": {"train": "python train.py", "evaluate": "python evaluate.py"},
        "metrics": {"score": {"direction": "max", "role": "objective"}},
        "params": {"x": {"type": "float", "low": -1.0, "high": 1.0, "default": 0.5}},
        "protected": ["evaluate.py"],
        "seeds": {"baseline": 1, "max": 1},
        "stats": {"min_seeds": 1},
        "search": {"proposers": [{"type": "random"}], "max_children": trials, "max_open_nodes": 4},
        "budget": {"max_trials": trials, "max_wall_s": 3600},
        "integration": {"enabled": False},
        "ray": {"max_concurrent": MAX_CONCURRENT},
        "packages": [],
    }))
    config = load_config(config_path)
    start = time.perf_counter()
    summary = campaign.run(config, setup=campaign.prepare(config, None))
    wall_s = time.perf_counter() - start
    events = reader.load_events(config)
    return wall_s, summary, [e.data["result"] for e in events if e.type == "trial_finished"]


def idle_slot_s(results: list[dict[str, Any]]) -> dict[str, float]:
    """Per trial: its slot's time (taken until its result was ready) outside its train step."""
    idle, evaluate = [], []
    for result in results:
        steps = result.get("step_times") or {}
        if "train" not in steps:
            continue  # it never trained (a failure before): not a trial the target is about
        train_s = steps["train"][1] - steps["train"][0]
        idle.append(result["finished_at"] - result["started_at"] - train_s)
        evaluate.append(steps["evaluate"][1] - steps["evaluate"][0] if "evaluate" in steps else 0.0)
    if not idle:
        return {}
    ranked = sorted(idle)
    return {
        "mean": round(statistics.fmean(idle), 3),
        "p95": round(ranked[min(len(ranked) - 1, int(0.95 * len(ranked)))], 3),
        "evaluate_step_mean": round(statistics.fmean(evaluate), 3),
        "arborist_mean": round(statistics.fmean(i - e for i, e in zip(idle, evaluate, strict=True)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--train-s", type=float, default=0.0, help="seconds each train step sleeps first")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()

    from cluster.runtime import connect

    connect(None, num_cpus=MAX_CONCURRENT)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = make_project(root, args.train_s)
        bare_s, bare_train_s, bare_span_s = bare_tune(project, args.trials, root / "bare")
        ours_s, summary, results = arborist_campaign(project, args.trials, root)
    ours_train_s = sum(r["step_times"]["train"][1] - r["step_times"]["train"][0]
                       for r in results if "train" in (r.get("step_times") or {}))
    bare_rate, ours_rate = args.trials / bare_s, args.trials / ours_s
    # Between the first trial's start and the last one's end: without the fixed cost of starting and
    # ending (for arborist: the snapshot, the tree actor, the ledger's last writes).
    ours_span_s = max(r["finished_at"] for r in results) - min(r["started_at"] for r in results)
    bare_steady, ours_steady = args.trials / bare_span_s, args.trials / ours_span_s
    figures = {
        "trials": args.trials,
        "train_s": args.train_s,
        "bare_tune_trials_per_s": round(bare_rate, 3),
        "arborist_trials_per_s": round(ours_rate, 3),
        "ratio_arborist_to_bare": round(ours_rate / bare_rate, 3),
        "arborist_overhead_s_per_trial": round((ours_s - bare_s) / args.trials, 3),
        "bare_tune_steady_trials_per_s": round(bare_steady, 3),
        "arborist_steady_trials_per_s": round(ours_steady, 3),
        "steady_ratio_arborist_to_bare": round(ours_steady / bare_steady, 3),
        "arborist_fixed_s": round(ours_s - ours_span_s, 2),
        "bare_tune_fixed_s": round(bare_s - bare_span_s, 2),
        "arborist_idle_slot_s_per_trial": idle_slot_s(results),
        "tree_actor_ms_per_trial": summary.get("tree_actor_ms_per_trial"),
        "slot_use_bare": round(bare_train_s / (MAX_CONCURRENT * bare_s), 3),
        "slot_use_arborist": round(ours_train_s / (MAX_CONCURRENT * ours_s), 3),
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
