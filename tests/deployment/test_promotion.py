"""Promotion: a challenger that breaks the gate, or trails the champion by more than the margin, stays out."""

from __future__ import annotations

from configs.schema import DeployConfig
from tasks.deployment.promotion import already_champion, decide_promotion

ACCURACY = DeployConfig(metric="accuracy", margin=0.01)
GATE = {"accuracy": (0.8, "lower")}


def test_first_challenger_that_passes_the_gate_is_promoted() -> None:
    decision = decide_promotion("1", None, {"accuracy": 0.9}, None, GATE, ACCURACY)
    assert decision.promote and decision.champion_after == "1" and "no champion yet" in decision.reason


def test_challenger_within_the_margin_is_promoted_and_one_beyond_it_is_not() -> None:
    tie = decide_promotion("2", "1", {"accuracy": 0.905}, {"accuracy": 0.91}, GATE, ACCURACY)
    assert tie.promote and tie.champion_after == "2"
    refused = decide_promotion("2", "1", {"accuracy": 0.88}, {"accuracy": 0.91}, GATE, ACCURACY)
    assert not refused.promote and refused.champion_after == "1"
    assert "worse by 0.0300, more than the margin 0.01" in refused.reason


def test_challenger_that_breaks_the_gate_is_not_promoted_however_good_against_the_champion() -> None:
    gated = decide_promotion("2", "1", {"accuracy": 0.7}, {"accuracy": 0.5}, GATE, ACCURACY)
    assert not gated.promote and "failed the quality gate: accuracy = 0.7000, below the lower bound 0.8" in gated.reason


def test_lower_is_better_metric_never_promotes_the_worse_model() -> None:
    rule = DeployConfig(metric="ece", margin=0.005)
    worse = decide_promotion("2", "1", {"accuracy": 0.9, "ece": 0.08}, {"accuracy": 0.9, "ece": 0.02}, GATE, rule)
    assert not worse.promote and "worse by 0.0600" in worse.reason
    better = decide_promotion("2", "1", {"accuracy": 0.9, "ece": 0.01}, {"accuracy": 0.9, "ece": 0.02}, GATE, rule)
    assert better.promote


def test_promotion_metric_that_was_not_computed_refuses() -> None:
    rule = DeployConfig(metric="recall/hat")
    decision = decide_promotion("2", "1", {"accuracy": 0.9}, {"accuracy": 0.9}, GATE, rule)
    assert not decision.promote and "'recall/hat' was not computed" in decision.reason


def test_the_champion_itself_is_left_as_it_is() -> None:
    decision = already_champion("3", {"accuracy": 0.9})
    assert not decision.promote and decision.champion_after == "3" and "already the champion" in decision.reason
