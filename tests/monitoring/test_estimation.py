"""Accuracy estimated from calibrated confidences, on windows whose true accuracy is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs.schema import MonitorConfig
from tasks.core.shift_regression import ShiftRegression, window_features
from tasks.core.trust import softmax
from tasks.monitoring.estimation import estimate_accuracy
from tasks.monitoring.verdict import decide
from tasks.training.synthetic_shifts import SyntheticWindows, fit_shift_regression
from tests.helpers.monitoring import CLASSES, window


def calibrated(rng: np.random.Generator, n: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and correctness of a calibrated model; ``spread`` sets how easy the images are."""
    probabilities = softmax(rng.normal(0.0, spread, size=(n, 10)))
    labels = np.array([rng.choice(10, p=row) for row in probabilities])
    return probabilities, probabilities.argmax(axis=1) == labels


@pytest.mark.parametrize("spread", [1.5, 3.0, 6.0])  # harder, same and easier images than the reference
def test_on_calibrated_windows_the_estimate_lands_within_three_points_and_its_interval_holds_it(spread: float) -> None:
    rng = np.random.default_rng(int(spread * 10))
    reference_probabilities, reference_correct = calibrated(rng, 5_000, 3.0)
    window_probabilities, window_correct = calibrated(rng, 2_000, spread)
    reference_confidence = reference_probabilities.max(axis=1)
    estimate = estimate_accuracy(window_probabilities, reference_confidence, reference_correct, "average_confidence")
    realized = window_correct.mean()
    assert abs(estimate.value - realized) < 0.03
    low, high = estimate.interval
    assert low - 0.01 <= realized <= high + 0.01 and high - low < 0.06
    # ATC is reported beside it; on harder images it under-estimates here (its threshold comes from easier ones).
    assert set(estimate.by_estimator) == {"atc", "average_confidence"}


def darkened_windows(rng: np.random.Generator, count: int) -> SyntheticWindows:
    """Windows of a calibrated model whose accuracy falls below its confidence as the images get
    darker: a brightness offset costs accuracy the confidences do not show (as measured here)."""
    features, accuracy = [], []
    for _ in range(count):
        darkening = rng.uniform(0.0, 3.0) if rng.random() < 0.8 else 0.0  # in standard deviations
        probabilities, correct = calibrated(rng, 300, 3.0)
        properties = rng.normal([0.0, 0.0, 0.0], 1.0, size=(300, 3)) - [darkening, 0.0, 0.0]
        row = window_features(probabilities, rng.normal(0, 1, 300), properties, np.zeros(3), np.ones(3), 1.0)
        features.append(row)
        accuracy.append(correct.mean() - 0.1 * darkening)  # confidently wrong on dark images
    return SyntheticWindows(
        np.array(features), np.array(accuracy), np.array(["x"] * count), np.zeros(3), np.ones(3), 1.0
    )


def test_the_shift_regression_learns_the_gap_confidence_misses_and_survives_saving(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    regression, error_points = fit_shift_regression(darkened_windows(rng, 400), seed=0)
    assert error_points < 3.0  # out of fold, in accuracy points
    loaded = ShiftRegression.load(regression.save(tmp_path / "shift_regression.npz"))
    fresh = darkened_windows(rng, 100)
    predicted = fresh.features[:, 0] + loaded.gap(fresh.features)
    # The exported trees predict what the fitted ones learned: far closer than average confidence.
    assert np.abs(predicted - fresh.accuracy).mean() < 0.03 < np.abs(fresh.gap).mean()
    assert np.array_equal(loaded.gap(fresh.features), regression.gap(fresh.features))


def test_the_monitor_uses_the_shift_regression_when_the_window_has_its_signals() -> None:
    rng = np.random.default_rng(6)
    regression, _ = fit_shift_regression(darkened_windows(rng, 300), seed=0)
    reference = window(rng, 300, 0.0, 300)
    current = window(rng, 300, 0.0, 0).assign(label=None)
    current["ood_score"], current["sharpness"] = rng.normal(0, 1, 300), rng.normal(0, 1, 300)
    current["brightness"], current["contrast"] = rng.normal(-2.5, 1, 300), rng.normal(0, 1, 300)  # darkened
    verdict = decide(reference, current, CLASSES, MonitorConfig(), regression=regression)
    assert verdict.estimate is not None and verdict.estimate.estimator == "shift_regression"
    shifted, confidence = verdict.estimate.value, verdict.estimate.by_estimator["average_confidence"]
    assert shifted < confidence - 0.15  # the darkening's cost, which confidence alone does not show
    low, high = verdict.estimate.interval
    assert low <= shifted <= high and high - low < 0.3
    assert verdict.as_dict()["estimate_reliable"]  # darkened as far as the windows it learned from
    # Far darker than anything it learned from: still an estimate, but not vouched for.
    darker = decide(
        reference,
        current.assign(brightness=current["brightness"] - 10),
        CLASSES,
        MonitorConfig(),
        regression=regression,
    )
    assert darker.estimate is not None and darker.estimate.within_fit is False
    assert not darker.as_dict()["estimate_reliable"]
    # A log written before the service scored out-of-distribution rows: average confidence decides.
    older = decide(reference, current.assign(ood_score=None), CLASSES, MonitorConfig(), regression=regression)
    assert older.estimate is not None and older.estimate.estimator == "average_confidence"


def test_without_labels_the_accuracy_threshold_applies_to_the_estimate() -> None:
    rng = np.random.default_rng(3)
    reference = window(rng, 300, 0.0, 300)
    current = window(rng, 150, 0.0, 0).assign(label=None)  # no feedback yet
    strict = MonitorConfig(thresholds={"accuracy": [0.99, "lower"]})
    verdict = decide(reference, current, CLASSES, strict)
    assert verdict.performance_breach and verdict.estimate is not None
    assert any(v.startswith("estimated (average_confidence, before labels)") for v in verdict.violations)
    lenient = decide(reference, current, CLASSES, MonitorConfig(thresholds={"accuracy": [0.01, "lower"]}))
    assert not lenient.performance_breach  # too few labels alone is reported, not a breach
    assert "estimated_accuracy_interval" in verdict.as_dict()


def test_set_coverage_counts_the_labelled_rows_whose_set_held_the_label() -> None:
    rng = np.random.default_rng(4)
    current = window(rng, 4, 0.0, 4)
    current["prediction_set"] = [[current["label"][0]], ["none"], [current["label"][2], "x"], None]
    verdict = decide(window(rng, 300, 0.0, 300), current, CLASSES, MonitorConfig())
    assert verdict.set_coverage == pytest.approx(2 / 3)
    assert isinstance(pd.DataFrame(current), pd.DataFrame)
