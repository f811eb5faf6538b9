"""Champion and challenger: a challenger is promoted only if it passed the gate and is not worse
than the champion, on the same split, by more than the configured margin."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def decide_promotion(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    violations: list[str],
    metric: str,
    margin: float,
) -> PromotionDecision:
    """The verdict and a one-line reason a person can read in the run summary."""
    if violations:
        return PromotionDecision(False, f"failed the quality gate: {'; '.join(violations)}")
    if metric not in challenger:
        return PromotionDecision(False, f"deploy.metric {metric!r} was not computed")
    if champion is None:
        return PromotionDecision(True, f"no champion yet; challenger {metric} = {challenger[metric]:.4f}")
    difference = challenger[metric] - champion[metric]
    comparison = f"challenger {metric} {challenger[metric]:.4f} vs champion {champion[metric]:.4f}"
    if difference < -margin:
        return PromotionDecision(False, f"{comparison}: worse by {-difference:.4f}, more than the margin {margin}")
    return PromotionDecision(True, f"{comparison}: within the margin {margin} or better")
