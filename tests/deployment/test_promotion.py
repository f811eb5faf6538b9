"""Promotion: a challenger that breaks the gate, or is not shown non-inferior to the champion, stays out."""

from __future__ import annotations

import numpy as np

from tasks.deployment.noninferiority import NonInferiority, non_inferiority
from tasks.deployment.promotion import already_champion, decide_promotion
from tests.deployment.test_noninferiority import CLASSES, model_outputs

GATE = {"accuracy": (0.8, "lower")}


def comparison(challenger_accuracy: float, metric: str = "accuracy", margin: float = 0.01) -> NonInferiority:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, len(CLASSES), 20_000)
    champion = model_outputs(rng, labels, np.full(len(CLASSES), 0.9))
    challenger = model_outputs(rng, labels, np.full(len(CLASSES), challenger_accuracy))
    return non_inferiority(labels, challenger, champion, CLASSES, metric, margin, 0.05, 0.95, resamples=300)


def test_first_challenger_that_passes_the_gate_is_promoted() -> None:
    decision = decide_promotion("1", None, {"accuracy": 0.9}, None, GATE, None)
    assert decision.promote and decision.champion_after == "1" and "no champion yet" in decision.reason


def test_a_non_inferior_challenger_is_promoted_and_a_worse_one_is_not_with_the_evidence() -> None:
    tie = decide_promotion("2", "1", {"accuracy": 0.9}, {"accuracy": 0.9}, GATE, comparison(0.9))
    assert tie.promote and tie.champion_after == "2" and "non-inferior to version 1" in tie.reason
    worse = comparison(0.87)
    refused = decide_promotion("2", "1", {"accuracy": 0.87}, {"accuracy": 0.9}, GATE, worse)
    assert not refused.promote and refused.champion_after == "1" and refused.comparison is worse
    assert (
        "not shown non-inferior to version 1: overall: accuracy" in refused.reason and "margin 0.01" in refused.reason
    )


def test_challenger_that_breaks_the_gate_is_not_promoted_however_good_against_the_champion() -> None:
    gated = decide_promotion("2", "1", {"accuracy": 0.7}, {"accuracy": 0.5}, GATE, comparison(0.9))
    assert not gated.promote and "failed the quality gate: accuracy = 0.7000, below the lower bound 0.8" in gated.reason


def test_the_champion_itself_is_left_as_it_is() -> None:
    decision = already_champion("3", {"accuracy": 0.9})
    assert not decision.promote and decision.champion_after == "3" and "already the champion" in decision.reason
