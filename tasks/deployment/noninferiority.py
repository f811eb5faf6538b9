"""Is the challenger not worse than the champion, beyond noise? A paired non-inferiority test.

Both versions predicted the same images, so their difference is measured row by row: a paired
bootstrap resamples the images (the same draw for both models) and recomputes the metric's
difference, oriented so that positive means the challenger is better (for ECE or log loss, lower).
The challenger passes a comparison when the one-sided lower confidence bound of that difference is
above ``-margin``. Pairing is why this is sharper than comparing two intervals: on images both
models get right or both get wrong the difference is exactly zero, and only the images they
disagree on carry noise (McNemar's insight; the bootstrap gives the same answer for accuracy and
also covers metrics that are not a proportion).

Slices are declared before the data is seen: each true class, and terciles of image brightness and
contrast (the property table's measures). A slice is judged on the headline metric when that
metric is a per-image average (accuracy, log loss), else on accuracy. With many slices one would
fail by chance alone, so each is tested at a Bonferroni-corrected level: the chance that equal
models fail any slice stays at most 1 - confidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from configs.metrics import metric_direction
from tasks.core.trust import expected_calibration_error
from tasks.evaluation.slices import slice_masks

PER_ROW_METRICS = ("accuracy", "log_loss")  # an average over images: bootstrapped by resampling row scores
CHUNK = 200  # resamples drawn at once: bounds the index matrix to CHUNK x rows
PROBABILITY_FLOOR = 1e-15  # log loss of a zero probability, as scikit-learn clips it


@dataclass(frozen=True)
class PairedComparison:
    """One metric on one slice: both values, their difference (positive: the challenger is better)
    and its one-sided lower confidence bound."""

    scope: str
    metric: str
    rows: int
    challenger: float
    champion: float
    difference: float
    lower_bound: float
    confidence: float
    margin: float
    judged: bool  # False: too few rows to judge; reported, never refusing

    @property
    def passed(self) -> bool:
        return not self.judged or self.lower_bound > -self.margin

    def as_dict(self) -> dict[str, object]:
        bound = self.lower_bound if self.judged else None  # JSON has no NaN
        return asdict(self) | {"lower_bound": bound, "passed": self.passed}

    def describe(self) -> str:
        return (
            f"{self.scope}: {self.metric} {self.challenger:.4f} vs {self.champion:.4f}, difference "
            f"{self.difference:+.4f}, {self.confidence:.1%} lower bound {self.lower_bound:+.4f} (margin {self.margin})"
        )


@dataclass(frozen=True)
class NonInferiority:
    overall: PairedComparison
    slices: list[PairedComparison]

    @property
    def passed(self) -> bool:
        return self.overall.passed and all(s.passed for s in self.slices)

    @property
    def failures(self) -> list[PairedComparison]:
        return [c for c in [self.overall, *self.slices] if not c.passed]

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "overall": self.overall.as_dict(),
            "slices": [s.as_dict() for s in self.slices],
        }


def metric_on(metric: str, labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> float:
    """One metric of rows (labels, probabilities), as evaluation computes it."""
    predicted = probabilities.argmax(axis=1)
    if metric == "accuracy":
        return float((predicted == labels).mean())
    if metric == "log_loss":
        return float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], PROBABILITY_FLOOR, 1)).mean())
    if metric == "ece":
        return expected_calibration_error(labels, probabilities)
    if metric == "macro_auc":
        from tasks.evaluation.metrics import _macro_auc

        return _macro_auc(labels, probabilities, list(range(len(class_names))))
    classes = len(class_names)
    counts = np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    hits = np.diag(counts).astype(float)
    precision = np.divide(hits, counts.sum(axis=0), out=np.zeros(classes), where=counts.sum(axis=0) > 0)
    recall = np.divide(hits, counts.sum(axis=1), out=np.zeros(classes), where=counts.sum(axis=1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(classes), where=precision + recall > 0)
    if metric == "macro_f1":
        return float(f1.mean())
    kind, _, name = metric.partition("/")
    per_class = {"precision": precision, "recall": recall, "f1": f1}
    if kind in per_class and name in class_names:
        return float(per_class[kind][class_names.index(name)])
    raise ValueError(f"the non-inferiority gate cannot compute {metric!r}")


def row_scores(metric: str, labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Per-image contributions whose mean is the metric (PER_ROW_METRICS only)."""
    if metric == "accuracy":
        return (probabilities.argmax(axis=1) == labels).astype(float)
    return -np.log(np.clip(probabilities[np.arange(len(labels)), labels], PROBABILITY_FLOOR, 1))


def compare(
    scope: str,
    metric: str,
    labels: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    class_names: list[str],
    confidence: float,
    margin: float,
    resamples: int,
    rng: np.random.Generator,
    min_rows: int = 1,
) -> PairedComparison:
    """The paired bootstrap of one metric's difference on the given rows (all arrays aligned)."""
    sign = -1.0 if metric_direction(metric) == "lower" else 1.0
    rows = len(labels)
    ours, theirs = (metric_on(metric, labels, p, class_names) for p in (challenger, champion))
    difference = sign * (ours - theirs)
    if rows < min_rows:
        return PairedComparison(scope, metric, rows, ours, theirs, difference, float("nan"), confidence, margin, False)
    differences = np.empty(resamples)
    if metric in PER_ROW_METRICS:
        paired = row_scores(metric, labels, challenger) - row_scores(metric, labels, champion)
        for start in range(0, resamples, CHUNK):
            draws = rng.integers(0, rows, size=(min(CHUNK, resamples - start), rows))
            differences[start : start + len(draws)] = paired[draws].mean(axis=1)
    else:  # recomputed on each resample, the same images for both models
        for index in range(resamples):
            draw = rng.integers(0, rows, size=rows)
            differences[index] = metric_on(metric, labels[draw], challenger[draw], class_names) - metric_on(
                metric, labels[draw], champion[draw], class_names
            )
    lower = float(np.quantile(sign * differences, 1.0 - confidence))
    return PairedComparison(scope, metric, rows, ours, theirs, difference, lower, confidence, margin, True)


def non_inferiority(
    labels: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    class_names: list[str],
    metric: str,
    margin: float,
    slice_margin: float | None,
    confidence: float,
    resamples: int = 2000,
    properties: pd.DataFrame | None = None,
    min_slice_rows: int = 30,
    seed: int = 0,
) -> NonInferiority:
    """The challenger against the champion on the same rows: the headline metric overall and every slice
    (none when ``slice_margin`` is None)."""
    rng = np.random.default_rng(seed)
    overall = compare("overall", metric, labels, challenger, champion, class_names, confidence, margin, resamples, rng)
    if slice_margin is None:
        return NonInferiority(overall, [])
    masks = slice_masks(labels, class_names, properties)
    per_slice = 1.0 - (1.0 - confidence) / max(len(masks), 1)  # Bonferroni over the slices
    slice_metric = metric if metric in PER_ROW_METRICS else "accuracy"
    slices = [
        compare(
            scope,
            slice_metric,
            labels[mask],
            challenger[mask],
            champion[mask],
            class_names,
            per_slice,
            slice_margin,
            resamples,
            rng,
            min_slice_rows,
        )
        for scope, mask in masks.items()
    ]
    return NonInferiority(overall, slices)
