"""The quality gate: every threshold a model breaks is collected, then the gate fails once with the list."""

from __future__ import annotations

import numpy as np

from configs.schema import Thresholds
from tasks.core.errors import QualityGateError


def gate_violations(metrics: dict[str, float], thresholds: Thresholds) -> list[str]:
    """Every threshold the metrics break; one on a metric not computed (a class the model lacks) is a violation too."""
    violations = []
    for name, (bound, direction) in sorted(thresholds.items()):
        if name not in metrics:
            violations.append(f"{name}: not computed (does the model have that class?)")
            continue
        value = metrics[name]
        if np.isnan(value):
            violations.append(f"{name}: could not be computed on this split")
        elif direction == "lower" and value < bound:
            violations.append(f"{name} = {value:.4f}, below the lower bound {bound}")
        elif direction == "upper" and value > bound:
            violations.append(f"{name} = {value:.4f}, above the upper bound {bound}")
    return violations


def enforce_gate(metrics: dict[str, float], thresholds: Thresholds, subject: str) -> None:
    violations = gate_violations(metrics, thresholds)
    if violations:
        listed = "\n".join(f"  - {v}" for v in violations)
        raise QualityGateError(f"{subject} failed the quality gate ({len(violations)} violation(s)):\n{listed}")
