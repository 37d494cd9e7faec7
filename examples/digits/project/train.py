"""Train a small MLP on the digits training split (the mutable part of the project).

Inputs come from the environment, as arborist sets them (defaults let you run it by hand):
  ARBORIST_PARAMS      path to a JSON file with any of: hidden, alpha, lr, max_iter
  ARBORIST_SEED        integer seed (default 0)
  ARBORIST_OUTPUT_DIR  where model.npz goes (default ./output)
Progress lines are `ARBORIST_REPORT {json}`; they are never used to score the run:
the frozen evaluate.py scores the artifact instead.
"""

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

HERE = Path(__file__).resolve().parent
DEFAULTS: dict[str, Any] = {"hidden": 64, "alpha": 1e-4, "lr": 3e-3, "max_iter": 30}
VAL_FRACTION = 0.2  # a seeded slice of train.npz for progress reports; the seed picks it
REPORT_EVERY = 5  # epochs between progress lines


def load_params() -> dict[str, Any]:
    params = dict(DEFAULTS)
    path = os.environ.get("ARBORIST_PARAMS")
    if path:
        params.update(json.loads(Path(path).read_text()))
    return params


def save_model(path: Path, clf: MLPClassifier, mean: np.ndarray, scale: np.ndarray) -> None:
    """Write a data-only artifact (no pickle) that evaluate.py can load safely."""
    arrays: dict[str, Any] = {
        "input_mean": mean,
        "input_scale": scale,
        "n_layers": np.array(len(clf.coefs_)),  # number of weight matrices
        "activation": np.array(clf.activation),
        "classes": clf.classes_,
    }
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
        arrays[f"coef_{i}"] = w
        arrays[f"intercept_{i}"] = b
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, allow_pickle=False, **arrays)  # refuse object arrays at write time too


def main() -> None:
    params = load_params()
    seed = int(os.environ.get("ARBORIST_SEED", "0"))
    out_dir = Path(os.environ.get("ARBORIST_OUTPUT_DIR", "output"))

    data = np.load(HERE / "data" / "train.npz")
    X, y = data["X"].astype(np.float64), data["y"]
    # The seed chooses which samples are trained on, so results vary with it like a real run.
    X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=VAL_FRACTION, stratify=y, random_state=seed)

    # Preprocessing stored in the artifact and applied by the evaluator: none in the baseline.
    mean = np.zeros(X.shape[1])
    scale = np.ones(X.shape[1])

    clf = MLPClassifier(
        hidden_layer_sizes=(int(params["hidden"]),),
        alpha=float(params["alpha"]),
        learning_rate_init=float(params["lr"]),
        # A RandomState object, not an int: with an int, every partial_fit call would
        # reseed and reuse the same minibatch order each epoch.
        random_state=np.random.RandomState(seed),
    )
    classes = np.unique(y)
    n_epochs = int(params["max_iter"])
    for epoch in range(1, n_epochs + 1):
        clf.partial_fit((X_tr - mean) / scale, y_tr, classes=classes)  # one epoch of Adam
        if epoch % REPORT_EVERY == 0 or epoch == n_epochs:
            val_acc = clf.score((X_val - mean) / scale, y_val)
            report = {"step": epoch, "train_loss": clf.loss_, "val_accuracy": val_acc}
            print("ARBORIST_REPORT " + json.dumps(report), flush=True)

    save_model(out_dir / "model.npz", clf, mean, scale)
    print(f"wrote {out_dir / 'model.npz'}")


if __name__ == "__main__":
    main()
