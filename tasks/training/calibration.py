"""Fitting the trust layer of a trained classifier (tasks/core/trust.py) on data it never trained on.

The calibration rows are a seeded share of the validation split, taken out before training so
early stopping never sees them; the test split stays untouched for evaluation. The class means and
covariance of the out-of-distribution score come from training images (many, and un-augmented);
its threshold comes from the calibration rows, so its false-positive rate is measured out of sample.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from scipy.optimize import minimize_scalar
from sklearn.covariance import LedoitWolf

from configs.schema import FlowConfig, TrustConfig
from tasks.core.bundle import CLASSIFIER_OUTPUT, EMBEDDING_LAYER
from tasks.core.image_properties import decode_original
from tasks.core.preprocessing import InputSpec
from tasks.core.shift_regression import ShiftRegression
from tasks.core.trust import (
    COMBINED,
    TrustModel,
    aps_scores,
    conformal_quantile,
    expected_calibration_error,
    softmax,
)
from tasks.data.pipeline import labelled_batches
from tasks.training.synthetic_shifts import SyntheticWindows, fit_shift_regression, synthetic_windows


def calibration_rows(table: pd.DataFrame, config: FlowConfig) -> pd.DataFrame:
    """The seeded share of the calibration split held out from early stopping (none when trust is off)."""
    trust = config.train.trust
    if not trust.enabled:
        return table.iloc[0:0]
    candidates = table[table["split"] == trust.split]
    return candidates.sample(frac=trust.share, random_state=config.train.seed).sort_index()


def feature_model(classifier: keras.Model) -> keras.Model:
    """The classifier's penultimate features beside its output, in one pass."""
    return keras.Model(classifier.inputs, classifier.get_layer(EMBEDDING_LAYER).output)


def features_of(
    model: keras.Model, data_dir: Path, rows: pd.DataFrame, class_names: list[str], spec: InputSpec
) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features, label indices) of every row, in order."""
    features, labels = [], []
    for images, batch_labels, _ in labelled_batches(data_dir, rows, class_names, spec):
        features.append(model(tf.cast(images, tf.float32), training=False).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(features).astype(np.float64), np.concatenate(labels)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the negative log-likelihood of softmax(logits / T) (Guo et al., 2017)."""

    def nll(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        shifted = scaled - scaled.max(axis=1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-log_probabilities[np.arange(len(labels)), labels].mean())

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def set_thresholds(probabilities: np.ndarray, labels: np.ndarray, classes: int, trust: TrustConfig) -> np.ndarray:
    """One APS threshold for every class, or (class-conditional) one per class from its own rows."""
    scores = aps_scores(probabilities, labels)
    if not trust.class_conditional:
        return np.full(classes, conformal_quantile(scores, trust.alpha))
    return np.array([conformal_quantile(scores[labels == c], trust.alpha) for c in range(classes)])


def fit_ood_threshold(
    trust: TrustModel, features: np.ndarray, logits: np.ndarray, score: str, false_positive_rate: float
) -> TrustModel:
    """``trust`` scoring with ``score``, thresholded so ``false_positive_rate`` of these (in-distribution,
    held-out) rows are flagged; the combined score is standardised on the same rows."""
    scales = []
    for name in COMBINED:  # each score's own tail maps to 1: flagging above 1 is "either score is extreme"
        values = trust.ood_scores(features, logits, name)
        median, tail = np.quantile(values, [0.5, 1.0 - false_positive_rate / 2])
        scales.append([median, max(tail - median, 1e-9)])
    ranked = replace(trust, ood_score=score, calibration_scores=np.array(scales))
    in_distribution = ranked.ood_scores(features, logits)
    threshold = float(np.quantile(in_distribution, 1.0 - false_positive_rate, method="higher"))
    return replace(ranked, ood_threshold=threshold)


@dataclass(frozen=True)
class FittedTrust:
    trust: TrustModel
    metrics: dict[str, float]  # on the calibration rows: temperature, ECE before and after, set size


def fit_trust(
    classifier: keras.Model,
    data_dir: Path,
    table: pd.DataFrame,
    class_names: list[str],
    spec: InputSpec,
    config: FlowConfig,
) -> FittedTrust:
    """Temperature, set thresholds and the out-of-distribution threshold of one trained classifier."""
    trust, seed = config.train.trust, config.train.seed
    extractor = feature_model(classifier)
    last = classifier.get_layer(CLASSIFIER_OUTPUT)
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in last.get_weights())

    training = table[table["split"] == config.dataset.train_split]
    sample = training.sample(n=min(trust.feature_rows, len(training)), random_state=seed).sort_index()
    train_features, train_labels = features_of(extractor, data_dir, sample, class_names, spec)

    rows = calibration_rows(table, config)
    features, labels = features_of(extractor, data_dir, rows, class_names, spec)
    return trust_from_features(train_features, train_labels, features, labels, (kernel, bias), trust)


def trust_from_features(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    last_layer: tuple[np.ndarray, np.ndarray],
    trust: TrustConfig,
) -> FittedTrust:
    """The trust layer from penultimate features: class means and covariance from training rows,
    temperature, set and out-of-distribution thresholds from held-out calibration rows."""
    kernel, bias = last_layer
    classes = kernel.shape[1]
    means = np.stack([train_features[train_labels == c].mean(axis=0) for c in range(classes)])
    centred = train_features - means[train_labels]
    precision = LedoitWolf().fit(centred).precision_  # shrinkage: a stable inverse even with few rows
    logits = features @ kernel + bias
    temperature = fit_temperature(logits, labels)
    calibrated = softmax(logits / temperature)
    thresholds = set_thresholds(calibrated, labels, classes, trust)
    fitted = TrustModel(
        temperature=temperature,
        alpha=trust.alpha,
        set_thresholds=thresholds,
        class_conditional=trust.class_conditional,
        ood_score=trust.ood_score,
        ood_threshold=0.0,
        class_means=means,
        precision=precision,
        logit_kernel=kernel,
        logit_bias=bias,
        calibration_scores=np.ones((2, 2)),
    )
    fitted = fit_ood_threshold(fitted, features, logits, trust.ood_score, trust.ood_false_positive_rate)
    threshold = fitted.ood_threshold
    sizes = fitted.sets(calibrated).sum(axis=1)
    metrics = {
        "calibration/rows": float(len(labels)),
        "calibration/temperature": temperature,
        "calibration/ece_before": expected_calibration_error(labels, softmax(logits)),
        "calibration/ece_after": expected_calibration_error(labels, calibrated),
        "calibration/mean_set_size": float(sizes.mean()),
        "calibration/ood_threshold": threshold,
    }
    return FittedTrust(fitted, metrics)


def synthetic_windows_of(
    classifier: keras.Model,
    trust: TrustModel,
    data_dir: Path,
    table: pd.DataFrame,
    class_names: list[str],
    spec: InputSpec,
    config: FlowConfig,
) -> SyntheticWindows:
    """The calibration rows under ``train.trust.shift_windows`` synthetic shifts, through the version."""
    settings = config.train.trust
    rows = calibration_rows(table, config)
    originals = [decode_original((data_dir / path).read_bytes()) for path in rows["path"]]
    labels = rows["label"].map({name: index for index, name in enumerate(class_names)}).to_numpy()
    extractor = feature_model(classifier)

    def predict(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = np.concatenate(
            [
                extractor(tf.cast(inputs[start : start + 512], tf.float32), training=False).numpy()
                for start in range(0, len(inputs), 512)
            ]
        ).astype(np.float64)
        logits = trust.logits(features)
        return trust.calibrated(logits), trust.ood_scores(features, logits)

    return synthetic_windows(
        originals,
        labels,
        predict,
        spec,
        trust.ood_threshold,
        settings.shift_windows,
        settings.shift_window_rows,
        config.train.seed,
    )


def fit_accuracy_regression(
    classifier: keras.Model,
    trust: TrustModel,
    data_dir: Path,
    table: pd.DataFrame,
    class_names: list[str],
    spec: InputSpec,
    config: FlowConfig,
) -> tuple[ShiftRegression, dict[str, float]] | None:
    """The monitor's accuracy estimator (tasks/core/shift_regression.py), fitted on the calibration rows
    under synthetic shifts; None when ``train.trust.shift_windows`` is 0."""
    if config.train.trust.shift_windows == 0:
        return None
    windows = synthetic_windows_of(classifier, trust, data_dir, table, class_names, spec, config)
    regression, error_points = fit_shift_regression(windows, config.train.seed)
    metrics = {
        "estimator/windows": float(len(windows.accuracy)),
        "estimator/out_of_fold_error_points": error_points,
        "estimator/residual_95": regression.residual_95,
    }
    return regression, metrics
