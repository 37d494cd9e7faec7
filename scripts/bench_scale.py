"""Benchmark: arborist at scale, in two parts.

- `--part actor`: the tree actor's serial work with a large tree. A campaign is started for a
  tiny project, its journal is extended with a synthetic history (a wide tree of `--nodes`
  nodes, most pruned on their screening blocks, some promoted), and the campaign is resumed from
  it, as `arborist resume` would. Then `SearchService.suggest` and `complete` are timed in-process
  (the actor's own work, without Ray's call cost) while fake results come back at once, with
  `--concurrent` trials out at a time. The git commit a new node costs is timed apart: it is a
  subprocess whose cost does not grow with the tree.
- `--part sim`: the real engine on the simulator's clock (orchestrator/simulator.py) with
  `--gpus` GPU slots, trials of `--trial-s` simulated seconds, and an LLM proposer whose drafts
  take `--llm-s` simulated seconds (the real ReadyProposer in front of a simulated drafting
  service). It reports the share of GPU-seconds busy over `--window-s`, and the engine's real CPU
  seconds per simulated second (above 1, the actor could not keep up).

Usage: .venv/bin/python scripts/bench_scale.py --part actor [--nodes 100000] [--calls 2000]
       .venv/bin/python scripts/bench_scale.py --part sim [--gpus 1024] [--window-s 3600]
       add --json for one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import textwrap
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.campaign import prepare  # noqa: E402
from orchestrator.config import CampaignConfig  # noqa: E402
from orchestrator.search import SearchService  # noqa: E402
from orchestrator.simulator import SCENARIOS, SimulatedDrafts, sim_config, simulate  # noqa: E402
from orchestrator.tree import ROOT_ID, Event, SearchTree, trial_id_for  # noqa: E402
from trials.spec import TrialResult, TrialState  # noqa: E402

ACTOR_P99_TARGET_MS = 2.0
SIM_BUSY_TARGET = 0.98
LIVE_BUSY_TARGET = 0.95

TRAIN = textwrap.dedent(
    """
    import json, os
    p = json.load(open(os.environ["ARBORIST_PARAMS"]))
    print("score:", -(p["x"] - 3) ** 2)
    """
)


def make_project(root: Path) -> Path:
    project = root / "project"
    project.mkdir(parents=True)
    (project / "train.py").write_text(TRAIN)
    return project


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


# ----- part 1: the tree actor with a large tree ---------------------------------------------
def actor_config(tmp: Path, concurrent: int) -> dict[str, Any]:
    return {
        "name": "scale",
        "project": str(make_project(tmp)),
        "campaign_dir": str(tmp / "campaign"),
        "entrypoint": {"train": "python train.py"},
        "metrics": {"score": {"direction": "max", "role": "objective", "regex": r"score:\s*(\S+)"}},
        "params": {"x": {"type": "float", "low": 0.0, "high": 6.0, "default": 1.0}},
        "seeds": {"baseline": 3, "max": 8},
        "search": {"proposers": [{"type": "random"}], "max_children": 10_000, "max_open_nodes": concurrent},
        "budget": {"max_trials": 10_000_000, "max_wall_s": 1e9},
        "ray": {"max_concurrent": concurrent},
        "packages": [],
    }


def fake_result(trial_id: str, node_id: str, seed: int, value: float, at: float) -> dict[str, Any]:
    """A finished trial as a worker reports it (one second long)."""
    result = TrialResult(trial_id=trial_id, node_id=node_id, seed=seed, state=TrialState.COMPLETE,
                         metrics={"score": value}, started_at=at - 1.0, finished_at=at, worker="bench")
    return result.to_dict()


def synthesize_history(tree: SearchTree, nodes: int, rng: random.Random) -> None:
    """Grow the tree to `nodes` nodes by recording what a long campaign journals: siblings
    proposed in groups, each group sharing two screening blocks with its parent, then decided
    (one in twenty promoted, the rest pruned). The baseline is measured first."""
    clock = [tree.last_ts]

    def record(type_: str, **data: Any) -> None:
        clock[0] += 0.001
        tree.record(type_, **data)

    def run(node_ids: list[str], seed: int, means: dict[str, float]) -> None:
        for node_id in node_ids:
            record("trial_started", trial_id=trial_id_for(node_id, seed), node_id=node_id, seed=seed)
        for node_id in node_ids:
            value = means[node_id] + rng.gauss(0, 1)
            record("trial_finished", result=fake_result(trial_id_for(node_id, seed), node_id, seed, value, clock[0]))

    means = {ROOT_ID: 0.0}
    root = tree.root
    run([ROOT_ID], root.seeds[0], means)  # the baseline's seeds were requested at the start
    for seed in root.seeds[1:]:
        run([ROOT_ID], seed, means)
    record("decision", node_id=ROOT_ID, status="BASELINE", reason="baseline measured", evidence={})
    record("incumbent_changed", node_id=ROOT_ID, gain=0.0)
    record("phase_changed", phase="search")
    expandable = [ROOT_ID]
    group = 8
    while len(tree.nodes) < nodes:
        parent = tree.nodes[rng.choice(expandable[-50:])]  # recent promotions are expanded most
        children = []
        for _ in range(min(group, nodes - len(tree.nodes))):
            node_id = tree.next_node_id()
            x = round(rng.uniform(0.0, 6.0), 6)
            change = {"kind": "params", "aspect": "x", "hypothesis": f"x = {x}", "proposer": "random",
                      "params": {"x": x}, "source_id": node_id}
            record("proposal", proposal_id=tree.next_proposal_id(), parent_id=parent.node_id, change=change,
                   verdict="accepted", reason="", node_id=node_id, duplicate_of=None, memory={}, memory_key="")
            record("node_created", node_id=node_id, parent_id=parent.node_id, change=change, commit=parent.commit,
                   params={**parent.params, "x": x}, origin="search")
            means[node_id] = means[parent.node_id] + rng.choice([0.0, 0.0, 0.0, -1.0, 1.0])
            children.append(node_id)
        for _ in range(2):
            block = len(tree.blocks) + 1
            seed = tree.next_seed(0)
            order = [parent.node_id, *children]
            record("block_requested", block=block, parent_id=parent.node_id, node_ids=children, seed=seed,
                   order=order)
            run(order, seed, means)
        for node_id in children:
            diffs = [tree.trials[trial_id_for(node_id, s)].result.metrics["score"]  # type: ignore[union-attr]
                     - tree.trials[trial_id_for(parent.node_id, s)].result.metrics["score"]  # type: ignore[union-attr]
                     for s in tree.nodes[node_id].seeds]
            promoted = rng.random() < 0.05
            record("decision", node_id=node_id, status="PROMOTED" if promoted else "PRUNED",
                   reason="synthetic", evidence={"mean": sum(diffs) / len(diffs), "diffs": diffs,
                                                 "seeds": list(tree.nodes[node_id].seeds)})
            if promoted:
                expandable.append(node_id)


def write_journal(path: Path, events: list[Event]) -> None:
    """Append events to a campaign's journal, one JSON line each, as the ledger writes them."""
    with open(path, "a", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event.to_dict(), default=str) + "\n")


def actor(nodes: int, calls: int, concurrent: int, seed: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="arborist-scale-") as raw:
        tmp = Path(raw)
        config = actor_config(tmp, concurrent)
        validated = CampaignConfig.model_validate(config)
        first = SearchService(config, prepare(validated, None))
        first.close()
        started = time.perf_counter()
        events: list[Event] = []
        tree = SearchTree.replay(first.ledger.load_events(), sink=events.append, clock=time.time)
        synthesize_history(tree, nodes, random.Random(seed))
        write_journal(tmp / "campaign" / "journal.wal", events)
        built_s = time.perf_counter() - started
        del tree, events
        started = time.perf_counter()
        service = SearchService(config, None)
        resume_s = time.perf_counter() - started
        timing = time_calls(service, calls, concurrent, random.Random(seed + 1))
        service.close()
        return {"part": "actor", "nodes": nodes, "trials": len(service.tree.trials), "events": service.tree.last_seq,
                "concurrent": concurrent, "build_s": round(built_s, 1), "resume_s": round(resume_s, 1), **timing}


def time_calls(service: SearchService, calls: int, concurrent: int, rng: random.Random) -> dict[str, Any]:
    """Alternate suggest and complete as a busy cluster would: `concurrent` trials out, the
    oldest reported at once. Each call is timed in wall-clock time and in CPU time (without the
    journal's fsync and other waits); the git commit of each new node is timed on its own and
    taken out of both."""
    workspace = service.engine.workspace
    commits: list[tuple[float, float]] = []  # (wall, cpu) seconds of each node commit
    real_commit = workspace.commit

    def timed_commit(*args: Any) -> str:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return real_commit(*args)
        finally:
            commits.append((time.perf_counter() - wall, time.process_time() - cpu))

    workspace.commit = timed_commit  # type: ignore[method-assign]
    timings: dict[str, list[tuple[float, float]]] = {"suggest": [], "complete": []}

    def timed(name: str, call: Callable[[], Any]) -> Any:
        before = len(commits)
        wall, cpu = time.perf_counter(), time.process_time()
        out = call()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        timings[name].append((wall - sum(c[0] for c in commits[before:]), cpu - sum(c[1] for c in commits[before:])))
        return out

    out: deque[dict[str, Any]] = deque()
    for _ in range(calls):
        while len(out) < concurrent:
            dispatch = timed("suggest", service.suggest)
            if not isinstance(dispatch, dict):
                break
            out.append(dispatch)
        if not out:
            raise RuntimeError("the service handed out nothing with nothing running")
        dispatch = out.popleft()
        spec = dispatch["spec"]
        result = fake_result(spec["trial_id"], spec["node_id"], spec["seed"], rng.gauss(0, 1), time.time())
        if not timed("complete", partial(service.complete, spec["trial_id"], dispatch["token"], result)):
            raise RuntimeError(f"the service refused the result of {spec['trial_id']}")
    figures: dict[str, Any] = {}
    for name, pairs in timings.items():
        wall_ms = [w * 1000 for w, _ in pairs]
        cpu_ms = [c * 1000 for _, c in pairs]
        figures[f"{name}_calls"] = len(pairs)
        for label, values in (("wall", wall_ms), ("cpu", cpu_ms)):
            figures[f"{name}_{label}_p50_ms"] = round(percentile(values, 0.5), 3)
            figures[f"{name}_{label}_p99_ms"] = round(percentile(values, 0.99), 3)
    figures["node_commits"] = len(commits)
    figures["node_commit_wall_p50_ms"] = round(percentile([c[0] for c in commits], 0.5) * 1000, 3)
    figures["target_p99_ms"] = ACTOR_P99_TARGET_MS
    worst = max(figures["suggest_wall_p99_ms"], figures["complete_wall_p99_ms"])
    figures["met"] = worst <= ACTOR_P99_TARGET_MS
    return figures


# ----- part 2: a simulated cluster -----------------------------------------------------------
def sim(gpus: int, window_s: float, trial_s: float, llm_s: float, warmup_s: float, k: int, ready: int,
        parallel: int = 1, seed: int = 0) -> dict[str, Any]:
    """The engine with `gpus` slots on the simulator's clock, its candidates drafted by an LLM
    that answers after `llm_s`; GPU-seconds busy over [warmup_s, warmup_s + window_s], and over
    the whole run from the start (the baseline and the first drafts included)."""
    scenario = replace(SCENARIOS["S"], budget=10**9)
    config = sim_config(scenario, ray={"max_concurrent": gpus}, search={"max_open_nodes": gpus})
    spans: dict[str, list[float]] = {}  # trial -> [started, finished]

    def sink(event: Event) -> None:
        if event.type == "trial_started":
            spans[event.data["trial_id"]] = [event.ts, math.inf]
        elif event.type == "trial_finished":
            spans[event.data["result"]["trial_id"]][1] = event.ts

    # --llm-s 0: candidates come at once (the simulator's own proposer), which shows whether the
    # engine alone keeps the slots full and what CPU time it needs to.
    drafts = SimulatedDrafts(llm_s, k=k, ready=ready, parallel=parallel) if llm_s > 0 else None
    end = warmup_s + window_s
    cpu, wall = time.process_time(), time.perf_counter()
    tree, _ = simulate(config, scenario, seed, sink, drafts=drafts, trial_s=trial_s, until_s=end)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall

    def busy(start: float, stop: float) -> float:
        seconds = sum(max(0.0, min(b, stop) - max(a, start)) for a, b in spans.values())
        return seconds / (gpus * (stop - start))

    share = busy(warmup_s, end)
    return {
        "part": "sim", "gpus": gpus, "trial_s": trial_s, "llm_s": llm_s, "llm_k": k, "llm_ready": ready,
        "llm_parallel": parallel,
        "warmup_s": warmup_s, "window_s": window_s, "trials_started": len(spans), "nodes": len(tree.nodes),
        "llm_requests": drafts.requests if drafts else 0, "busy_share": round(share, 4),
        "busy_share_from_start": round(busy(0.0, end), 4),
        "engine_cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "cpu_s_per_simulated_s": round(cpu / end, 4),
        "target_busy_share": SIM_BUSY_TARGET, "met": share >= SIM_BUSY_TARGET,
    }


# ----- the command line ---------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["actor", "sim"], required=True)
    parser.add_argument("--nodes", type=int, default=100_000, help="actor: nodes in the tree")
    parser.add_argument("--calls", type=int, default=2000, help="actor: trials reported while timing")
    parser.add_argument("--concurrent", type=int, default=64, help="actor: trials out at a time")
    parser.add_argument("--gpus", type=int, default=1024, help="sim: GPU slots")
    parser.add_argument("--window-s", type=float, default=3600.0, help="sim: simulated seconds measured")
    parser.add_argument("--warmup-s", type=float, default=120.0, help="sim: seconds before the window opens")
    parser.add_argument("--trial-s", type=float, default=30.0, help="seconds each trial runs")
    parser.add_argument("--llm-s", type=float, default=20.0,
                        help="seconds the LLM takes to answer (sim, 0: candidates come at once)")
    parser.add_argument("--llm-k", type=int, default=4, help="proposals one LLM call returns (llm k)")
    parser.add_argument("--llm-ready", type=int, default=2, help="proposals kept ready per parent (llm ready)")
    parser.add_argument("--llm-parallel", type=int, default=1,
                        help="sim: LLM requests drafted at once (1: the proposer actor's single thread)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if args.part == "actor":
        out = actor(args.nodes, args.calls, args.concurrent)
    else:
        out = sim(args.gpus, args.window_s, args.trial_s, args.llm_s, args.warmup_s,
                  args.llm_k, args.llm_ready, args.llm_parallel)
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
