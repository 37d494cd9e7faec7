"""A toy project for campaign tests: trials take ~0.1 s and have known true effects.

score = 1 - (x - 3)^2 / 10 + BONUS + seed noise (shared by nodes on one seed) + a little
node-specific noise. Code changes edit BONUS in model.py; params changes move x.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

TRAIN = textwrap.dedent(
    '''
    import json, os, random
    import model

    params = json.load(open(os.environ["ARBORIST_PARAMS"]))
    seed = int(os.environ["ARBORIST_SEED"])
    shared = random.Random(seed).gauss(0, 0.05)
    own = random.Random(f"{seed}-{params['x']}-{model.BONUS}").gauss(0, 0.01)
    score = 1 - (params["x"] - 3) ** 2 / 10 + model.BONUS + shared + own
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


def queue_items() -> list[dict[str, Any]]:
    return [
        {"id": "better", "aspect": "architecture", "hypothesis": "a larger bonus helps", "diff": bonus_diff("0.2")},
        {"id": "worse", "aspect": "architecture", "hypothesis": "a negative bonus hurts", "diff": bonus_diff("-0.2")},
        {
            "id": "breaks", "aspect": "architecture", "hypothesis": "a model module that does not exist",
            "diff": "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n"
                    "@@ -2,3 +2,3 @@\n import json, os, random\n-import model\n+import model_v2 as model\n \n",
        },
        {
            "id": "tamper", "aspect": "loss", "hypothesis": "edit the evaluator",
            "diff": "diff --git a/evaluate.py b/evaluate.py\n--- a/evaluate.py\n+++ b/evaluate.py\n"
                    "@@ -1,2 +1,2 @@\n \n-# Evaluation (DO NOT CHANGE)\n+# Evaluation (changed)\n",
        },
    ]


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
        "seeds": {"baseline": 3, "initial": 3, "max": 5},
        "search": {"proposers": [{"type": "queue", "path": str(queue)}, {"type": "grid"}], "max_children": 10},
        "budget": {"max_trials": 60, "max_wall_s": 300},
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
