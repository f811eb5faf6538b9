"""Evaluation: one aligned pass over a split, and the metrics a reviewer asks for.

Metric names are what thresholds refer to (``configs/metrics.py`` lists them with the direction
in which each is better): ``accuracy``, ``macro_f1``, ``macro_auc``, ``ece``, ``log_loss`` and
per class ``precision/<class>``, ``recall/<class>``, ``f1/<class>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.metrics import log_loss, precision_recall_fscore_support, roc_auc_score

from tasks.core.bundle import EMBEDDING_LAYER
from tasks.core.preprocessing import InputSpec
from tasks.core.progress import Advance
from tasks.core.trust import TrustModel, expected_calibration_error
from tasks.data.pipeline import labelled_batches

# What a reviewer reads first: tagged on each registry version, tabled in the full flow's summary.
HEADLINE_METRICS = ("accuracy", "macro_f1", "macro_auc", "ece")


@dataclass
class Predictions:
    """Labels, probabilities and paths of one split, row i of each describing the same image."""

    labels: np.ndarray
    probabilities: np.ndarray  # calibrated when the version has a trust layer
    paths: list[str]
    class_names: list[str]
    raw_probabilities: np.ndarray | None = None  # the network's own softmax, before calibration
    sets: np.ndarray | None = None  # (N, C) conformal prediction sets
    ood: np.ndarray | None = None  # (N,) the out-of-distribution flag

    @property
    def predicted(self) -> np.ndarray:
        return np.asarray(self.probabilities.argmax(axis=1))


def predict_split(
    model: keras.Model,
    data_dir: Path,
    rows: pd.DataFrame,
    class_names: list[str],
    spec: InputSpec,
    advance: Advance | None = None,
    trust: TrustModel | None = None,
) -> Predictions:
    """Every image once, in order; labels and paths travel with their images through the batches.

    With a trust layer, the probabilities are the calibrated ones the service returns, beside the
    network's own, with the prediction sets and out-of-distribution flags."""
    dataset = labelled_batches(data_dir, rows, class_names, spec)
    outputs = (
        model if trust is None else keras.Model(model.inputs, [model.output, model.get_layer(EMBEDDING_LAYER).output])
    )
    labels, raw, embeddings, paths = [], [], [], []
    for images, batch_labels, batch_paths in dataset:
        produced = outputs(tf.cast(images, tf.float32), training=False)
        if trust is None:
            raw.append(np.asarray(produced))
        else:
            raw.append(np.asarray(produced[0]))
            embeddings.append(np.asarray(produced[1], dtype=np.float64))
        labels.append(batch_labels.numpy())
        paths += [p.decode() for p in batch_paths.numpy()]
        if advance is not None:
            advance(len(batch_paths))
    network = np.concatenate(raw)
    if trust is None:
        return Predictions(np.concatenate(labels), network, paths, class_names)
    embedding = np.concatenate(embeddings)
    logits = trust.logits(embedding)
    calibrated = trust.calibrated(logits)
    ood = trust.ood_scores(embedding, logits) > trust.ood_threshold
    return Predictions(np.concatenate(labels), calibrated, paths, class_names, network, trust.sets(calibrated), ood)


def classification_metrics(predictions: Predictions) -> dict[str, float]:
    labels, probabilities, names = predictions.labels, predictions.probabilities, predictions.class_names
    classes = list(range(len(names)))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions.predicted, labels=classes, zero_division=0
    )
    metrics = {
        "accuracy": float((predictions.predicted == labels).mean()),
        "macro_f1": float(np.mean(f1)),
        "ece": expected_calibration_error(labels, probabilities),
        "log_loss": float(log_loss(labels, probabilities, labels=classes)),
        "macro_auc": _macro_auc(labels, probabilities, classes),
    }
    for index, name in enumerate(names):
        metrics[f"precision/{name}"] = float(precision[index])
        metrics[f"recall/{name}"] = float(recall[index])
        metrics[f"f1/{name}"] = float(f1[index])
    return metrics | trust_metrics(predictions)


def trust_metrics(predictions: Predictions) -> dict[str, float]:
    """Coverage and size of the prediction sets (overall and per class), ECE before calibration, OOD rate."""
    if predictions.sets is None or predictions.raw_probabilities is None or predictions.ood is None:
        return {}
    labels, sets = predictions.labels, predictions.sets
    covered = sets[np.arange(len(labels)), labels]
    metrics = {
        "set_coverage": float(covered.mean()),
        "mean_set_size": float(sets.sum(axis=1).mean()),
        "ece_uncalibrated": expected_calibration_error(labels, predictions.raw_probabilities),
        "ood_rate": float(predictions.ood.mean()),
    }
    for index, name in enumerate(predictions.class_names):
        of_class = labels == index
        metrics[f"set_coverage/{name}"] = float(covered[of_class].mean()) if of_class.any() else float("nan")
    return metrics


def _macro_auc(labels: np.ndarray, probabilities: np.ndarray, classes: list[int]) -> float:
    """One-vs-rest macro AUC over the classes present (AUC is undefined for an absent class)."""
    present = sorted(set(labels.tolist()))
    if len(present) < 2:
        return float("nan")
    one_hot = np.eye(len(classes))[labels][:, present]
    return float(roc_auc_score(one_hot, probabilities[:, present], average="macro"))


def finite_metrics(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    """Metrics without NaN (MLflow and JSON take none), optionally named with a prefix."""
    return {f"{prefix}{key}": value for key, value in metrics.items() if value == value}
