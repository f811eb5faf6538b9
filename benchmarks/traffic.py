"""Demo traffic for monitoring: real images with no drift, and kinds of shifted traffic.

Fashion-MNIST test images (no drift), handwritten digits (scikit-learn's bundled set, nothing
like clothing), a brightness shift, a class-mix change (three classes only), and a 25% digit mix.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

KINDS = ("fashion", "digits", "brightness", "classmix", "mix25")


def encode_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_images() -> list[bytes]:
    from sklearn.datasets import load_digits

    return [
        encode_png(np.asarray(Image.fromarray((d * 15).astype(np.uint8)).resize((28, 28))))
        for d in load_digits().images
    ]


def demo_images(
    kind: str, data_dir: Path, manifest: pd.DataFrame, count: int, seed: int
) -> list[tuple[bytes, str | None]]:
    """``count`` (image, true label or None) pairs of one kind of traffic."""
    rng = np.random.default_rng(seed)
    test = manifest[manifest["split"] == "test"].sample(frac=1.0, random_state=seed)
    if kind == "classmix":
        test = test[test["label"].isin(["trouser", "bag", "sneaker"])]
    fashion = [((data_dir / p).read_bytes(), label) for p, label in zip(test["path"], test["label"], strict=True)]
    if kind in ("fashion", "classmix"):
        return [fashion[i % len(fashion)] for i in range(count)]
    if kind == "brightness":
        return [(_brighter(content), label) for content, label in fashion[:count]]
    digits = [(content, None) for content in digit_images()]
    if kind == "digits":
        return [digits[i % len(digits)] for i in range(count)]
    if kind == "mix25":
        chosen = [
            digits[int(rng.integers(len(digits)))] if rng.random() < 0.25 else fashion[i % len(fashion)]
            for i in range(count)
        ]
        return chosen
    raise ValueError(f"unknown traffic kind {kind!r}; one of {', '.join(KINDS)}")


def _brighter(content: bytes, offset: int = 40) -> bytes:
    gray = np.asarray(Image.open(io.BytesIO(content)))
    return encode_png(np.clip(gray.astype(int) + offset, 0, 255).astype(np.uint8))
