"""Champion and challenger: a challenger is promoted only if it passed the quality gate and, against
the champion, the paired non-inferiority test (tasks/deployment/noninferiority.py) on the same images:
overall on ``deploy.metric`` and on every pre-declared slice.

"Worse" follows the metric's direction: lower accuracy, or higher ECE, is worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from configs.schema import Thresholds
from tasks.deployment.noninferiority import NonInferiority
from tasks.evaluation.gate import gate_violations


@dataclass(frozen=True)
class PromotionDecision:
    """The verdict on one challenger, with a one-line reason a person can read in the run summary."""

    promote: bool
    reason: str
    challenger: str
    champion: str | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None = None
    comparison: NonInferiority | None = None  # the intervals the decision rests on
    in_shadow: bool = False  # passed offline and running in shadow: neither promoted nor refused yet
    shadow: dict[str, Any] | None = None  # the judged shadow report (tasks/deployment/shadow.py)

    @property
    def shadow_started_or_stopped(self) -> bool:
        """In shadow without a report: just started; a report without being in shadow: it stopped."""
        return self.in_shadow != (self.shadow is not None)

    def evidence(self) -> dict[str, Any] | None:
        """What the audit trail keeps of the decision: the paired intervals and the shadow's report."""
        if self.comparison is None and self.shadow is None:
            return None
        shadow = {"shadow": self.shadow} if self.shadow is not None else {}
        return {**(self.comparison.as_dict() if self.comparison else {}), **shadow}

    @property
    def champion_after(self) -> str | None:
        return self.challenger if self.promote else self.champion


def already_champion(version: str, metrics: dict[str, float]) -> PromotionDecision:
    return PromotionDecision(
        False, f"version {version} is already the champion; nothing to do", version, version, metrics
    )


def decide_promotion(
    challenger: str,
    champion: str | None,
    challenger_metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    thresholds: Thresholds,
    comparison: NonInferiority | None,
) -> PromotionDecision:
    """Refuse a challenger that breaks the gate or is not shown non-inferior to the champion."""

    def decided(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(
            promote, reason, challenger, champion, challenger_metrics, champion_metrics, comparison
        )

    violations = gate_violations(challenger_metrics, thresholds)
    if violations:
        return decided(False, f"failed the quality gate: {'; '.join(violations)}")
    if champion is None or comparison is None:
        return decided(True, "passed the quality gate; no champion yet")
    overall = comparison.overall
    if not comparison.passed:
        failures = "; ".join(failure.describe() for failure in comparison.failures)
        return decided(False, f"not shown non-inferior to version {champion}: {failures}")
    judged = sum(s.judged for s in comparison.slices)
    return decided(
        True,
        f"non-inferior to version {champion}: {overall.describe()}; all {judged} judged slices within "
        f"{comparison.slices[0].margin if comparison.slices else overall.margin}",
    )
