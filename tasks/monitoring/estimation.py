"""Accuracy of a window of served predictions before its labels arrive, from calibrated confidences.

- **Average confidence** (the default): the mean top calibrated probability. Exact in expectation
  while the model stays calibrated on the window, whether its images got harder or easier.
- **ATC** (average thresholded confidence, Garg et al., ICLR 2022): on labelled held-out data (the
  version's reference rows), the confidence threshold t at which the share of rows above t equals
  their accuracy; the window's estimate is its share of rows above t. Built for models that are not
  calibrated; after temperature scaling it under-estimates windows of harder images
  (tests/monitoring/test_estimation.py), so it is reported beside the default, not instead of it.

The interval is a percentile bootstrap over the window's rows: the estimate's sampling error, not a
bound on how wrong it can be under a shift no labelled data has shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("atc", "average_confidence")


def atc_threshold(confidence: np.ndarray, correct: np.ndarray) -> float:
    """The t with mean(confidence > t) == mean(correct) on labelled rows."""
    return float(np.quantile(confidence, 1.0 - correct.mean()))


@dataclass(frozen=True)
class AccuracyEstimate:
    estimator: str
    value: float
    interval: tuple[float, float]  # 95% percentile bootstrap over the window's rows
    by_estimator: dict[str, float]  # every estimator's value, for comparison

    def as_dict(self) -> dict[str, object]:
        return {
            "estimated_accuracy": self.value,
            "estimated_accuracy_interval": list(self.interval),
            "estimator": self.estimator,
            "estimators": self.by_estimator,
        }


def estimate_accuracy(
    window_confidence: np.ndarray,
    reference_confidence: np.ndarray,
    reference_correct: np.ndarray,
    estimator: str = "average_confidence",
    resamples: int = 1000,
    seed: int = 0,
) -> AccuracyEstimate:
    """The window's accuracy by ``estimator`` with its bootstrap interval, and every estimator's value."""
    if len(reference_correct) == 0:  # nothing labelled to fit ATC's threshold on
        estimator, threshold = "average_confidence", float("nan")
    else:
        threshold = atc_threshold(reference_confidence, reference_correct)

    def values(confidence: np.ndarray) -> dict[str, float]:
        atc = float((confidence > threshold).mean()) if threshold == threshold else float("nan")
        return {"atc": atc, "average_confidence": float(confidence.mean())}

    point = values(window_confidence)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(window_confidence), size=(resamples, len(window_confidence)))
    resampled = window_confidence[draws]
    boot = (resampled > threshold).mean(axis=1) if estimator == "atc" else resampled.mean(axis=1)
    low, high = np.quantile(boot, [0.025, 0.975])
    return AccuracyEstimate(estimator, point[estimator], (float(low), float(high)), point)
