"""The metrics thresholds and promotion rules may name, and the direction in which each is better.

Evaluation computes exactly these (``tasks/evaluation/metrics.py``; a test keeps the two in step),
so a misspelt metric or a bound on the wrong side fails when the config loads, not after training.
"""

from __future__ import annotations

import re
from typing import Literal

Better = Literal["higher", "lower"]

OVERALL_METRICS: dict[str, Better] = {
    "accuracy": "higher",
    "macro_f1": "higher",
    "macro_auc": "higher",
    "ece": "lower",
    "log_loss": "lower",
}
# Of a version with a trust layer (tasks/core/trust.py): its prediction sets, calibration and OOD flag
# on the evaluation split.
TRUST_METRICS: dict[str, Better] = {
    "set_coverage": "higher",
    "mean_set_size": "lower",
    "ece_uncalibrated": "lower",
    "ood_rate": "lower",
}
PER_CLASS_METRICS: dict[str, Better] = {
    "precision": "higher",
    "recall": "higher",
    "f1": "higher",
    "set_coverage": "higher",
}
# What the monitor can measure on served predictions that carry a feedback label.
LIVE_METRICS = ("accuracy", "recall/<class>")

_CLASS_NAME = r"[A-Za-z0-9_ .-]+"


def metric_direction(name: str) -> Better | None:
    """``higher`` or ``lower`` for a metric evaluation computes (``recall/coat`` included); None if unknown."""
    if name in OVERALL_METRICS:
        return OVERALL_METRICS[name]
    if name in TRUST_METRICS:
        return TRUST_METRICS[name]
    family, slash, class_name = name.partition("/")
    if slash and family in PER_CLASS_METRICS and re.fullmatch(_CLASS_NAME, class_name):
        return PER_CLASS_METRICS[family]
    return None


def is_live_metric(name: str) -> bool:
    family, slash, class_name = name.partition("/")
    return name == "accuracy" or (family == "recall" and bool(slash) and bool(re.fullmatch(_CLASS_NAME, class_name)))


def known_metrics() -> str:
    """The names a config may use, for error messages."""
    per_class = ", ".join(f"{family}/<class>" for family in PER_CLASS_METRICS)
    return f"{', '.join([*OVERALL_METRICS, *TRUST_METRICS])}, {per_class}"
