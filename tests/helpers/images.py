"""Test images: small folders of random PNGs in the dataset layout, and handwritten digits (out of distribution)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def random_png_folder(root: Path, count: int = 24, classes: tuple[str, ...] = ("a", "b")) -> pd.DataFrame:
    """``count`` random 28x28 gray images under ``root/train/<class>/``, classes alternating; their manifest."""
    rng = np.random.default_rng(1)
    rows = []
    for index in range(count):
        label = classes[index % len(classes)]
        relative = f"train/{label}/{index:03d}.png"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(root / relative)
        rows.append({"path": relative, "label": label, "split": "train"})
    return pd.DataFrame(rows)


def digit_pngs(count: int) -> list[bytes]:
    """Handwritten digits (scikit-learn's bundled set): nothing like clothing."""
    from sklearn.datasets import load_digits

    images = []
    for digit in load_digits().images[:count]:
        buffer = io.BytesIO()
        Image.fromarray((digit * 15).astype(np.uint8)).resize((28, 28)).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images
