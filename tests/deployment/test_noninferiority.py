"""The paired non-inferiority gate on simulated models whose true difference is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.deployment.noninferiority import non_inferiority

CLASSES = [f"class_{i}" for i in range(10)]


def model_outputs(rng: np.random.Generator, labels: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Probabilities of a model right on each image with its class's ``accuracy``, its errors independent
    of any other model's; confident (0.9) either way."""
    right = rng.random(len(labels)) < accuracy[labels]
    wrong_class = (labels + rng.integers(1, len(CLASSES), len(labels))) % len(CLASSES)
    answer = np.where(right, labels, wrong_class)
    probabilities = np.full((len(labels), len(CLASSES)), 0.1 / (len(CLASSES) - 1))
    probabilities[np.arange(len(labels)), answer] = 0.9
    return probabilities


def gate(rng: np.random.Generator, challenger_accuracy: np.ndarray, rows: int = 5000, **rule: object):  # type: ignore[no-untyped-def]
    labels = rng.integers(0, len(CLASSES), rows)
    champion = model_outputs(rng, labels, np.full(len(CLASSES), 0.9))
    challenger = model_outputs(rng, labels, challenger_accuracy)
    settings = {"metric": "accuracy", "margin": 0.02, "slice_margin": 0.06, "confidence": 0.95, "resamples": 400}
    return non_inferiority(labels, challenger, champion, CLASSES, **(settings | rule), seed=int(rng.integers(1 << 30)))  # type: ignore[arg-type]


def test_two_models_of_equal_accuracy_pass_at_least_at_the_confidence_level() -> None:
    # Independent errors (18% of images disagree): the pessimistic case for a paired test.
    rng = np.random.default_rng(0)
    passed = [gate(rng, np.full(len(CLASSES), 0.9), rows=20_000).passed for _ in range(40)]
    assert np.mean(passed) >= 0.95


def test_a_challenger_exactly_one_margin_worse_passes_at_most_one_minus_the_confidence() -> None:
    # The boundary of non-inferiority: the type I error of the headline test (no slices refuse here).
    rng = np.random.default_rng(1)
    results = [gate(rng, np.full(len(CLASSES), 0.88), slice_margin=1.0) for _ in range(100)]
    passed = np.mean([r.overall.passed for r in results])
    assert passed <= 0.05 + 0.06  # 0.05 plus a binomial allowance for 100 trials


def test_a_challenger_worse_by_five_points_on_one_class_only_is_refused_naming_the_class() -> None:
    rng = np.random.default_rng(2)
    accuracy = np.full(len(CLASSES), 0.9)
    accuracy[3] = 0.75  # 15 points on one class of ten: 1.5 points overall, within the overall margin
    result = gate(rng, accuracy, rows=20_000, slice_margin=0.05)
    assert result.overall.passed and not result.passed
    assert [f.scope for f in result.failures] == ["class class_3"]
    assert "class class_3" in result.failures[0].describe()


def test_a_lower_is_better_metric_is_oriented_so_a_worse_challenger_fails() -> None:
    rng = np.random.default_rng(3)
    result = gate(rng, np.full(len(CLASSES), 0.8), metric="log_loss", margin=0.05, slice_margin=1.0)
    assert result.overall.champion < result.overall.challenger  # higher loss: worse
    assert result.overall.difference < 0 and not result.overall.passed


def test_property_terciles_are_slices_and_tiny_slices_are_reported_not_judged() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, len(CLASSES), 300)
    champion = model_outputs(rng, labels, np.full(len(CLASSES), 0.9))
    properties = pd.DataFrame({"brightness": rng.random(300), "contrast": rng.random(300)})
    result = non_inferiority(
        labels, champion, champion, CLASSES, "ece", 0.01, 0.05, 0.95, resamples=50, properties=properties,
        min_slice_rows=50,
    )  # fmt: skip
    scopes = {s.scope: s for s in result.slices}
    assert {"brightness low third", "contrast high third"} <= set(scopes)
    assert scopes["brightness low third"].metric == "accuracy" and scopes["brightness low third"].rows == 100
    assert not scopes["class class_0"].judged and scopes["class class_0"].passed  # about 30 rows
    assert result.passed and result.overall.difference == pytest.approx(0.0)
