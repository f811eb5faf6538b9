"""Predictions whose right answers are known, for the metric, gate and plot tests."""

from __future__ import annotations

import numpy as np

from tasks.evaluation.metrics import Predictions

NAMES = ["coat", "dress", "shirt"]


def predictions(labels: list[int], probabilities: list[list[float]]) -> Predictions:
    paths = [f"test/{NAMES[label]}/{i}.png" for i, label in enumerate(labels)]
    return Predictions(np.array(labels), np.array(probabilities), paths, NAMES)


PERFECT = predictions([0, 1, 2, 0], [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.0, 0.2, 0.8], [0.7, 0.2, 0.1]])
# image 1 (a dress) is called a coat; image 3 (a coat) is called a shirt
FLAWED = predictions([0, 1, 2, 0], [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.0, 0.2, 0.8], [0.2, 0.2, 0.6]])
