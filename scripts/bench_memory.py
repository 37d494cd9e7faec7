"""The anti-repetition memory: how well it tells duplicates from near misses, and how fast.

    .venv/bin/python scripts/bench_memory.py [--remembered 100000] [--checks 1000] [--misses dev]

1. Precision and recall of duplicates on the labelled pairs in tests/data/hypothesis_pairs.yaml
   (dev, test, all; and per round of writing), default config (no embedding model). A pair is
   judged as the search engine judges a proposal: remember hypothesis a (a code change with an
   empty diff and a's aspect, parent n0), then check b on the same parent.
2. Latency with --remembered proposals in memory (a quarter params deltas, the rest hypotheses
   from templates over many targets, directions, values and places; fixed seed): p50 and p99 of
   one check(entry(...)) of a new proposal; the time of building an entry and of remember(entry).
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


# ----- a synthetic stream of proposals ------------------------------------------------------
TARGETS = [
    "learning rate", "weight decay", "dropout", "batch size", "momentum", "warmup", "hidden size", "number of layers",
    "epochs", "label smoothing", "gradient clipping", "input noise", "batch norm", "layer norm", "embedding dimension",
    "attention heads", "context length", "kernel size", "number of filters", "n_estimators", "max_depth",
    "min_samples_leaf", "C", "number of neighbors", "PCA components", "beta2", "adam epsilon", "EMA decay",
    "mixup alpha", "focal loss gamma", "class weights", "vocabulary size", "polynomial degree", "num_leaves",
]
METHODS = [
    "AdamW", "SGD with Nesterov momentum", "RMSprop", "Lion", "a cosine schedule", "a one-cycle schedule",
    "step decay", "GELU", "SiLU", "LeakyReLU", "residual connections", "squeeze-and-excitation blocks",
    "random crops", "horizontal flips", "color jitter", "cutout", "mixup", "CutMix", "focal loss", "Huber loss",
    "StandardScaler", "one-hot encoding", "target encoding", "median imputation", "SMOTE", "early stopping",
    "stochastic depth", "mixed precision", "torch.compile", "an EMA of the weights", "gradient accumulation",
    "a GRU", "a bidirectional LSTM", "depthwise separable convolutions", "global average pooling", "Kaiming init",
]
UP = ["increase", "raise", "double", "use a larger", "bump up", "grow"]
DOWN = ["decrease", "lower", "halve", "use a smaller", "reduce", "cut"]
PLACES = ["", " in the encoder", " in the classifier head", " in block 3", " in the first conv layer",
          " of the second MLP", " in the attention layers", " for the embedding table", " in model.py", " in train()"]
REASONS = ["", " to reduce overfitting", " for faster convergence", " since the loss plateaus after epoch {e}",
           " because validation accuracy stalls at {a}%", " to stabilize the first steps", " as the model underfits",
           " to match the {p} baseline", " (the curve in run {r} suggests it)"]
PARAMS = [f"{block}.{name}" for block in ("encoder", "decoder", "head", "stem", "neck", "trunk", "adapter", "mixer",
                                           "router", "embed")
          for name in ("lr", "weight_decay", "dropout", "batch_size", "momentum", "warmup_steps", "hidden", "layers",
                       "epochs", "label_smoothing", "clip", "beta2", "eps", "n_estimators", "max_depth", "C",
                       "gamma", "alpha", "temperature", "scale")]
ASPECTS = ["optimizer", "lr_schedule", "architecture", "regularization", "data", "loss", "other"]
# Project-specific changes name things no lexicon knows: made-up components, 3,000 of them.
_SYLLABLES = ["ka", "lo", "mi", "ter", "van", "dro", "pel", "sun", "ri", "zo", "bex", "tal", "nor", "qui", "fen"]
PROJECT_VERBS = ["Add", "Rewrite", "Simplify", "Cache", "Vectorize", "Fuse", "Reorder", "Share", "Split", "Merge"]


def _component(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(3)) + rng.choice(["", "_map", "_pool", "_gate", "_index"])


def synthetic(rng: random.Random, i: int) -> Change:
    """One proposal of a varied stream: params deltas, and code changes whose hypotheses move a
    target up or down, or bring in a method, somewhere, for some reason, with some value."""
    if i % 4 == 0:
        name = rng.choice(PARAMS)
        old, new = 10 ** rng.uniform(-6, 4), 10 ** rng.uniform(-6, 4)
        return Change(kind="params", aspect=name, hypothesis=f"set {name} from {old:.4g} to {new:.4g}",
                      proposer="bench", params={name: new})
    place = rng.choice(PLACES)
    reason = rng.choice(REASONS).format(e=rng.randrange(1, 200), a=rng.randrange(50, 99), p=f"v{rng.randrange(99)}",
                                        r=rng.randrange(10_000))
    kind = rng.random()
    if kind < 0.35:
        text = f"{rng.choice(PROJECT_VERBS)} the {_component(rng)} of the {_component(rng)}{place}{reason}"
    elif kind < 0.65:
        verb = rng.choice(UP if rng.random() < 0.5 else DOWN)
        value = rng.choice(["", f" to {rng.choice([1, 2, 3, 5])}e-{rng.randrange(1, 6)}",
                            f" to {rng.randrange(2, 2048)}", f" by {rng.randrange(2, 11)}x"])
        article = "" if verb.endswith(("larger", "smaller")) else " the"
        text = f"{verb.capitalize()}{article} {rng.choice(TARGETS)}{place}{value}{reason}"
    else:
        replaced = rng.choice(METHODS)
        swap = f" instead of {replaced}" if rng.random() < 0.3 else ""
        text = f"{rng.choice(['Use', 'Add', 'Switch to', 'Try'])} {rng.choice(METHODS)}{place}{swap}{reason}"
    return Change(kind="code", aspect=rng.choice(ASPECTS), hypothesis=text, proposer="bench",
                  diff=f"--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 0\n+x = {i}\n")


def latency(remembered: int, checks: int, seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    memory = Memory()
    entry_ms, remember_ms = [], []
    for i in range(remembered):
        change = synthetic(rng, i)
        t0 = time.perf_counter()
        entry = memory.entry(change, f"n{i % 500}", {"lr": 0.001})
        t1 = time.perf_counter()
        memory.remember(entry, f"p{i}")
        remember_ms.append((time.perf_counter() - t1) * 1000)
        entry_ms.append((t1 - t0) * 1000)
    check_ms = []
    new_ms = []  # checks that find nothing: the longest path, every candidate scored
    for i in range(checks):
        change = synthetic(rng, remembered + i)
        t0 = time.perf_counter()
        verdict = memory.check(memory.entry(change, f"n{i % 500}", {"lr": 0.001}))
        elapsed = (time.perf_counter() - t0) * 1000
        check_ms.append(elapsed)
        if not verdict.duplicate:
            new_ms.append(elapsed)
    return {
        "remembered": remembered, "checks": checks, "duplicates": checks - len(new_ms),
        "p50_ms": _quantile(check_ms, 0.5), "p99_ms": _quantile(check_ms, 0.99),
        "new_p99_ms": _quantile(new_ms, 0.99) if new_ms else 0.0,
        "entry_mean_ms": statistics.fmean(entry_ms), "remember_mean_ms": statistics.fmean(remember_ms),
        "remember_p99_ms": _quantile(remember_ms, 0.99),
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--remembered", type=int, default=100_000, help="proposals in memory for the latency run")
    parser.add_argument("--checks", type=int, default=1000, help="new proposals checked for the latency run")
    parser.add_argument("--misses", choices=("dev", "test", "all"), help="print the pairs of a split judged wrong")
    args = parser.parse_args()
    pairs = load_pairs()
    rounds = sorted({p.get("round", 1) for p in pairs})
    for split in ("dev", "test", "all"):
        chosen = [p for p in pairs if split == "all" or p["split"] == split]
        _report(split, chosen)
        for round_ in rounds if len(rounds) > 1 else ():
            _report(f"  round {round_}", [p for p in chosen if p.get("round", 1) == round_])
    if args.misses:
        for p in pairs:
            if (args.misses == "all" or p["split"] == args.misses) and judge(p) != p["duplicate"]:
                print(f"  {'false duplicate' if not p['duplicate'] else 'missed'} [{p['kind']}]: "
                      f"{p['a']['hypothesis']!r} / {p['b']['hypothesis']!r}")
    if args.remembered > 0:
        lat = latency(args.remembered, args.checks)
        print(f"latency with {lat['remembered']:,} remembered, {lat['checks']:,} checks "
              f"({lat['duplicates']} duplicates): check p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms "
              f"(p99 of those found new {lat['new_p99_ms']:.3f} ms); "
              f"entry mean {lat['entry_mean_ms']:.3f} ms; remember mean {lat['remember_mean_ms'] * 1000:.1f} us, "
              f"p99 {lat['remember_p99_ms'] * 1000:.1f} us")


def _report(label: str, pairs: list[dict[str, Any]]) -> None:
    s = scores(pairs)
    print(f"{label:10s} pairs {s['pairs']:3d}  precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
          f"(tp {s['tp']}, fp {s['fp']}, fn {s['fn']})")


if __name__ == "__main__":
    main()
