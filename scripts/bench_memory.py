"""The anti-repetition memory: how well it tells duplicates from near misses, and how fast.

    .venv/bin/python scripts/bench_memory.py [--remembered 100000] [--checks 1000]

1. Precision and recall of duplicates on the labelled pairs in tests/data/hypothesis_pairs.yaml
   (dev rows, test rows, all), with the default config (no embedding model).
2. Latency of one check (entry + check) with --remembered proposals in memory; p50 and p99.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.change import Change
from orchestrator.memory import Memory

PAIRS = Path(__file__).resolve().parents[1] / "tests" / "data" / "hypothesis_pairs.yaml"


def load_pairs() -> list[dict[str, Any]]:
    data = yaml.safe_load(PAIRS.read_text())
    pairs = [
        {"a": (r[0], r[1]), "b": (r[2], r[3]), "duplicate": bool(r[4]), "kind": r[5],
         "split": "dev" if i % 2 == 0 else "test"}
        for i, r in enumerate(data["pairs"])
    ]
    pairs += [
        {"a": (r[0], r[1]), "b": (r[2], r[3]), "duplicate": bool(r[4]), "kind": r[5], "split": "holdout"}
        for r in data.get("holdout", [])
    ]
    return pairs


def judge(pair: dict[str, Any], memory: Memory | None = None) -> bool:
    memory = memory or Memory()
    first = _change(*pair["a"])
    memory.remember(memory.entry(first, "n0", {}), "p1")
    return memory.check(memory.entry(_change(*pair["b"]), "n0", {})).duplicate


def _change(aspect: str, hypothesis: str) -> Change:
    # Each its own diff: the pairs measure how hypotheses are judged, not diffs.
    return Change(kind="code", aspect=aspect, hypothesis=hypothesis, proposer="bench", diff=f"+x = {hypothesis!r}\n")


def scores(pairs: list[dict[str, Any]]) -> dict[str, float]:
    tp = fp = fn = 0
    for pair in pairs:
        said = judge(pair)
        tp += said and pair["duplicate"]
        fp += said and not pair["duplicate"]
        fn += (not said) and pair["duplicate"]
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {"pairs": len(pairs), "precision": precision, "recall": recall, "tp": tp, "fp": fp, "fn": fn}


TARGETS = ["learning rate", "weight decay", "dropout", "batch size", "momentum", "warmup", "hidden size",
           "number of layers", "epochs", "label smoothing", "gradient clipping", "noise", "batch norm"]
VERBS = ["increase", "decrease", "add", "remove", "tune", "adjust", "raise", "lower"]
FILLER = ["to improve generalization", "for faster convergence", "to reduce overfitting", "for stability",
          "on the validation split", "in the classifier head", "in the encoder block", "for the small model"]


def synthetic(rng: random.Random, i: int) -> Change:
    """A varied stream: a third params deltas, the rest hypotheses of a verb, a target and five
    words drawn from a 20,000-word vocabulary (as varied as real hypotheses, which rarely share
    more than their target and a few common words)."""
    if i % 3 == 0:
        return Change(kind="params", aspect="lr", hypothesis=f"set lr from 0.001 to {rng.random():.6f}",
                      proposer="bench", params={"lr": rng.random()})
    words = " ".join(f"w{rng.randrange(20_000)}" for _ in range(5))
    text = f"{rng.choice(VERBS)} the {rng.choice(TARGETS)} {rng.choice(FILLER)} {words}"
    return Change(kind="code", aspect=rng.choice(["optimizer", "regularization", "architecture"]), hypothesis=text,
                  proposer="bench", diff=f"+x{i} = {i}\n")


def latency(remembered: int, checks: int) -> dict[str, float]:
    rng = random.Random(0)
    memory = Memory()
    started = time.perf_counter()
    for i in range(remembered):
        change = synthetic(rng, i)
        memory.remember(memory.entry(change, f"n{i % 500}", {"lr": 0.001}), f"p{i}")
    remember_s = time.perf_counter() - started
    times = []
    for i in range(checks):
        change = synthetic(rng, remembered + i)
        t0 = time.perf_counter()
        memory.check(memory.entry(change, f"n{i % 500}", {"lr": 0.001}))
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "remembered": remembered, "remember_us": remember_s / remembered * 1e6,
        "p50_ms": statistics.median(times), "p99_ms": times[int(0.99 * (len(times) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--remembered", type=int, default=100_000)
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--misses", action="store_true", help="print the pairs judged wrong")
    args = parser.parse_args()
    pairs = load_pairs()
    for split in ("dev", "test", "holdout", "all"):
        chosen = [p for p in pairs if split == "all" or p["split"] == split]
        s = scores(chosen)
        print(f"{split:5s} pairs {s['pairs']:3d}  precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
              f"(tp {s['tp']}, fp {s['fp']}, fn {s['fn']})")
    if args.misses:
        for p in pairs:
            if judge(p) != p["duplicate"]:
                print(f"  MISS [{p['split']}] {p['kind']}: {p['a'][1]!r} / {p['b'][1]!r}")
    lat = latency(args.remembered, args.checks)
    print(f"latency with {lat['remembered']} remembered: p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms; "
          f"remember {lat['remember_us']:.1f} us each")


if __name__ == "__main__":
    main()
