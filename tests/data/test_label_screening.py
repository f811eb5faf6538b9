"""Confident-learning screening: confident disagreements are found, fairly across classes, and ranked."""

from __future__ import annotations

import numpy as np

from tasks.data.label_screening import class_thresholds, likely_label_errors


def test_confidently_other_class_labels_are_found_most_doubtful_first() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    probabilities = np.full((300, 3), 0.1)
    probabilities[np.arange(300), labels] = 0.8
    planted = {5: 0.1, 40: 0.02, 77: 0.05}  # the model gives the label this much, the next class the rest
    for row, on_label in planted.items():
        probabilities[row] = [0.0, 0.0, 0.0]
        probabilities[row, labels[row]] = on_label
        probabilities[row, (labels[row] + 1) % 3] = 1.0 - on_label
    probabilities[6] = [0.34, 0.33, 0.33]  # unsure, not confidently anything: not doubted
    found = likely_label_errors(labels, probabilities)
    assert [e.index for e in found] == [40, 77, 5]
    assert all(e.suggested == (labels[e.index] + 1) % 3 for e in found)
    assert [e.given_probability for e in found] == sorted(e.given_probability for e in found)


def test_a_class_the_model_is_less_sure_of_is_judged_by_its_own_threshold() -> None:
    # Class 1 is hard: the model gives its images 0.45 on average. An image labelled 0 with 0.47 on
    # class 1 is confidently class 1 by class 1's standard, though the model's top class is still 0.
    labels = np.array([0] * 20 + [1] * 20)
    probabilities = np.vstack([np.tile([0.9, 0.1], (20, 1)), np.tile([0.55, 0.45], (20, 1))])
    probabilities[0] = [0.53, 0.47]
    assert np.allclose(class_thresholds(labels, probabilities), [(19 * 0.9 + 0.53) / 20, 0.45])
    assert [e.index for e in likely_label_errors(labels, probabilities)] == [0]


def test_nothing_is_doubted_when_the_model_agrees() -> None:
    labels = np.arange(10) % 2
    probabilities = np.eye(2)[labels] * 0.9 + 0.05
    assert likely_label_errors(labels, probabilities) == []
