"""Benchmark: arborist's decision rule against greedy keep/discard, paired greedy and random search,
on the simulated campaigns of orchestrator/simulator.py: the named scenarios, the scenario grid, or both.

Every rule sees the same scenarios, trial budget, drift and machines, in one run. arborist's row
runs the real engine, statistics and policy; the baselines are what single-run agent loops do.
Rows are deterministic for a given seed range (tune on one range, report on another); progress
lines, with CPU time per campaign, go to stderr as each scenario and rule finishes.

Usage: .venv/bin/python scripts/bench_decisions.py [--campaigns 300] [--first-seed 10000]
           [--scenarios S,drift,...] [--grid] [--rules arborist,greedy-1,...] [--workers 2]
           [--concurrent 1] [--open-nodes N] [--integration] [--markdown FILE] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.simulator import (  # noqa: E402
    SCENARIOS,
    CampaignOutcome,
    Scenario,
    default_sim_config,
    greedy_campaign,
    grid,
    paired_greedy_campaign,
    random_search_campaign,
    simulate_campaign,
    summarize,
)

RULES = ("arborist", "greedy-1", "greedy-3", "paired-greedy", "random-3")
REFERENCE = "greedy-3"  # every row's gain is also given as a ratio to this rule's
CHUNK = 10  # campaigns per task: small enough to spread a cell over the workers


@dataclass(frozen=True)
class Setup:
    """How arborist's campaigns are configured (the baselines have no such choices)."""

    concurrent: int = 1
    open_nodes: int | None = None
    integration: bool = False


def run_campaign(rule: str, scenario: Scenario, seed: int, setup: Setup) -> CampaignOutcome:
    if rule == "arborist":
        config = default_sim_config(
            scenario, setup.concurrent, open_nodes=setup.open_nodes, integration=setup.integration
        )
        return simulate_campaign(config, scenario, seed)
    if rule == "greedy-1":
        return greedy_campaign(scenario, seed, 1)
    if rule == "greedy-3":
        return greedy_campaign(scenario, seed, 3)
    if rule == "paired-greedy":
        return paired_greedy_campaign(scenario, seed, 3)
    if rule == "random-3":
        return random_search_campaign(scenario, seed, 3)
    raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")


def _batch(rule: str, scenario: Scenario, seeds: list[int], setup: Setup) -> tuple[list[CampaignOutcome], float]:
    start = time.process_time()
    outcomes = [run_campaign(rule, scenario, s, setup) for s in seeds]
    return outcomes, time.process_time() - start


def run(
    scenarios: list[Scenario], rules: list[str], seeds: list[int], setup: Setup, workers: int
) -> list[dict[str, Any]]:
    """A row per scenario and rule, in that order; cells are spread over `workers` processes."""
    chunks = [seeds[i : i + CHUNK] for i in range(0, len(seeds), CHUNK)]
    cells = [(scenario, rule) for scenario in scenarios for rule in rules]
    parts: dict[int, list[tuple[int, list[CampaignOutcome]]]] = defaultdict(list)
    cpu: dict[int, float] = defaultdict(float)
    rows: dict[int, dict[str, Any]] = {}
    start = time.perf_counter()

    def finish(cell: int, chunk: int, outcomes: list[CampaignOutcome], seconds: float) -> None:
        parts[cell].append((chunk, outcomes))
        cpu[cell] += seconds
        if len(parts[cell]) < len(chunks):
            return
        scenario, rule = cells[cell]
        ordered = [o for _, part in sorted(parts.pop(cell), key=lambda p: p[0]) for o in part]
        row = summarize(rule, scenario, ordered).row()
        row["signal"] = scenario.signal
        row["cpu_s_per_campaign"] = round(cpu[cell] / len(ordered), 4)
        rows[cell] = row
        print(
            f"[{len(rows)}/{len(cells)} {time.perf_counter() - start:7.1f} s] {scenario.name} {rule}: "
            f"pooled false share {row['fdr']:.3f}, gain {row['mean_true_gain']:.2f} sigma, "
            f"{row['cpu_s_per_campaign']:.3f} CPU-s per campaign",
            file=sys.stderr,
            flush=True,
        )

    if workers <= 1:
        for cell, (scenario, rule) in enumerate(cells):
            for chunk, part in enumerate(chunks):
                finish(cell, chunk, *_batch(rule, scenario, part, setup))
    else:
        with ProcessPoolExecutor(workers) as pool:
            futures: dict[Future[tuple[list[CampaignOutcome], float]], tuple[int, int]] = {
                pool.submit(_batch, rule, scenario, part, setup): (cell, chunk)
                for cell, (scenario, rule) in enumerate(cells)
                for chunk, part in enumerate(chunks)
            }
            pending = set(futures)
            while pending:
                done, pending = wait_for(pending, return_when="FIRST_COMPLETED")
                for future in done:
                    finish(*futures[future], *future.result())
    ordered_rows = [rows[cell] for cell in range(len(cells))]
    _add_ratios(ordered_rows)
    return ordered_rows


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    reference = {r["scenario"]: r["mean_true_gain"] for r in rows if r["rule"] == REFERENCE}
    for row in rows:
        base = reference.get(row["scenario"])
        row[f"gain_ratio_to_{REFERENCE}"] = (
            round(row["mean_true_gain"] / base, 3) if base is not None and base > 0 else None
        )


def _interval(value: float, ci: list[float], digits: int) -> str:
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        f"| scenario | signal | rule | campaigns | pooled false share [95% CI] | mean FDP [95% CI] "
        f"| share promoting any [95% CI] | gain σ [95% CI] | gain / {REFERENCE} | trials |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r[f"gain_ratio_to_{REFERENCE}"]
        pooled = _interval(r["fdr"], r["fdr_ci"], 3) if r["promoted"] else "– (none promoted)"
        lines.append(
            f"| {r['scenario']} | {r['signal']} | {r['rule']} | {r['campaigns']} | {pooled} "
            f"| {_interval(r['mean_fdp'], r['mean_fdp_ci'], 3)} "
            f"| {_interval(r['share_promoting_any'], r['share_promoting_any_ci'], 2)} "
            f"| {_interval(r['mean_true_gain'], r['mean_true_gain_ci'], 2)} "
            f"| {'–' if ratio is None or math.isnan(ratio) else f'{ratio:.2f}×'} | {r['mean_trials']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=300)
    parser.add_argument("--first-seed", type=int, default=10_000, help="campaign seeds: first-seed, first-seed+1, ...")
    parser.add_argument(
        "--scenarios", default=None, help=f"named scenarios, comma-separated (default: all of {', '.join(SCENARIOS)})"
    )
    parser.add_argument("--grid", action="store_true", help="run the scenario grid (with --scenarios: both)")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrent", type=int, default=1, help="arborist's trials running at once")
    parser.add_argument("--open-nodes", type=int, default=None, help="arborist's changes under test at once")
    parser.add_argument("--integration", action="store_true", help="arborist grafts its branch winners at the end")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table to this file")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    args = parser.parse_args()

    names = args.scenarios.split(",") if args.scenarios else ([] if args.grid else list(SCENARIOS))
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    rules = args.rules.split(",")
    if any(r not in RULES for r in rules):
        parser.error(f"--rules: known rules are {', '.join(RULES)}")
    scenarios = [SCENARIOS[n] for n in names] + (grid() if args.grid else [])
    seeds = list(range(args.first_seed, args.first_seed + args.campaigns))
    setup = Setup(args.concurrent, args.open_nodes, args.integration)

    start = time.perf_counter()
    rows = run(scenarios, rules, seeds, setup, args.workers)
    seconds = round(time.perf_counter() - start, 1)
    header = (
        f"Campaign seeds {seeds[0]}–{seeds[-1]}; arborist: {setup.concurrent} trial(s) at once, "
        f"{setup.open_nodes or setup.concurrent} change(s) under test at once, "
        f"integration {'on' if setup.integration else 'off'}."
    )
    if args.markdown is not None:
        args.markdown.write_text(markdown(rows, header))
    if args.json:
        report = {"campaigns": args.campaigns, "first_seed": args.first_seed, "setup": setup.__dict__, "rows": rows}
        print(json.dumps({**report, "seconds": seconds}, indent=2))
    elif args.markdown is None:
        print(markdown(rows, header))
    print(f"done in {seconds} s", file=sys.stderr)


if __name__ == "__main__":
    main()
