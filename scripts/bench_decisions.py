"""Benchmark: arborist's decision rule against greedy keep/discard and random search, on the
simulated campaigns of orchestrator/simulator.py (scenario S and the robustness scenarios).

Every rule sees the same scenarios and trial budget, in one run. arborist's row runs the real
engine, statistics and policy; the baselines are what single-run agent loops do.

Usage: .venv/bin/python scripts/bench_decisions.py [--campaigns 300] [--first-seed 10000]
           [--scenarios S,heavy_tails,node_noise,sigma_x2,all_null] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.simulator import (  # noqa: E402
    SCENARIOS,
    CampaignOutcome,
    default_sim_config,
    greedy_campaign,
    random_search_campaign,
    simulate_campaign,
    summarize,
)

RULES = ("arborist", "greedy-1", "greedy-3", "random-3")


def _run(rule: str, scenario_name: str, seed: int) -> CampaignOutcome:
    scenario = SCENARIOS[scenario_name]
    if rule == "arborist":
        return simulate_campaign(default_sim_config(scenario), scenario, seed)
    if rule == "greedy-1":
        return greedy_campaign(scenario, seed, 1)
    if rule == "greedy-3":
        return greedy_campaign(scenario, seed, 3)
    return random_search_campaign(scenario, seed, 3)


def _batch(args: tuple[str, str, list[int]]) -> list[CampaignOutcome]:
    rule, scenario, seeds = args
    return [_run(rule, scenario, s) for s in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=300)
    parser.add_argument("--first-seed", type=int, default=10_000, help="campaign seeds: first-seed, first-seed+1, ...")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    seeds = list(range(args.first_seed, args.first_seed + args.campaigns))
    chunks = [seeds[i::args.workers] for i in range(args.workers)]
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        for name in args.scenarios.split(","):
            for rule in RULES:
                t0 = time.perf_counter()
                outcomes = [o for part in pool.map(_batch, [(rule, name, c) for c in chunks]) for o in part]
                row = summarize(rule, SCENARIOS[name], outcomes).row()
                row["seconds"] = round(time.perf_counter() - t0, 1)
                rows.append(row)
                if not args.json:
                    print(_line(row), flush=True)
    for name in args.scenarios.split(","):
        ours = next(r for r in rows if r["scenario"] == name and r["rule"] == "arborist")
        greedy = max((r for r in rows if r["scenario"] == name and r["rule"].startswith("greedy")),
                     key=lambda r: r["mean_true_gain"])
        ratio = ours["mean_true_gain"] / greedy["mean_true_gain"] if greedy["mean_true_gain"] > 0 else float("nan")
        ours["gain_ratio_to_best_greedy"] = round(ratio, 2)
        if not args.json:
            best = greedy["rule"]
            print(f"{name}: arborist gain / best greedy ({best}) = {ratio:.2f}; arborist FDR {ours['fdr']:.3f}")
    if args.json:
        print(json.dumps({"campaigns": args.campaigns, "first_seed": args.first_seed, "rows": rows,
                          "seconds": round(time.perf_counter() - start, 1)}, indent=2))


def _line(row: dict[str, Any]) -> str:
    return (f"{row['scenario']:>12} {row['rule']:>9}: FDR {row['fdr']:.3f}  gain {row['mean_true_gain']:6.2f} sigma  "
            f"power {row['power']:.2f}  any-promoted {row['share_promoting_any']:.2f}  "
            f"trials {row['mean_trials']:.0f}  "
            f"GPU-h {row['mean_gpu_hours']:.0f}  ({row['seconds']} s)")


if __name__ == "__main__":
    main()
