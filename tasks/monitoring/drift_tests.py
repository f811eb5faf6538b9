"""Calibrated two-sample tests for drift monitoring.

Every verdict comes from a test whose false-alarm rate is the chosen alpha at every window size:
a permutation test of the kernel MMD for embeddings (UAE, BBSD), a chi-square test of homogeneity
for the class mix, and Kolmogorov-Smirnov tests for image properties. Thresholds on a raw distance,
by contrast, call every large enough window "drifted".

The MMD uses random Fourier features of a Gaussian kernel (bandwidth by the median heuristic on
standardised features): the statistic is the squared distance between mean feature maps, so
each permutation is one matrix product and 10,000 x 10,000 samples take seconds, not minutes.
The permutation p-value is exact for that statistic, approximation or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class TestResult:
    name: str
    method: str
    statistic: float
    p_value: float

    def as_dict(self) -> dict[str, float | str]:
        return {"name": self.name, "method": self.method, "statistic": self.statistic, "p_value": self.p_value}


def _standardise(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = reference.mean(axis=0)
    scale = reference.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return (reference - mean) / scale, (current - mean) / scale


def median_bandwidth(pooled: np.ndarray, rng: np.random.Generator, points: int = 1000) -> float:
    sample = pooled[rng.choice(len(pooled), size=min(points, len(pooled)), replace=False)]
    squared = (sample**2).sum(axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * sample @ sample.T, 0.0))
    median = float(np.median(distances[np.triu_indices(len(sample), k=1)]))
    return median if median > 0 else 1.0


def mmd_permutation_test(
    reference: np.ndarray,
    current: np.ndarray,
    name: str,
    permutations: int = 500,
    features: int = 512,
    seed: int = 0,
) -> TestResult:
    """Squared MMD (random Fourier features, Gaussian kernel) with a permutation p-value."""
    rng = np.random.default_rng(seed)
    reference, current = _standardise(np.asarray(reference, np.float64), np.asarray(current, np.float64))
    pooled = np.vstack([reference, current])
    sigma = median_bandwidth(pooled, rng)
    weights = rng.normal(0.0, 1.0 / sigma, size=(pooled.shape[1], features))
    phases = rng.uniform(0.0, 2 * np.pi, size=features)
    mapped = (np.sqrt(2.0 / features) * np.cos(pooled @ weights + phases)).astype(np.float32)
    n, m = len(reference), len(current)
    signs = np.concatenate([np.full(n, -1.0 / n), np.full(m, 1.0 / m)]).astype(np.float32)
    observed = float(((signs @ mapped) ** 2).sum())
    shuffled = np.stack([rng.permutation(signs) for _ in range(permutations)])
    null = ((shuffled @ mapped) ** 2).sum(axis=1)
    p_value = (1.0 + float((null >= observed).sum())) / (1.0 + permutations)
    return TestResult(name, f"MMD permutation test ({permutations} permutations, RFF {features})", observed, p_value)


def class_mix_test(reference: np.ndarray, current: np.ndarray, classes: list[str], name: str) -> TestResult:
    """Chi-square test of homogeneity: do the window and the reference share one predicted-class mix?

    Both are samples, so the 2 x k table of counts carries the reference's noise too; a goodness-of-fit
    test against the reference's shares taken as exact alarms on about half of same-mix pairs once the
    window is as large as the reference.
    """
    index = {c: i for i, c in enumerate(classes)}
    ref_counts = np.bincount([index[c] for c in reference], minlength=len(classes))
    cur_counts = np.bincount([index[c] for c in current if c in index], minlength=len(classes))
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]  # a class neither sample predicted says nothing
    if table.shape[1] < 2 or cur_counts.sum() == 0:
        return TestResult(name, "chi-square test of homogeneity of class counts", 0.0, 1.0)
    statistic, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    return TestResult(name, "chi-square test of homogeneity of class counts", float(statistic), float(p_value))


def ks_test(reference: np.ndarray, current: np.ndarray, name: str) -> TestResult:
    result = stats.ks_2samp(reference, current)
    return TestResult(name, "Kolmogorov-Smirnov test", float(result.statistic), float(result.pvalue))


def bonferroni(results: list[TestResult]) -> float:
    """The smallest p-value times the number of tests: the family's false-alarm rate stays at alpha."""
    if not results:
        return 1.0
    return min(1.0, min(r.p_value for r in results) * len(results))
