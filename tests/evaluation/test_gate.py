"""The quality gate collects every violation, then fails once with the list."""

from __future__ import annotations

import pytest

from tasks.core.errors import QualityGateError
from tasks.evaluation.gate import enforce_gate, gate_violations
from tasks.evaluation.metrics import classification_metrics
from tests.helpers.predictions import FLAWED, PERFECT


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
    assert any(v.startswith("recall/hat: not computed") for v in violations)
    with pytest.raises(QualityGateError, match=r"4 violation\(s\)"):
        enforce_gate(metrics, thresholds, "fashion-cnn version 3")


def test_gate_passes_a_model_within_bounds() -> None:
    enforce_gate(classification_metrics(PERFECT), {"accuracy": (0.9, "lower"), "ece": (0.5, "upper")}, "model")
