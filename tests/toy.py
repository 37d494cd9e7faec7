"""A toy project for campaign tests: trials take ~0.1 s and have known true effects.

score = 1 - (x - 3)^2 / 10 + BONUS + EXTRA + seed noise (shared by nodes on one seed) + a little
node-specific noise. Code changes edit BONUS in model.py or EXTRA in features.py; params
changes move x.
"""

from __future__ import annotations

import difflib
import shlex
import textwrap
from pathlib import Path
from typing import Any

import yaml

TRAIN = textwrap.dedent(
    '''
    import json, os, random
    import model
    import features

    params = json.load(open(os.environ["ARBORIST_PARAMS"]))
    seed = int(os.environ["ARBORIST_SEED"])
    shared = random.Random(seed).gauss(0, 0.05)
    own = random.Random(f"{seed}-{params['x']}-{model.BONUS}-{features.EXTRA}").gauss(0, 0.01)
    score = 1 - (params["x"] - 3) ** 2 / 10 + model.BONUS + features.EXTRA + shared + own
    print('ARBORIST_REPORT {"step": 1, "partial": %f}' % score)
    with open(os.path.join(os.environ["ARBORIST_OUTPUT_DIR"], "pred.json"), "w") as f:
        json.dump({"score": score}, f)
    '''
)

EVALUATE = textwrap.dedent(
    '''
    # Evaluation (DO NOT CHANGE)
    import json, os
    pred = json.load(open(os.path.join(os.environ["ARBORIST_OUTPUT_DIR"], "pred.json")))
    with open(os.environ["ARBORIST_METRICS_FILE"], "w") as f:
        json.dump({"score": pred["score"], "size": 1.0}, f)
    print("score:", pred["score"])
    '''
)


def make_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(TRAIN)
    (root / "evaluate.py").write_text(EVALUATE)
    (root / "model.py").write_text("# the model's one knob\nBONUS = 0.0\n")
    (root / "features.py").write_text("# the features' one knob\nEXTRA = 0.0\n")
    return root


def bonus_diff(value: str) -> str:
    return (
        "diff --git a/model.py b/model.py\n"
        "--- a/model.py\n"
        "+++ b/model.py\n"
        "@@ -1,2 +1,2 @@\n"
        " # the model's one knob\n"
        "-BONUS = 0.0\n"
        f"+BONUS = {value}\n"
    )


def extra_diff(value: str) -> str:
    return (
        "diff --git a/features.py b/features.py\n"
        "--- a/features.py\n"
        "+++ b/features.py\n"
        "@@ -1,2 +1,2 @@\n"
        " # the features' one knob\n"
        "-EXTRA = 0.0\n"
        f"+EXTRA = {value}\n"
    )


def train_diff(old: str, new: str) -> str:
    """A git-style diff of train.py replacing `old` with `new`."""
    assert old in TRAIN
    lines = difflib.unified_diff(
        TRAIN.splitlines(True), TRAIN.replace(old, new).splitlines(True), "a/train.py", "b/train.py"
    )
    return "diff --git a/train.py b/train.py\n" + "".join(lines)


def queue_items() -> list[dict[str, Any]]:
    return [
        {"id": "better", "aspect": "architecture", "hypothesis": "a larger bonus helps", "diff": bonus_diff("0.2")},
        {"id": "extra", "aspect": "data", "hypothesis": "an extra feature helps", "diff": extra_diff("0.1")},
        {
            "id": "worse", "aspect": "loss", "hypothesis": "a penalty hurts",
            "diff": train_diff("+ shared + own\n", "+ shared + own - 0.2\n"),
        },
        {
            "id": "breaks", "aspect": "architecture", "hypothesis": "a model module that does not exist",
            "diff": train_diff("import model\n", "import model_v2 as model\n"),
        },
        {
            "id": "tamper", "aspect": "loss", "hypothesis": "edit the evaluator",
            "diff": "diff --git a/evaluate.py b/evaluate.py\n--- a/evaluate.py\n+++ b/evaluate.py\n"
                    "@@ -1,2 +1,2 @@\n \n-# Evaluation (DO NOT CHANGE)\n+# Evaluation (changed)\n",
        },
    ]


# Test campaigns end on their trial budget: a wall-clock limit would make what they decide
# depend on how busy the machine is. Tests of the wall-clock limit set their own.
NO_WALL_LIMIT_S = 36_000.0


def gate_at(root: Path) -> Path:
    """Where a gated campaign's gate file goes (it does not exist until the test opens it)."""
    return root / "gates" / "open"


def gated(root: Path, budget_s: float = 600) -> dict[str, Any]:
    """write_config overrides whose train step waits until `gate_at(root)` exists, so a test can
    hold trials running while it acts. The gate's folder is a declared read-only input: the
    sandboxed step sees no other path outside its trial."""
    gate = gate_at(root)
    gate.parent.mkdir(parents=True, exist_ok=True)
    wait = f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; done; exec python train.py"
    return {
        "entrypoint": {"train": f"sh -c {shlex.quote(wait)}", "budget_s": budget_s},
        "sandbox": {"read_only": [str(gate.parent)]},
    }


def write_config(tmp: Path, **overrides: Any) -> Path:
    project = make_project(tmp / "project")
    queue = tmp / "hypotheses.yaml"
    queue.write_text(yaml.safe_dump(queue_items(), sort_keys=False))
    config: dict[str, Any] = {
        "name": "toy",
        "project": str(project),
        "campaign_dir": str(tmp / "campaign"),
        "entrypoint": {
            "train": "python train.py", "evaluate": "python evaluate.py",
            "budget_s": 30, "evaluate_budget_s": 30,
        },
        "metrics": {
            "score": {"direction": "max", "role": "objective"},
            "size": {"direction": "min", "role": "guard", "max": 2.0},
        },
        "params": {"x": {"type": "float", "low": 0.0, "high": 6.0, "default": 1.0}},
        "protected": ["evaluate.py"],
        "seeds": {"baseline": 3, "max": 8},
        "search": {"proposers": [{"type": "queue", "path": str(queue)}, {"type": "grid"}], "max_children": 10},
        "budget": {"max_trials": 60, "max_wall_s": NO_WALL_LIMIT_S},
        "ray": {"max_concurrent": 2},
        "packages": [],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp / "campaign.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# A self-reported project: one command trains and prints its own metric. evaluate() computes
# the loss; protecting it (`train.py::evaluate`) is all that keeps a change from faking it.
SELF_REPORTED_TRAIN = textwrap.dedent(
    '''
    import json, os, random


    def train(params, seed):
        bonus = 0.0
        return {"weight": params["x"] + bonus, "seed": seed}


    def evaluate(model):
        """Mean loss over four held-out batches."""
        rng = random.Random(model["seed"])
        losses = [2.0 + (model["weight"] - 3) ** 2 / 10 + rng.gauss(0, 0.05) for _ in range(4)]
        return sum(losses) / len(losses)


    params = json.load(open(os.environ["ARBORIST_PARAMS"]))
    seed = int(os.environ["ARBORIST_SEED"])
    print("loss:", evaluate(train(params, seed)))
    '''
)


def self_reported_diff(old: str, new: str) -> str:
    """A git-style diff of the self-reported train.py replacing `old` with `new`."""
    assert old in SELF_REPORTED_TRAIN
    lines = difflib.unified_diff(
        SELF_REPORTED_TRAIN.splitlines(True), SELF_REPORTED_TRAIN.replace(old, new).splitlines(True),
        "a/train.py", "b/train.py",
    )
    return "diff --git a/train.py b/train.py\n" + "".join(lines)


def write_self_reported_config(tmp: Path, items: list[dict[str, Any]], **overrides: Any) -> Path:
    """A campaign of the self-reported project whose queue holds `items`; evaluate() is protected."""
    project = tmp / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "train.py").write_text(SELF_REPORTED_TRAIN)
    queue = tmp / "hypotheses.yaml"
    queue.write_text(yaml.safe_dump(items, sort_keys=False))
    config: dict[str, Any] = {
        "name": "selfreported",
        "project": str(project),
        "campaign_dir": str(tmp / "campaign"),
        "entrypoint": {"train": "python train.py", "budget_s": 30},
        "metrics": {"loss": {"direction": "min", "role": "objective", "regex": r"loss: ([0-9.eE+-]+)",
                             "bounds": [0, None]}},
        "params": {"x": {"type": "float", "low": 0.0, "high": 6.0, "default": 1.0}},
        "protected": ["train.py::evaluate"],
        "seeds": {"baseline": 3, "max": 8},
        "search": {"proposers": [{"type": "queue", "path": str(queue)}]},
        "budget": {"max_trials": 60, "max_wall_s": NO_WALL_LIMIT_S},
        "packages": [],
        **overrides,
    }
    path = tmp / "campaign.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
