"""The anti-repetition memory on real experiment logs, on written pairs, and its speed.

    .venv/bin/python scripts/bench_memory.py [--split report] [--remembered 100000] [--checks 1000]
                                             [--misses] [--json FILE]

1. Real logs (tests/data/real_logs/*.yaml, labelled by hand; tests/data/real_logs/README.md):
   each labelled pair judged as a campaign would (the earlier row remembered on its parent,
   the later checked on its own, parents from the log's kept rows). Repeat precision and
   recall; the share of sweep steps and near misses judged a repeat; the share of revisits
   judged a revisit, of sweep steps judged a sweep step. Then each log replayed in order
   through one memory: rows rejected against the log's true repeats. `--split` picks the
   repositories: `report` (held out: the figures in docs/benchmarks.md), `tune` (what the
   rules and thresholds were tuned on), or `all`.
2. The written pairs of tests/data/hypothesis_pairs.yaml (same parent: duplicate = repeat).
3. Latency: --remembered proposals in memory (a fifth params deltas, the rest real log rows of
   250 characters or more, every number redrawn), then --checks new ones: p50 and p99 of
   entry() + check(), and of remember().
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.change import Change
from orchestrator.memory import Memory
from orchestrator.memory.replay import LogRow, judge_pair, replay

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
PAIRS = DATA / "hypothesis_pairs.yaml"
LOGS = DATA / "real_logs"
LONG = 250  # characters: the latency run's hypotheses are real rows at least this long
EXPECTED = {"repeat": "repeat", "revisit": "revisit", "sweep-step": "sweep-step", "near-miss": "new",
            "different": "new"}


# ----- real logs ----------------------------------------------------------------------------
def split_of(repo: str) -> str:
    """tune or report, fixed per repository whatever other logs there are (README.md there)."""
    return "tune" if int(hashlib.sha256(repo.encode()).hexdigest()[0], 16) % 2 == 0 else "report"


def load_logs(directory: Path = LOGS) -> list[dict[str, Any]]:
    """Every labelled log, with its split."""
    logs = [yaml.safe_load(path.read_text()) for path in sorted(directory.glob("*.yaml"))]
    for log in logs:
        log["split"] = split_of(log["repo"])
        log["rows"] = [LogRow(int(r["row"]), str(r["status"]), str(r["description"])) for r in log["rows"]]
    return logs


def judge_logs(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    judged = []
    for log in logs:
        for earlier, later, label, why in log["pairs"]:
            verdict = judge_pair(log["rows"], earlier, later, notes=log.get("metrics") or ())
            judged.append({"repo": log["repo"], "a": earlier, "b": later, "label": label, "why": why,
                           "verdict": verdict.kind, "reason": verdict.reason})
    return judged


def pair_scores(judged: list[dict[str, Any]]) -> dict[str, Any]:
    said_repeat = [p for p in judged if p["verdict"] == "repeat"]
    true_repeat = [p for p in judged if p["label"] == "repeat"]
    tp = sum(p["label"] == "repeat" for p in said_repeat)
    by_label = Counter(p["label"] for p in judged)

    def share(label: str, verdict: str) -> float:
        hits = sum(p["label"] == label and p["verdict"] == verdict for p in judged)
        return hits / by_label[label] if by_label[label] else float("nan")

    confusion = Counter((p["label"], p["verdict"]) for p in judged)
    return {
        "pairs": len(judged), "repos": len({p["repo"] for p in judged}), "labels": dict(by_label),
        "repeat_precision": tp / len(said_repeat) if said_repeat else 1.0,
        "repeat_recall": tp / len(true_repeat) if true_repeat else float("nan"),
        "sweep_as_repeat": share("sweep-step", "repeat"), "near_miss_as_repeat": share("near-miss", "repeat"),
        "different_as_repeat": share("different", "repeat"),
        "revisit_as_revisit": share("revisit", "revisit"), "sweep_as_sweep": share("sweep-step", "sweep-step"),
        "exact": sum(EXPECTED[p["label"]] == p["verdict"] for p in judged) / max(1, len(judged)),
        "confusion": {f"{label} -> {verdict}": n for (label, verdict), n in sorted(confusion.items())},
    }


def replay_scores(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for log in logs:
        rows = log["rows"]
        repeats = {b for _, b, label, _ in log["pairs"] if label == "repeat"}
        verdicts = replay(rows, notes=log.get("metrics") or ())
        rejected = {row.row for row, v in zip(rows, verdicts, strict=True) if v.duplicate}
        allowed = len(repeats) + 0.02 * len(rows)
        out.append({"repo": log["repo"], "rows": len(rows), "true_repeats": len(repeats), "rejected": len(rejected),
                    "wrongly_rejected": len(rejected - repeats), "missed": len(repeats - rejected),
                    "allowed": round(allowed, 2), "met": len(rejected) <= allowed,
                    "revisits": sum(v.kind == "revisit" for v in verdicts),
                    "sweep_steps": sum(v.kind == "sweep-step" for v in verdicts)})
    return out


# ----- written pairs ------------------------------------------------------------------------
def load_pairs(path: Path = PAIRS) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text())["pairs"])


def judge(pair: dict[str, Any]) -> bool:
    memory = Memory()
    memory.remember(memory.entry(_change(pair["a"]), "n0", {}), "p1")
    return memory.check(memory.entry(_change(pair["b"]), "n0", {})).duplicate


def _change(side: dict[str, str]) -> Change:
    return Change(kind="code", aspect=side["aspect"], hypothesis=side["hypothesis"], proposer="bench", diff="")


def scores(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    tp = fp = fn = 0
    for pair in pairs:
        said = judge(pair)
        tp += said and pair["duplicate"]
        fp += said and not pair["duplicate"]
        fn += (not said) and pair["duplicate"]
    return {
        "pairs": len(pairs), "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0, "tp": tp, "fp": fp, "fn": fn,
    }


# ----- latency with real-length hypotheses --------------------------------------------------
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def redrawn(rng: random.Random, text: str) -> str:
    """A real row with every number redrawn: the same wording, other experiments."""
    def draw(match: re.Match[str]) -> str:
        fraction = f".{rng.randrange(100)}" if "." in match.group() else ""
        return f"{rng.choice([1, 2, 3, 5, 8])}{rng.randrange(10) if rng.random() < 0.5 else ''}{fraction}"

    return _NUMBER.sub(draw, text)


def latency(remembered: int, checks: int, texts: list[str], seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    memory = Memory(notes=("val_bpb", "val_loss", "mfu"))

    def change(i: int) -> Change:
        if i % 5 == 0:
            name = f"{rng.choice(['encoder', 'head', 'mixer', 'embed'])}.{rng.choice(['lr', 'wd', 'dropout'])}"
            return Change(kind="params", aspect=name, hypothesis="", proposer="bench",
                          params={name: 10 ** rng.uniform(-6, 1)})
        return Change(kind="code", aspect="code", hypothesis=redrawn(rng, rng.choice(texts)), proposer="bench",
                      diff=f"--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 0\n+x = {i}\n")

    remember_ms: list[float] = []
    for i in range(remembered):
        entry = memory.entry(change(i), f"n{i % 500}", {}, lineage=("n0",))
        t0 = time.perf_counter()
        memory.remember(entry, f"p{i}", f"n{i}")
        remember_ms.append((time.perf_counter() - t0) * 1000)
    check_ms: list[float] = []
    lengths: list[int] = []
    kinds: Counter[str] = Counter()
    for i in range(checks):
        proposal = change(remembered + i)
        t0 = time.perf_counter()
        verdict = memory.check(memory.entry(proposal, f"n{i % 500}", {}, lineage=("n0",)))
        check_ms.append((time.perf_counter() - t0) * 1000)
        lengths.append(len(proposal.hypothesis))
        kinds[verdict.kind] += 1
    code_lengths = [n for n in lengths if n]
    return {
        "remembered": remembered, "checks": checks, "verdicts": dict(kinds),
        "hypothesis_chars_median": statistics.median(code_lengths), "hypothesis_chars_max": max(code_lengths),
        "p50_ms": _quantile(check_ms, 0.5), "p99_ms": _quantile(check_ms, 0.99),
        "remember_mean_ms": statistics.fmean(remember_ms), "remember_p99_ms": _quantile(remember_ms, 0.99),
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ----- main ---------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("report", "tune", "all"), default="report")
    parser.add_argument("--remembered", type=int, default=100_000, help="proposals in memory for the latency run")
    parser.add_argument("--checks", type=int, default=1000, help="new proposals checked for the latency run")
    parser.add_argument("--misses", action="store_true", help="print the real-log pairs judged wrong")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {"split": args.split}
    all_logs = load_logs()
    logs = [log for log in all_logs if args.split == "all" or log["split"] == args.split]
    if logs:
        judged = judge_logs(logs)
        s = pair_scores(judged)
        results["real_pairs"] = s
        print(f"real logs ({args.split}: {s['repos']} repositories, {s['pairs']} pairs {s['labels']})")
        print(f"  repeat precision {s['repeat_precision']:.3f}  recall {s['repeat_recall']:.3f}  "
              f"sweep-step judged repeat {s['sweep_as_repeat']:.3f}  near-miss judged repeat "
              f"{s['near_miss_as_repeat']:.3f}  different judged repeat {s['different_as_repeat']:.3f}")
        print(f"  revisit judged revisit {s['revisit_as_revisit']:.3f}  sweep-step judged sweep-step "
              f"{s['sweep_as_sweep']:.3f}  all verdicts as labelled {s['exact']:.3f}")
        print("  " + ", ".join(f"{k}: {v}" for k, v in s["confusion"].items()))
        replays = replay_scores(logs)
        results["replay"] = replays
        met = sum(r["met"] for r in replays)
        print(f"  replay: {met} of {len(replays)} logs reject no more than their true repeats + 2% of rows")
        for r in replays:
            print(f"    {r['repo']:50s} rows {r['rows']:3d}  true repeats {r['true_repeats']:2d}  rejected "
                  f"{r['rejected']:2d} (wrongly {r['wrongly_rejected']}, missed {r['missed']})  allowed "
                  f"{r['allowed']:.1f}  {'met' if r['met'] else 'NOT met'}  revisits {r['revisits']}  "
                  f"sweep steps {r['sweep_steps']}")
        if args.misses:
            for p in judged:
                if p["verdict"] != EXPECTED[p["label"]]:
                    log = next(log for log in logs if log["repo"] == p["repo"])
                    text = {row.row: row.description for row in log["rows"]}
                    print(f"  [{p['label']} -> {p['verdict']}] {p['repo']} {p['a']}/{p['b']} ({p['why']})\n"
                          f"      a: {text[p['a']][:160]!r}\n      b: {text[p['b']][:160]!r}\n"
                          f"      {p['reason'][:200]}")
    pairs = load_pairs()
    for split in ("dev", "test", "all"):
        s = scores([p for p in pairs if split == "all" or p["split"] == split])
        results[f"written_{split}"] = s
        print(f"written pairs {split:4s} {s['pairs']:3d}  precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
              f"(tp {s['tp']}, fp {s['fp']}, fn {s['fn']})")
    if args.remembered > 0:
        # Real length: the rows of 250 characters and more (hypotheses with their notes)
        texts = [row.description for log in all_logs for row in log["rows"] if len(row.description) >= LONG]
        lat = latency(args.remembered, args.checks, texts)
        results["latency"] = lat
        print(f"latency with {lat['remembered']:,} remembered (real-log rows, values redrawn; hypotheses median "
              f"{lat['hypothesis_chars_median']:.0f}, max {lat['hypothesis_chars_max']} chars), {lat['checks']:,} "
              f"checks {lat['verdicts']}: entry + check p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms; "
              f"remember mean {lat['remember_mean_ms']:.3f} ms, p99 {lat['remember_p99_ms']:.3f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
