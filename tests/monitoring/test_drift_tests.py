"""Seeded statistical checks that the drift tests keep their promise.

On pairs of windows drawn from one distribution, each test (and the monitor's family-wise verdict)
alarms at p < alpha in at most an alpha share of seeds, give or take binomial noise; on a clear
shift it alarms for every seed tried; and Bonferroni's family p-value is k times the smallest.
Every draw comes from a seeded numpy Generator, so the outcome is the same on every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from configs.schema import MonitorConfig
from tasks.monitoring.drift_tests import TestResult as DriftResult  # renamed: pytest collects Test* names
from tasks.monitoring.drift_tests import bonferroni, class_mix_test, ks_test, mmd_permutation_test
from tasks.monitoring.verdict import decide

ALPHA = 0.05
SEEDS = 60  # for the tests that cost milliseconds a pair (MMD, the whole verdict)
CHEAP_SEEDS = 400  # for those that cost microseconds (KS, chi-square): a tighter allowance
NAMES = ["coat", "dress", "shirt"]
TEN_CLASSES = [f"class-{i}" for i in range(10)]


def allowed_false_alarm_rate(alpha: float, trials: int) -> float:
    """The largest share of false alarms a calibrated test shows by chance over ``trials`` seeds.

    The number of alarms is Binomial(trials, alpha), so the share has standard deviation
    sqrt(alpha (1 - alpha) / trials). A calibrated test exceeds alpha plus three of them with
    probability about 0.3 %; a test alarming at 3 x alpha exceeds it more often than not at 60
    seeds, and one alarming at 2 x alpha fails 86 % of the time at 400 seeds. The seeds are fixed,
    so the outcome is the same on every run.
    """
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


def false_alarm_rate(p_value_of_seed: Callable[[np.random.Generator, int], float], seeds: int) -> float:
    """The share of ``seeds`` seeded draws whose p-value falls below ALPHA."""
    alarms = [p_value_of_seed(np.random.default_rng(seed), seed) < ALPHA for seed in range(seeds)]
    return sum(alarms) / seeds


def monitor_frame(rng: np.random.Generator, rows: int, embedding_shift: float = 0.0) -> pd.DataFrame:
    """A window (or reference) with the columns decide() reads, every column drawn from a fixed distribution."""
    probabilities = rng.dirichlet([2.0, 1.0, 1.0], size=rows)
    data: dict[str, object] = {
        "prediction": rng.choice(NAMES, size=rows, p=[0.5, 0.3, 0.2]),
        "label": [None] * rows,
        "brightness": rng.random(rows),
        "contrast": rng.beta(2.0, 5.0, rows),
        "sharpness": rng.normal(1.0, 0.2, rows),
        "width": 28.0,
        "height": 28.0,
        "channels": 1.0,
    }
    for i in range(3):
        data[f"bbsd_{i}"] = probabilities[:, i]
    for i in range(4):
        data[f"uae_{i}"] = rng.normal(embedding_shift if i < 2 else 0.0, 1.0, rows)
    return pd.DataFrame(data)


def shifted_gaussians(rng: np.random.Generator, rows: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """A ``rows`` x 8 reference and window; the window's first three dimensions moved by ``shift`` sd."""
    reference, current = rng.normal(size=(rows, 8)), rng.normal(size=(rows, 8))
    current[:, :3] += shift
    return reference, current


def test_mmd_permutation_test_false_alarm_rate_is_at_most_alpha_on_one_distribution() -> None:
    def p_value(rng: np.random.Generator, seed: int) -> float:
        reference, current = shifted_gaussians(rng, 200, 0.0)
        return mmd_permutation_test(reference, current, "UAE", permutations=200, seed=seed).p_value

    assert false_alarm_rate(p_value, SEEDS) <= allowed_false_alarm_rate(ALPHA, SEEDS)


def test_ks_test_false_alarm_rate_is_at_most_alpha_on_one_distribution() -> None:
    def p_value(rng: np.random.Generator, seed: int) -> float:
        return ks_test(rng.normal(size=200), rng.normal(size=200), "brightness").p_value

    assert false_alarm_rate(p_value, CHEAP_SEEDS) <= allowed_false_alarm_rate(ALPHA, CHEAP_SEEDS)


def test_class_mix_test_false_alarm_rate_is_at_most_alpha_when_the_reference_dwarfs_the_window() -> None:
    def p_value(rng: np.random.Generator, seed: int) -> float:
        return class_mix_test(rng.choice(TEN_CLASSES, 5000), rng.choice(TEN_CLASSES, 200), TEN_CLASSES, "mix").p_value

    assert false_alarm_rate(p_value, CHEAP_SEEDS) <= allowed_false_alarm_rate(ALPHA, CHEAP_SEEDS)


def test_class_mix_test_false_alarm_rate_is_at_most_alpha_when_the_window_is_as_large_as_the_reference() -> None:
    """Both samples carry noise: a test that took the reference's shares as exact alarmed on about half."""

    def p_value(rng: np.random.Generator, seed: int) -> float:
        return class_mix_test(rng.choice(TEN_CLASSES, 200), rng.choice(TEN_CLASSES, 200), TEN_CLASSES, "mix").p_value

    assert false_alarm_rate(p_value, CHEAP_SEEDS) <= allowed_false_alarm_rate(ALPHA, CHEAP_SEEDS)


def test_decide_false_alarm_rate_is_at_most_alpha_on_one_distribution() -> None:
    def p_value(rng: np.random.Generator, seed: int) -> float:
        verdict = decide(monitor_frame(rng, 400), monitor_frame(rng, 150), NAMES, MonitorConfig(), seed=seed)
        assert verdict.drift == (verdict.p_value < ALPHA)
        return verdict.p_value

    assert false_alarm_rate(p_value, SEEDS) <= allowed_false_alarm_rate(ALPHA, SEEDS)


@pytest.mark.parametrize("seed", range(10))
def test_mmd_permutation_test_detects_a_half_sd_shift_in_three_dimensions(seed: int) -> None:
    reference, current = shifted_gaussians(np.random.default_rng(1000 + seed), 200, 0.5)
    assert mmd_permutation_test(reference, current, "UAE", permutations=200, seed=seed).p_value < 0.01


@pytest.mark.parametrize("seed", range(10))
def test_ks_test_detects_a_half_sd_shift(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    assert ks_test(rng.normal(size=400), rng.normal(0.5, 1.0, size=400), "brightness").p_value < 0.01


@pytest.mark.parametrize("seed", range(10))
def test_class_mix_test_detects_a_class_that_doubles(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    classes = [*NAMES, "bag"]
    reference = rng.choice(classes, 500, p=[0.25, 0.25, 0.25, 0.25])
    current = rng.choice(classes, 500, p=[0.5, 1 / 6, 1 / 6, 1 / 6])  # coats from a quarter to a half
    assert class_mix_test(reference, current, classes, "mix").p_value < 0.01


@pytest.mark.parametrize("seed", range(5))
def test_decide_flags_drift_when_the_embedding_shifts(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    reference, current = monitor_frame(rng, 400), monitor_frame(rng, 150, embedding_shift=1.0)
    verdict = decide(reference, current, NAMES, MonitorConfig(), seed=seed)
    assert verdict.drift and verdict.alarm
    uae = next(test for test in verdict.tests if test.name == "UAE embedding")
    assert uae.p_value < 0.01


def test_bonferroni_is_k_times_the_smallest_p_value_capped_at_one() -> None:
    def results(*p_values: float) -> list[DriftResult]:
        return [DriftResult(f"test {i}", "fixed", 0.0, p) for i, p in enumerate(p_values)]

    assert bonferroni(results(0.2, 0.01, 0.5)) == pytest.approx(0.03)
    assert bonferroni(results(0.3, 0.6)) == pytest.approx(0.6)
    assert bonferroni(results(0.004)) == pytest.approx(0.004)
    assert bonferroni(results(0.4, 0.9, 0.5)) == 1.0  # 3 x 0.4 would be 1.2
    assert bonferroni([]) == 1.0
