"""Benchmark: the scratch disk a worker uses per trial, measured on real trials.

N trials of the digits example (a scikit-learn MLP; train imports numpy, scipy and
scikit-learn, evaluate numpy) run one after another with the real runner, in real worktrees
of a real campaign repository, under the sandbox this machine gives (bubblewrap where it
works). After each trial the scratch folder is measured: bytes on disk (allocated blocks, as
du counts them) and bytecode files, split into the trial folders, the shared bytecode cache and
the rest (the cached repository and bundle).

Usage: .venv/bin/python scripts/bench_scratch.py [--trials 10] [--sandbox auto|bwrap|none]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trials  # noqa: E402
from trials.hashing import hash_path  # noqa: E402
from trials.runner import run_trial  # noqa: E402
from trials.spec import EntrypointSpec, MetricSpec, SandboxSpec, TrialSpec, TrialState  # noqa: E402
from trials.worktree import CampaignRepo, snapshot_project  # noqa: E402

DIGITS = ROOT / "examples" / "digits"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "none"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="arborist-bench-scratch-") as tmp:
        base = Path(tmp)
        commit = snapshot_project(DIGITS / "project", base / "campaign" / "repo")
        repo = CampaignRepo(base / "campaign" / "repo")
        bundle = base / "campaign" / "snapshot.bundle"
        bundle_id = repo.bundle(bundle)
        data = bundle.read_bytes()
        heldout = str((DIGITS / "heldout" / "test.npz").resolve())
        protected = {p: h for p, h in repo.protected_hashes(commit, ["evaluate.py", "data"]).items() if h}
        protected[heldout] = hash_path(Path(heldout)) or ""
        scratch = base / "scratch"
        spec = TrialSpec(
            trial_id="t",
            node_id="n",
            seed=0,
            params={"max_iter": 5},
            base_commit=commit,
            bundle_id=bundle_id,
            chain=[],
            entrypoint=EntrypointSpec(
                train=f"{sys.executable} train.py",
                evaluate=f"{sys.executable} evaluate.py",
                budget_s=120,
                evaluate_budget_s=60,
                evaluate_env={"DIGITS_HELDOUT": heldout},
            ),
            metrics=[MetricSpec("accuracy")],
            protected=protected,
            scratch_dir=str(scratch),
            sandbox=SandboxSpec(mode=args.sandbox),
        )
        rows: list[dict[str, Any]] = []
        for i in range(args.trials):
            one = TrialSpec.from_dict({**spec.to_dict(), "trial_id": f"t{i}", "seed": i})
            started = time.perf_counter()
            result = run_trial(one, lambda _id: data)
            elapsed = time.perf_counter() - started
            if result.state is not TrialState.COMPLETE:
                print(f"trial {one.trial_id} did not complete: {result.message}", file=sys.stderr)
                return 1
            rows.append({"trial": i, "seconds": round(elapsed, 2), "sandbox": result.sandbox, **_measure(scratch)})
    growth = [b["bytes"] - a["bytes"] for a, b in itertools.pairwise(rows)]
    summary = {
        "code": str(Path(trials.__file__).parent.parent),  # which arborist was measured
        "trials": args.trials,
        "sandbox": rows[0]["sandbox"],
        "scratch_mb_after_each_trial": [round(r["bytes"] / 1e6, 1) for r in rows],
        "trial_folders_mb_after_each_trial": [round(r["trials_bytes"] / 1e6, 1) for r in rows],
        "shared_cache_mb_after_each_trial": [round(r["shared_pycache_bytes"] / 1e6, 1) for r in rows],
        "pyc_files_in_trial_folders": rows[-1]["trials_pyc"],
        "pyc_files_in_shared_cache": rows[-1]["shared_pycache_pyc"],
        "trial_folders_left": rows[-1]["trial_folders"],
        "mb_growth_per_trial_after_the_first": round(statistics.mean(growth) / 1e6, 2) if growth else None,
        "seconds_first_trial": rows[0]["seconds"],
        "seconds_per_trial_after_the_first": round(statistics.median(r["seconds"] for r in rows[1:]), 2)
        if len(rows) > 1
        else None,
    }
    print(json.dumps(summary, indent=2))
    return 0


def _measure(scratch: Path) -> dict[str, Any]:
    parts = {"trials": scratch / "trials", "shared_pycache": scratch / "pycache"}
    out: dict[str, Any] = {"bytes": _usage(scratch)[0]}
    for name, path in parts.items():
        out[f"{name}_bytes"], out[f"{name}_pyc"] = _usage(path)
    out["trial_folders"] = len(list(parts["trials"].iterdir())) if parts["trials"].is_dir() else 0
    return out


def _usage(path: Path) -> tuple[int, int]:
    """(bytes allocated on disk, .pyc files) under path, each inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = pyc = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
            pyc += name.endswith(".pyc") and not os.path.islink(os.path.join(dirpath, name))
    return total, pyc


if __name__ == "__main__":
    raise SystemExit(main())
