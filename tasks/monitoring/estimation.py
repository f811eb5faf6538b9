"""Accuracy of a window of served predictions before its labels arrive.

- **Shift regression** (the default, when the version has one): average confidence corrected by the
  gap a regression predicts from the window's statistics (confidence distribution, out-of-distribution
  scores, image properties against the calibration images), fitted at training time on the
  calibration images under synthetic acquisition shifts (tasks/core/shift_regression.py). It sees
  the brightness, contrast and blur changes that leave the model confidently wrong.
- **Average confidence**: the mean top calibrated probability. Exact in expectation while the model
  stays calibrated on the window, whether its images got harder or easier; blind to the shifts above
  (14 to 38 points off, as is NannyML's CBPE: BENCHMARKS.md).
- **ATC** (average thresholded confidence, Garg et al., ICLR 2022): on labelled held-out data (the
  version's reference rows), the confidence threshold t at which the share of rows above t equals
  their accuracy; the window's estimate is its share of rows above t. Built for models that are not
  calibrated; after temperature scaling it under-estimates windows of harder images
  (tests/monitoring/test_estimation.py).

Every available estimator is reported; the configured one decides. The estimate is marked reliable
when the shift regression's window lies within the range of the synthetic windows it was fitted on,
or, for the confidence estimators, when the window did not drift. Intervals: a percentile bootstrap
over the window's rows (sampling error); for the shift regression, combined with its own error on
windows it did not fit (95th percentile); for the confidence estimators, widened downwards by the
rows flagged out of distribution, counted as wrong there, since nothing labelled says how the model
does on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.core.shift_regression import ShiftRegression

ESTIMATORS = ("shift_regression", "average_confidence", "atc")
SHIFT_RESAMPLES = 200  # each resample recomputes the window features: fewer than the scalar estimators


def atc_threshold(confidence: np.ndarray, correct: np.ndarray) -> float:
    """The t with mean(confidence > t) == mean(correct) on labelled rows."""
    return float(np.quantile(confidence, 1.0 - correct.mean()))


@dataclass(frozen=True)
class AccuracyEstimate:
    estimator: str  # the one that decided; the configured one, unless the version or window lacks its inputs
    value: float
    interval: tuple[float, float]  # 95%
    by_estimator: dict[str, float]  # every available estimator's value, for comparison
    ood_share: float | None = None  # share of the window flagged out of distribution
    within_fit: bool | None = None  # shift regression: the window looks like the shifted windows it learned from

    def as_dict(self) -> dict[str, object]:
        return {
            "estimated_accuracy": self.value,
            "estimated_accuracy_interval": list(self.interval),
            "estimator": self.estimator,
            "estimators": self.by_estimator,
            "ood_share": self.ood_share,
            "within_fit": self.within_fit,
        }


@dataclass(frozen=True)
class ShiftInputs:
    """What the shift regression reads from the window: its scores and properties, row by row."""

    regression: ShiftRegression
    ood_scores: np.ndarray  # (N,)
    properties: np.ndarray  # (N, 3) in FEATURE_PROPERTIES order


def estimate_accuracy(
    window_probabilities: np.ndarray,
    reference_confidence: np.ndarray,
    reference_correct: np.ndarray,
    estimator: str = "shift_regression",
    resamples: int = 1000,
    seed: int = 0,
    ood: np.ndarray | None = None,
    shift: ShiftInputs | None = None,
) -> AccuracyEstimate:
    """The window's accuracy by ``estimator`` with its interval, and every available estimator's value.

    ``window_probabilities`` are the served calibrated probabilities (N, C). ``ood`` (a flag per row,
    when the version has a trust layer) lowers a confidence estimator's low end to its estimate with
    every flagged row counted wrong. ``shift`` enables the shift regression; without it that estimator
    falls back to average confidence."""
    confidence = window_probabilities.max(axis=1)
    threshold = atc_threshold(reference_confidence, reference_correct) if len(reference_correct) else None
    point = {"average_confidence": float(confidence.mean())}
    if threshold is not None:
        point["atc"] = float((confidence > threshold).mean())
    window_features = None
    if shift is not None:  # the window's features: its estimate and whether they lie within the fit
        window_features = shift.regression.features(window_probabilities, shift.ood_scores, shift.properties)
        point["shift_regression"] = shift.regression.estimate_from(window_features)
    if estimator not in point:  # the version or the window lacks its inputs
        estimator = "average_confidence"

    rng = np.random.default_rng(seed)
    within_fit = None
    if estimator == "shift_regression":
        assert shift is not None and window_features is not None
        draws = rng.integers(0, len(confidence), size=(SHIFT_RESAMPLES, len(confidence)))
        features = np.stack(
            [
                shift.regression.features(window_probabilities[d], shift.ood_scores[d], shift.properties[d])
                for d in draws
            ]
        )
        boot = features[:, 0] + shift.regression.gap(features)
        value = point[estimator]
        within_fit = shift.regression.covers(window_features)
        below, above = value - np.quantile(boot, 0.025), np.quantile(boot, 0.975) - value
        error = shift.regression.residual_95  # the regression's own error, independent of the sampling error
        low = value - float(np.hypot(max(below, 0.0), error))
        high = value + float(np.hypot(max(above, 0.0), error))
    else:
        draws = rng.integers(0, len(confidence), size=(resamples, len(confidence)))
        resampled = confidence[draws]
        boot = (resampled > threshold).mean(axis=1) if estimator == "atc" else resampled.mean(axis=1)
        low, high = (float(q) for q in np.quantile(boot, [0.025, 0.975]))
        if ood is not None and len(ood) == len(confidence):
            kept = np.where(ood, 0.0, (confidence > threshold) if estimator == "atc" else confidence)
            low = min(low, float(kept.mean()))
    share = float(ood.mean()) if ood is not None and len(ood) == len(confidence) else None
    interval = (max(low, 0.0), min(high, 1.0))
    return AccuracyEstimate(estimator, point[estimator], interval, point, share, within_fit)
