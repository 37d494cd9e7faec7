# Evaluation (DO NOT CHANGE — this is the fixed metric)
"""Score the model that train.py left in $ARBORIST_OUTPUT_DIR on the held-out test split.

This file is protected: arborist rejects any proposal that touches it, so the code under test
never grades itself. It trusts nothing from the train step: the artifact is loaded without
pickle (a pickle written by changed code could run code here), its shapes are checked, and the
forward pass is implemented below rather than by the model's own code.

Environment:
  ARBORIST_OUTPUT_DIR    folder with model.npz (default ./output)
  DIGITS_HELDOUT         path to the held-out test.npz (outside the project; required)
  ARBORIST_METRICS_FILE  where to write {"accuracy": ..., "log_loss": ...} (optional)
"""

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "logistic": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "identity": lambda z: z,
}
EPS = 1e-15  # probability clip for log loss, as in sklearn


class BadArtifact(Exception):
    pass


def load_model(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            model = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise BadArtifact(f"cannot read {path} as a data-only npz: {e}") from e
    for key in ("input_mean", "input_scale", "n_layers", "activation", "classes"):
        if key not in model:
            raise BadArtifact(f"missing array {key!r}")
    return model


def check_model(model: dict[str, np.ndarray], n_features: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validate the artifact and return its (weights, bias) layers in order."""
    try:
        n_layers = int(model["n_layers"])
    except (TypeError, ValueError) as e:
        raise BadArtifact(f"n_layers must be an integer scalar: {e}") from e
    if n_layers < 1:
        raise BadArtifact(f"n_layers must be >= 1, got {n_layers}")
    activation = str(model["activation"])
    if activation not in ACTIVATIONS:
        raise BadArtifact(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
    for key in ("input_mean", "input_scale"):
        a = model[key]
        if a.shape != (n_features,) or not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
            raise BadArtifact(f"{key} must be {n_features} finite numbers, got shape {a.shape}")
    if np.any(model["input_scale"] == 0):
        raise BadArtifact("input_scale has zeros")
    layers = []
    width = n_features
    for i in range(n_layers):
        w, b = model.get(f"coef_{i}"), model.get(f"intercept_{i}")
        if w is None or b is None:
            raise BadArtifact(f"missing coef_{i} or intercept_{i}")
        if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
            raise BadArtifact(f"layer {i}: coef {w.shape}, intercept {b.shape}, expected input width {width}")
        if not (np.issubdtype(w.dtype, np.floating) and np.issubdtype(b.dtype, np.floating)):
            raise BadArtifact(f"layer {i}: weights must be floats")
        layers.append((w.astype(np.float64), b.astype(np.float64)))
        width = w.shape[1]
    classes = model["classes"]
    if classes.ndim != 1 or len(classes) != width or len(classes) < 3:
        raise BadArtifact(f"classes {classes.shape} must match the {width} outputs (multiclass softmax)")
    return layers


def predict_proba(
    model: dict[str, np.ndarray], layers: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray
) -> np.ndarray:
    h = (X - model["input_mean"]) / model["input_scale"]
    act = ACTIVATIONS[str(model["activation"])]
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = act(h)
    h -= h.max(axis=1, keepdims=True)  # stable softmax
    p = np.exp(h)
    return p / p.sum(axis=1, keepdims=True)


def main() -> int:
    heldout = os.environ.get("DIGITS_HELDOUT")
    if not heldout or not Path(heldout).is_file():
        print(f"error: DIGITS_HELDOUT must name the held-out test.npz (got {heldout!r})", file=sys.stderr)
        return 2
    with np.load(heldout, allow_pickle=False) as f:
        X, y = f["X"].astype(np.float64), f["y"]

    model_path = Path(os.environ.get("ARBORIST_OUTPUT_DIR", "output")) / "model.npz"
    try:
        model = load_model(model_path)
        layers = check_model(model, X.shape[1])
    except BadArtifact as e:
        print(f"error: malformed artifact {model_path}: {e}", file=sys.stderr)
        return 1

    proba = predict_proba(model, layers, X)
    if not np.all(np.isfinite(proba)):
        print("error: model produced non-finite probabilities", file=sys.stderr)
        return 1
    classes = model["classes"]
    accuracy = float(np.mean(classes[proba.argmax(axis=1)] == y))
    # Probability given to the true label; a label the model does not know gets 0 (clipped).
    p_true = (proba * (classes[None, :] == y[:, None])).sum(axis=1)
    log_loss = float(-np.mean(np.log(np.clip(p_true, EPS, 1.0))))

    metrics = {"accuracy": accuracy, "log_loss": log_loss}
    metrics_file = os.environ.get("ARBORIST_METRICS_FILE")
    if metrics_file:
        Path(metrics_file).write_text(json.dumps(metrics))
    print(f"accuracy: {accuracy:.4f}")
    print(f"log_loss: {log_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
