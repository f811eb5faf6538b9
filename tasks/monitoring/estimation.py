"""Accuracy of a window of served predictions before its labels arrive, from calibrated confidences.

- **Average confidence** (the default): the mean top calibrated probability. Exact in expectation
  while the model stays calibrated on the window, whether its images got harder or easier.
- **ATC** (average thresholded confidence, Garg et al., ICLR 2022): on labelled held-out data (the
  version's reference rows), the confidence threshold t at which the share of rows above t equals
  their accuracy; the window's estimate is its share of rows above t. Built for models that are not
  calibrated; after temperature scaling it under-estimates windows of harder images
  (tests/monitoring/test_estimation.py), so it is reported beside the default, not instead of it.

Confidence cannot see a shift that makes the model confidently wrong (a brightness or contrast change
costs 14 to 38 points of accuracy that every confidence-based estimator, NannyML's CBPE included,
misses: BENCHMARKS.md). So the interval is honest about it: a percentile bootstrap over the window's
rows (sampling error), widened downwards by the rows the trust layer flagged out of distribution,
counted as wrong there, since nothing labelled says how the model does on them.
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
    interval: tuple[float, float]  # 95% bootstrap, its low end lowered by the out-of-distribution rows
    by_estimator: dict[str, float]  # every estimator's value, for comparison
    ood_share: float | None = None  # share of the window flagged out of distribution

    def as_dict(self) -> dict[str, object]:
        return {
            "estimated_accuracy": self.value,
            "estimated_accuracy_interval": list(self.interval),
            "estimator": self.estimator,
            "estimators": self.by_estimator,
            "ood_share": self.ood_share,
        }


def estimate_accuracy(
    window_confidence: np.ndarray,
    reference_confidence: np.ndarray,
    reference_correct: np.ndarray,
    estimator: str = "average_confidence",
    resamples: int = 1000,
    seed: int = 0,
    ood: np.ndarray | None = None,
) -> AccuracyEstimate:
    """The window's accuracy by ``estimator`` with its interval, and every estimator's value.

    ``ood`` (a flag per window row, when the version has a trust layer) lowers the interval's low end
    to the estimate with every flagged row counted wrong."""
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
    share = None
    if ood is not None and len(ood) == len(window_confidence):
        share = float(ood.mean())
        kept = np.where(ood, 0.0, window_confidence if estimator != "atc" else (window_confidence > threshold))
        low = min(low, float(kept.mean()))
    return AccuracyEstimate(estimator, point[estimator], (float(low), float(high)), point, share)
