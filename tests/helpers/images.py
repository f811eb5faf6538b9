"""Small folders of random PNG images in the dataset layout, for pipeline tests."""

from __future__ import annotations

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
