"""Evaluation metrics and the quality gate, on predictions whose right answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from configs.metrics import OVERALL_METRICS, metric_direction
from tasks.core.trust import expected_calibration_error
from tasks.evaluation.metrics import classification_metrics
from tasks.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_worst_misclassified
from tests.helpers.predictions import FLAWED, PERFECT


def test_metrics_of_a_perfect_classifier() -> None:
    metrics = classification_metrics(PERFECT)
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0 and metrics["macro_auc"] == 1.0
    assert metrics["recall/coat"] == 1.0 and metrics["precision/shirt"] == 1.0


def test_per_class_metrics_follow_the_mistakes() -> None:
    metrics = classification_metrics(FLAWED)
    assert metrics["accuracy"] == 0.5
    assert metrics["recall/coat"] == 0.5  # one of two coats found
    assert metrics["precision/coat"] == 0.5  # one of two "coat" calls right
    assert metrics["recall/dress"] == 0.0 and metrics["precision/shirt"] == 0.5


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident() -> None:
    labels = np.array([0, 0, 1, 1])
    honest = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])  # 50% sure, 50% right
    assert expected_calibration_error(labels, honest) == pytest.approx(0.0)
    overconfident = np.array([[0.99, 0.01], [0.01, 0.99], [0.99, 0.01], [0.01, 0.99]])  # sure, half wrong
    assert expected_calibration_error(labels, overconfident) == pytest.approx(0.49)


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    for index, path in enumerate(FLAWED.paths):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((28, 28), index * 60, dtype=np.uint8)).save(tmp_path / path)
    files = [
        plot_confusion_matrix(FLAWED, tmp_path / "confusion.png"),
        plot_reliability(FLAWED, tmp_path / "reliability.png"),
        plot_worst_misclassified(FLAWED, tmp_path, tmp_path / "worst.png"),
    ]
    for file in files:
        with Image.open(file) as image:
            assert image.format == "PNG" and image.width > 300


def test_every_computed_metric_is_one_a_config_may_name() -> None:
    metrics = classification_metrics(FLAWED)
    assert set(OVERALL_METRICS) <= set(metrics)
    assert all(metric_direction(name) is not None for name in metrics), sorted(metrics)


def test_the_trust_metrics_can_be_gated_on_the_side_that_keeps_worse_models_out() -> None:
    assert metric_direction("set_coverage") == "higher" and metric_direction("set_coverage/coat") == "higher"
    assert metric_direction("mean_set_size") == "lower" and metric_direction("ood_rate") == "lower"
