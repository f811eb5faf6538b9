"""The trust layer's statistics on data whose answers are known: coverage of the conformal sets,
the temperature that made the data, distances to class means, and a round trip through the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from configs.schema import TrustConfig
from tasks.core.trust import TrustModel, aps_scores, mahalanobis_to_nearest, prediction_sets, softmax
from tasks.training.calibration import fit_temperature, set_thresholds

CLASSES = 10


def sample(rng: np.random.Generator, n: int, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a noisy classifier and labels drawn from softmax(logits / temperature): calibrated at T."""
    logits = rng.normal(0.0, 3.0, size=(n, CLASSES))
    probabilities = softmax(logits / temperature)
    labels = np.array([rng.choice(CLASSES, p=row) for row in probabilities])
    return logits, labels


def test_the_fitted_temperature_is_the_one_that_generated_the_labels() -> None:
    logits, labels = sample(np.random.default_rng(0), 20_000, temperature=2.5)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)


@pytest.mark.parametrize("class_conditional", [False, True])
def test_sets_cover_the_true_class_at_one_minus_alpha_on_new_data(class_conditional: bool) -> None:
    rng = np.random.default_rng(1)
    trust = TrustConfig(alpha=0.1, class_conditional=class_conditional)
    coverages, per_class = [], []
    for _ in range(20):  # coverage holds on average over calibration draws
        calibration_logits, calibration_labels = sample(rng, 1_000)
        thresholds = set_thresholds(softmax(calibration_logits), calibration_labels, CLASSES, trust)
        test_logits, test_labels = sample(rng, 2_000)
        covered = prediction_sets(softmax(test_logits), thresholds)[np.arange(len(test_labels)), test_labels]
        coverages.append(covered.mean())
        per_class.append([covered[test_labels == c].mean() for c in range(CLASSES)])
    # Never below 1 - alpha; above it by at most about 1/(n + 1) of the rows each threshold comes from.
    slack = 1 / 101 if class_conditional else 1 / 1001
    assert 0.9 - 0.005 <= np.mean(coverages) <= 0.9 + slack + 0.01
    if class_conditional:  # and for every class, not only on average
        assert (np.mean(per_class, axis=0) >= 0.9 - 0.01).all() and (np.mean(per_class, axis=0) <= 0.9 + 0.04).all()


def test_a_set_always_holds_the_top_class_and_grows_with_uncertainty() -> None:
    probabilities = np.array([[0.97, 0.02, 0.01], [0.4, 0.35, 0.25]])
    sets = prediction_sets(probabilities, np.full(3, 0.9))
    assert sets.tolist() == [[True, False, False], [True, True, False]]  # 0.4 + 0.35 <= 0.9 < 1.0
    assert prediction_sets(probabilities, np.zeros(3))[:, 0].all()  # even at threshold 0
    assert aps_scores(probabilities, np.array([1, 0])).tolist() == pytest.approx([0.99, 0.0])  # top: 0


def test_mahalanobis_is_the_distance_to_the_nearest_mean() -> None:
    means = np.array([[0.0, 0.0], [10.0, 0.0]])
    precision = np.diag([1.0, 4.0])
    features = np.array([[1.0, 0.0], [9.0, 1.0], [5.0, 0.0]])
    assert mahalanobis_to_nearest(features, means, precision).tolist() == pytest.approx([1.0, 5.0, 25.0])


def test_a_saved_trust_layer_loads_back_equal(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    trust = TrustModel(
        temperature=1.7,
        alpha=0.05,
        set_thresholds=rng.random(CLASSES),
        class_conditional=True,
        ood_score="energy",
        ood_threshold=-3.5,
        class_means=rng.random((CLASSES, 4)),
        precision=np.eye(4),
        logit_kernel=rng.random((4, CLASSES)),
        logit_bias=rng.random(CLASSES),
        calibration_scores=rng.random((2, 2)) + 0.5,
    )
    loaded = TrustModel.load(trust.save(tmp_path / "trust.npz"))
    assert (loaded.temperature, loaded.ood_score, loaded.class_conditional) == (1.7, "energy", True)
    features = rng.random((5, 4))
    np.testing.assert_allclose(
        loaded.ood_scores(features, loaded.logits(features)), trust.ood_scores(features, trust.logits(features))
    )
