"""How far to trust one prediction: calibrated probabilities, a conformal prediction set, and an
out-of-distribution score, from what the classifier already computes (its penultimate features).

Fitted at training time on a calibration split nothing else uses (tasks/training/calibration.py),
published with the version as ``trust.npz``, applied by the service and by evaluation. Pure numpy:
the service applies it to every batch.

- **Temperature scaling**: one scalar T divides the logits; it changes confidence, never the argmax.
- **Conformal sets** (adaptive prediction sets, APS): a class enters the set while the calibrated
  probability mass ranked above it is below a threshold fitted so that, on exchangeable data, the
  set holds the true class with probability at least 1 - alpha. Class-conditional (Mondrian): one
  threshold per class, so the guarantee holds for every class, not only on average.
- **Out of distribution**: two scores that see different things, combined. The Mahalanobis distance
  of the penultimate features to the nearest class mean (shared covariance) catches other kinds of
  object (handwritten digits: AUROC 0.99) but not degraded clothes; energy (-logsumexp of the
  logits) catches noise, blur and random pixels (0.97-0.99) but digits poorly (0.79). The served
  score is the larger of the two, each rescaled on the calibration rows so that its median maps to 0
  and its (1 - fpr/2) quantile to 1 (an image is unusual when either score is), then thresholded at
  the calibration rows' (1 - fpr) quantile, so about ``fpr`` of in-distribution images are flagged.
  Each score alone and max-softmax remain selectable (BENCHMARKS.md).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

TRUST_FILE = "trust.npz"
OOD_SCORES = ("mahalanobis_or_energy", "mahalanobis", "energy", "max_softmax")
COMBINED = ("mahalanobis", "energy")  # what "mahalanobis_or_energy" combines


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def logsumexp(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=1)
    return np.asarray(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)))


def calibration_bins(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width confidence bin: mean confidence, accuracy and count."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.clip(np.digitize(confidence, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    filled = [b for b in range(bins) if (which == b).any()]
    mean_confidence = np.array([confidence[which == b].mean() for b in filled])
    accuracy = np.array([correct[which == b].mean() for b in filled])
    counts = np.array([int((which == b).sum()) for b in filled])
    return mean_confidence, accuracy, counts


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by count."""
    confidence, accuracy, counts = calibration_bins(labels, probabilities, bins)
    return float(np.sum(counts / counts.sum() * np.abs(accuracy - confidence)))


def aps_scores(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The probability mass of the classes ranked at or above the true one (APS), and 0 when the true
    class is the top one: the set always holds the top class, and a score that agrees with that rule
    keeps coverage at 1 - alpha instead of above it (deterministic, no randomised tie-breaking)."""
    order = np.argsort(-probabilities, axis=1, kind="stable")
    ranked = np.take_along_axis(probabilities, order, axis=1)
    cumulative = np.cumsum(ranked, axis=1)
    rank_of_label = np.argmax(order == labels[:, None], axis=1)
    scores = cumulative[np.arange(len(labels)), rank_of_label]
    return np.asarray(np.where(rank_of_label == 0, 0.0, scores))


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The finite-sample corrected (1 - alpha) quantile; 1.0 (every class) when there are too few scores."""
    n = len(scores)
    level = np.ceil((n + 1) * (1 - alpha)) / n
    if n == 0 or level > 1:
        return 1.0
    return float(np.quantile(scores, level, method="higher"))


def prediction_sets(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean (N, C): class c is in row i's set when its APS score (the mass ranked at or above it) is
    within its threshold, as the true class's score was on the calibration rows.

    ``thresholds`` has one value per class (a marginal threshold repeated, or class-conditional ones).
    The top class is always in the set.
    """
    order = np.argsort(-probabilities, axis=1, kind="stable")
    ranked = np.take_along_axis(probabilities, order, axis=1)
    ranked_in = np.cumsum(ranked, axis=1) <= thresholds[order] + 1e-12
    ranked_in[:, 0] = True
    members = np.zeros_like(ranked_in)
    np.put_along_axis(members, order, ranked_in, axis=1)
    return members


@dataclass(frozen=True)
class TrustModel:
    """The fitted parameters of one model version."""

    temperature: float
    alpha: float
    set_thresholds: np.ndarray  # (C,) APS threshold per class
    class_conditional: bool
    ood_score: str  # one of OOD_SCORES
    ood_threshold: float
    class_means: np.ndarray  # (C, D) penultimate features
    precision: np.ndarray  # (D, D) inverse of the shared covariance
    logit_kernel: np.ndarray  # (D, C) the classifier's last layer, to get logits from features
    logit_bias: np.ndarray  # (C,)
    calibration_scores: np.ndarray  # (2, 2) Mahalanobis and energy: calibration median, tail quantile - median

    @cached_property
    def _means_term(self) -> np.ndarray:
        """mu_c' P mu_c of every class: constant, and 90% of a batch's Mahalanobis cost when recomputed."""
        return means_term(self.class_means, self.precision)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features @ self.logit_kernel + self.logit_bias)

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits / self.temperature)

    def sets(self, probabilities: np.ndarray) -> np.ndarray:
        return prediction_sets(probabilities, self.set_thresholds)

    def ood_scores(self, features: np.ndarray, logits: np.ndarray, score: str | None = None) -> np.ndarray:
        """Higher: less like the training data."""
        score = score or self.ood_score
        if score == "mahalanobis_or_energy":
            standardised = [
                (self.ood_scores(features, logits, name) - median) / spread
                for name, (median, spread) in zip(COMBINED, self.calibration_scores, strict=True)
            ]
            return np.asarray(np.maximum(*standardised))
        if score == "mahalanobis":
            return mahalanobis_to_nearest(features, self.class_means, self.precision, self._means_term)
        if score == "energy":
            return -logsumexp(logits)
        if score == "max_softmax":
            return 1.0 - self.calibrated(logits).max(axis=1)
        raise ValueError(f"unknown out-of-distribution score {score!r}; one of {OOD_SCORES}")

    def save(self, path: Path) -> Path:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            temperature=self.temperature,
            alpha=self.alpha,
            set_thresholds=self.set_thresholds,
            class_conditional=self.class_conditional,
            ood_score=self.ood_score,
            ood_threshold=self.ood_threshold,
            class_means=self.class_means,
            precision=self.precision,
            logit_kernel=self.logit_kernel,
            logit_bias=self.logit_bias,
            calibration_scores=self.calibration_scores,
        )
        path.write_bytes(buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: Path) -> TrustModel:
        with np.load(path, allow_pickle=False) as saved:
            return cls(
                temperature=float(saved["temperature"]),
                alpha=float(saved["alpha"]),
                set_thresholds=saved["set_thresholds"].astype(np.float64),
                class_conditional=bool(saved["class_conditional"]),
                ood_score=str(saved["ood_score"]),
                ood_threshold=float(saved["ood_threshold"]),
                class_means=saved["class_means"].astype(np.float64),
                precision=saved["precision"].astype(np.float64),
                logit_kernel=saved["logit_kernel"].astype(np.float64),
                logit_bias=saved["logit_bias"].astype(np.float64),
                # absent from a layer that scores with one of the single scores only
                calibration_scores=saved["calibration_scores"].astype(np.float64)
                if "calibration_scores" in saved
                else np.ones((2, 2)),
            )


def means_term(means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    return np.asarray(((means @ precision) * means).sum(axis=1))


def mahalanobis_to_nearest(
    features: np.ndarray, means: np.ndarray, precision: np.ndarray, class_terms: np.ndarray | None = None
) -> np.ndarray:
    """Squared Mahalanobis distance to the nearest class mean, for a batch at once; ``class_terms``
    is ``means_term(means, precision)`` when the caller keeps it."""
    projected = features @ precision  # (N, D)
    own = np.einsum("nd,nd->n", projected, features)
    cross = projected @ means.T  # (N, C)
    constant = means_term(means, precision) if class_terms is None else class_terms
    distances = own[:, None] - 2 * cross + constant[None, :]
    return np.asarray(np.maximum(distances.min(axis=1), 0.0))
