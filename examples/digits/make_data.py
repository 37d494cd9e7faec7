"""Regenerate the digits example's data files from scikit-learn's bundled copy (no download).

    python examples/digits/make_data.py

Writes a fixed 70/30 stratified split:
  project/data/train.npz  -- inside the project: the train step may read it
  heldout/test.npz        -- outside the project: only the evaluate step sees it (DIGITS_HELDOUT)
X is uint8 (8x8 images flattened to 64 pixels, grayscale 0..255), y is uint8 (digit 0..9).
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent


def main() -> None:
    digits = load_digits()
    # sklearn ships ink counts 0..16; store them as 8-bit grayscale 0..255, the way images
    # usually arrive. (Unscaled 0..255 inputs are also the realistic flaw the baseline keeps.)
    X = np.round(digits.data * (255 / 16)).astype(np.uint8)
    y = digits.target.astype(np.uint8)
    # Fixed split: the held-out set must never change between runs of the campaign.
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    np.savez_compressed(HERE / "project" / "data" / "train.npz", X=X_tr, y=y_tr)
    np.savez_compressed(HERE / "heldout" / "test.npz", X=X_te, y=y_te)
    print(f"train: {len(y_tr)} samples, heldout: {len(y_te)} samples")


if __name__ == "__main__":
    main()
