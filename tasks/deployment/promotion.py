"""Champion and challenger: a challenger is promoted only if it passed the gate and is not worse
than the champion, on the same split, by more than the configured margin.

"Worse" follows the metric's direction: lower accuracy, or higher ECE, is worse.
"""

from __future__ import annotations

from dataclasses import dataclass

from configs.metrics import metric_direction
from configs.schema import DeployConfig, Thresholds
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
    rule: DeployConfig,
) -> PromotionDecision:
    """Refuse a challenger that breaks the gate or trails the champion by more than the margin."""

    def decided(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, reason, challenger, champion, challenger_metrics, champion_metrics)

    violations = gate_violations(challenger_metrics, thresholds)
    metric = rule.metric
    if violations:
        return decided(False, f"failed the quality gate: {'; '.join(violations)}")
    if metric not in challenger_metrics:
        return decided(False, f"deploy.metric {metric!r} was not computed")
    if champion is None or champion_metrics is None:
        return decided(True, f"no champion yet; challenger {metric} = {challenger_metrics[metric]:.4f}")
    ahead = challenger_metrics[metric] - champion_metrics[metric]
    if metric_direction(metric) == "lower":
        ahead = -ahead
    comparison = f"challenger {metric} {challenger_metrics[metric]:.4f} vs champion {champion_metrics[metric]:.4f}"
    if ahead < -rule.margin:
        return decided(False, f"{comparison}: worse by {-ahead:.4f}, more than the margin {rule.margin}")
    return decided(True, f"{comparison}: within the margin {rule.margin} or better")
