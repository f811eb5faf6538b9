"""Evaluation plots as PNG files: confusion matrix, reliability diagram, worst misclassified images."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from sklearn.metrics import confusion_matrix

from tasks.core.trust import calibration_bins
from tasks.evaluation.metrics import Predictions


def plot_confusion_matrix(predictions: Predictions, path: Path) -> Path:
    """Counts, with each row normalised to recall so small classes read as clearly as big ones."""
    names = predictions.class_names
    counts = confusion_matrix(predictions.labels, predictions.predicted, labels=list(range(len(names))))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(6.0, 0.6 * len(names))
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for row, col in np.ndindex(counts.shape):
        color = "white" if rates[row, col] > 0.5 else "black"
        axis.text(col, row, str(counts[row, col]), ha="center", va="center", fontsize=7, color=color)
    axis.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true")
    axis.set_xticklabels(names, rotation=45, ha="right")
    axis.set_yticklabels(names)
    figure.colorbar(image, ax=axis, label="fraction of the true class")
    return _save(figure, path)


def plot_reliability(predictions: Predictions, path: Path, bins: int = 15) -> Path:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    centers, accuracy, counts = calibration_bins(predictions.labels, predictions.probabilities, bins)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    if predictions.raw_probabilities is not None:  # the network's own softmax, before temperature scaling
        raw_centers, raw_accuracy, _ = calibration_bins(predictions.labels, predictions.raw_probabilities, bins)
        top.plot(raw_centers, raw_accuracy, marker=".", color="tab:orange", label="before calibration")
        top.plot(centers, accuracy, marker="o", label="calibrated (served)")
    else:
        top.plot(centers, accuracy, marker="o", label="model")
    top.set(ylabel="accuracy", title="Reliability diagram")
    top.legend()
    bottom.bar(centers, counts, width=1 / bins * 0.9)
    bottom.set(xlabel="confidence", ylabel="images", yscale="log")
    return _save(figure, path)


def plot_worst_misclassified(predictions: Predictions, data_dir: Path, path: Path, count: int = 25) -> Path:
    """The most confident mistakes, each titled true -> predicted (confidence)."""
    wrong = np.flatnonzero(predictions.predicted != predictions.labels)
    order = wrong[np.argsort(-predictions.probabilities[wrong].max(axis=1))][:count]
    columns = 5
    rows = max(1, int(np.ceil(len(order) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows))
    for axis in np.atleast_1d(axes).ravel():
        axis.axis("off")
    names = predictions.class_names
    for axis, index in zip(np.atleast_1d(axes).ravel(), order, strict=False):
        with Image.open(data_dir / predictions.paths[index]) as image:
            axis.imshow(np.asarray(image.convert("RGB")))
        confidence = predictions.probabilities[index].max()
        truth, guess = names[predictions.labels[index]], names[predictions.predicted[index]]
        axis.set_title(f"{truth} -> {guess}\n({confidence:.2f})", fontsize=8)
    if not len(order):
        figure.suptitle("No misclassified images")
    return _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
