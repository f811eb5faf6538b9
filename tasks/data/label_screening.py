"""Label screening in the confident-learning manner (Northcutt, Jiang & Chuang, JAIR 2021).

Given each image's label and a model's predicted probabilities, a class's threshold is the model's
average confidence in that class over the images labelled with it. An image is *confidently* of
class j when its probability of j reaches j's threshold (the most probable such class when several
do); an image confidently of another class than its label is a likely label error. Thresholds per
class make the rule fair to classes the model is less sure of overall. The likely errors are ranked
by how little probability the model gives their label.

Applied to reviewed labels (with the probabilities the serving version logged, which never saw
those images) and at training time to the training set (with the trained model's probabilities:
in-sample, so it finds the errors the model did not learn to repeat). Screening never drops a
label: the doubted ones go back to the review queue for a second opinion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FALLBACK_THRESHOLD = 0.5  # for a class no screened image is labelled with
TOLERANCE = 1e-9


@dataclass(frozen=True)
class LikelyError:
    index: int  # row in the screened arrays
    given: int
    suggested: int
    given_probability: float
    suggested_probability: float


def class_thresholds(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Per class: the mean predicted probability of that class over the images labelled with it."""
    classes = probabilities.shape[1]
    thresholds = np.full(classes, FALLBACK_THRESHOLD)
    for j in range(classes):
        if (labels == j).any():
            thresholds[j] = probabilities[labels == j, j].mean()
    return thresholds


def likely_label_errors(labels: np.ndarray, probabilities: np.ndarray) -> list[LikelyError]:
    """Images confidently of another class than their label, the most doubtful first."""
    if len(labels) == 0:
        return []
    thresholds = class_thresholds(labels, probabilities)
    above = probabilities >= thresholds[None, :] - TOLERANCE  # a mean of equal values may round above them
    confident = np.where(above.any(axis=1), np.argmax(np.where(above, probabilities, -1.0), axis=1), -1)
    rows = np.flatnonzero((confident >= 0) & (confident != labels))
    found = [
        LikelyError(
            int(i),
            int(labels[i]),
            int(confident[i]),
            float(probabilities[i, labels[i]]),
            float(probabilities[i, confident[i]]),
        )
        for i in rows
    ]
    return sorted(found, key=lambda error: error.given_probability)


def thumbnail_sheet(
    images: list[np.ndarray], captions: list[str], path: Path, columns: int = 8, title: str = ""
) -> Path:
    """The doubted images as a grid of thumbnails, each captioned "label -> model's class"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.9 + 0.4), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, caption in zip(axes.flat, images, captions, strict=False):
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        axis.set_title(caption, fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
