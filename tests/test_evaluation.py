"""Evaluation metrics and the quality gate, on predictions whose right answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.core.errors import QualityGateError
from tasks.evaluation.metrics import (
    Predictions,
    classification_metrics,
    enforce_gate,
    expected_calibration_error,
    gate_violations,
)
from tasks.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_worst_misclassified

NAMES = ["coat", "dress", "shirt"]


def predictions(labels: list[int], probabilities: list[list[float]]) -> Predictions:
    paths = [f"test/{NAMES[label]}/{i}.png" for i, label in enumerate(labels)]
    return Predictions(np.array(labels), np.array(probabilities), paths, NAMES)


PERFECT = predictions([0, 1, 2, 0], [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.0, 0.2, 0.8], [0.7, 0.2, 0.1]])
# image 1 (a dress) is called a coat; image 3 (a coat) is called a shirt
FLAWED = predictions([0, 1, 2, 0], [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.0, 0.2, 0.8], [0.2, 0.2, 0.6]])


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


def test_gate_lists_every_violation_at_once() -> None:
    metrics = classification_metrics(FLAWED)
    thresholds = {
        "accuracy": (0.9, "lower"),
        "recall/dress": (0.5, "lower"),
        "ece": (0.01, "upper"),
        "recall/hat": (0.5, "lower"),
        "macro_auc": (0.1, "lower"),
    }
    violations = gate_violations(metrics, thresholds)
    assert len(violations) == 4
    assert "accuracy = 0.5000, below the lower bound 0.9" in violations
    assert any(v.startswith("ece = ") and "above the upper bound 0.01" in v for v in violations)
    assert any(v.startswith("recall/hat: not a computed metric") for v in violations)
    with pytest.raises(QualityGateError, match=r"4 violation\(s\)"):
        enforce_gate(metrics, thresholds, "fashion-cnn version 3")


def test_gate_passes_a_model_within_bounds() -> None:
    enforce_gate(classification_metrics(PERFECT), {"accuracy": (0.9, "lower"), "ece": (0.5, "upper")}, "model")


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


def test_promotion_rules() -> None:
    from tasks.deployment.promotion import decide_promotion

    assert decide_promotion({"accuracy": 0.9}, None, [], "accuracy", 0.01).promote
    assert decide_promotion({"accuracy": 0.905}, {"accuracy": 0.91}, [], "accuracy", 0.01).promote  # tie within margin
    refused = decide_promotion({"accuracy": 0.88}, {"accuracy": 0.91}, [], "accuracy", 0.01)
    assert not refused.promote and "worse by 0.0300, more than the margin 0.01" in refused.reason
    gated = decide_promotion({"accuracy": 0.99}, {"accuracy": 0.5}, ["ece = 0.2, above"], "accuracy", 0.01)
    assert not gated.promote and "failed the quality gate" in gated.reason


def test_code_fingerprint_follows_training_code_only(tmp_path: Path) -> None:
    from tasks.training.fingerprint import code_fingerprint

    for relative in ("tasks/a.py", "flows/b.py", "configs/schema.py", "services/s.py", "requirements.lock"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x = 1\n")
    before = code_fingerprint(tmp_path)
    (tmp_path / "services/s.py").write_text("x = 2\n")
    assert code_fingerprint(tmp_path) == before
    (tmp_path / "tasks/a.py").write_text("x = 2\n")
    assert code_fingerprint(tmp_path) != before


def test_monitor_verdict_flags_a_live_accuracy_breach_and_reports_label_freshness() -> None:
    import pandas as pd

    from configs.schema import MonitorConfig
    from tasks.monitoring.verdict import decide

    rng = np.random.default_rng(0)

    def frame(n: int, labels: list[str | None]) -> pd.DataFrame:
        data = {
            "prediction": ["coat"] * n,
            "label": labels,
            "brightness": rng.random(n),
            "contrast": rng.random(n),
            "sharpness": rng.random(n),
            "width": 28.0,
            "height": 28.0,
            "channels": 1.0,
        }
        for i in range(3):
            data[f"bbsd_{i}"] = rng.random(n)
        for i in range(4):
            data[f"uae_{i}"] = rng.normal(size=n)
        return pd.DataFrame(data)

    reference = frame(200, ["coat"] * 200)
    current = frame(60, ["coat"] * 20 + ["shirt"] * 10 + [None] * 30)  # 2 of 3 labelled right
    config = MonitorConfig(thresholds={"accuracy": (0.9, "lower")}, min_labelled=50)
    verdict = decide(reference, current, NAMES, config)
    assert verdict.performance == pytest.approx({"accuracy": 2 / 3, "recall/coat": 1.0, "recall/shirt": 0.0})
    assert verdict.performance_breach and verdict.alarm and not verdict.drift
    assert any("accuracy = 0.6667, below the lower bound 0.9" in v for v in verdict.violations)
    assert any("only 30 labelled predictions" in v for v in verdict.violations)
