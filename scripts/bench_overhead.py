"""Benchmark: arborist's per-trial overhead against bare Ray Tune, measured in one run.

Both sides run the same trivial two-step trial (a train command and an evaluate command, each a
fresh Python process) N times, two at a time, on one local Ray:

- bare Ray Tune: a function trainable runs the two commands in the project folder;
- arborist: a full campaign (tree actor, Searcher bridge, worktree per trial, protected-path
  checks, fingerprint, ledger), with a random proposer and one seed per node.

Usage: .venv/bin/python scripts/bench_overhead.py [--trials 40]
"""

from __future__ import annotations

import argparse
import json
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

TRAIN = textwrap.dedent(
    """
    import json, os
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


def make_project(root: Path) -> Path:
    project = root / "project"
    project.mkdir(parents=True)
    (project / "train.py").write_text(TRAIN)
    (project / "evaluate.py").write_text(EVALUATE)
    return project


def bare_tune(project: Path, trials: int, scratch: Path) -> float:
    from ray import tune

    def trainable(config: dict[str, Any]) -> None:
        out = scratch / f"t{config['i']}"
        out.mkdir(parents=True, exist_ok=True)
        params = out / "params.json"
        params.write_text(json.dumps({"x": config["x"]}))
        env = {"ARBORIST_PARAMS": str(params), "ARBORIST_OUTPUT_DIR": str(out),
               "ARBORIST_METRICS_FILE": str(out / "metrics.json"), "PATH": "/usr/bin:/bin"}
        subprocess.run([sys.executable, "train.py"], cwd=project, env=env, check=True)
        subprocess.run([sys.executable, "evaluate.py"], cwd=project, env=env, check=True)
        tune.report(json.loads((out / "metrics.json").read_text()))

    start = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"i": tune.grid_search(list(range(trials))), "x": tune.uniform(-1, 1)},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(scratch / "tune"), verbose=0),
    )
    tuner.fit()
    return time.perf_counter() - start


def arborist_campaign(project: Path, trials: int, root: Path) -> float:
    from orchestrator import campaign
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
        "ray": {"max_concurrent": 2},
        "packages": [],
    }))
    config = load_config(config_path)
    start = time.perf_counter()
    campaign.run(config, setup=campaign.prepare(config, None))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()

    from cluster.runtime import connect

    connect(None, num_cpus=2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = make_project(root)
        bare_s = bare_tune(project, args.trials, root / "bare")
        ours_s = arborist_campaign(project, args.trials, root)
    bare_rate, ours_rate = args.trials / bare_s, args.trials / ours_s
    print(json.dumps({
        "trials": args.trials,
        "bare_tune_trials_per_s": round(bare_rate, 2),
        "arborist_trials_per_s": round(ours_rate, 2),
        "ratio_arborist_to_bare": round(ours_rate / bare_rate, 2),
        "arborist_overhead_s_per_trial": round((ours_s - bare_s) / args.trials, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
