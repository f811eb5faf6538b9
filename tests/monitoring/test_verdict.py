"""The monitor's verdict on windows whose truth is known: live quality, label freshness, drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs.schema import MonitorConfig
from tasks.monitoring.verdict import decide

NAMES = ["coat", "dress", "shirt"]


def test_monitor_verdict_flags_a_live_accuracy_breach_and_reports_label_freshness() -> None:
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
