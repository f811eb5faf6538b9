"""The monitor's verdict: four calibrated drift-test families, live quality on labelled rows, one decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from configs.schema import MonitorConfig
from tasks.core.image_properties import PROPERTY_COLUMNS
from tasks.core.prediction_log import bbsd_columns
from tasks.core.shift_regression import FEATURE_PROPERTIES, ShiftRegression
from tasks.evaluation.gate import gate_violations
from tasks.monitoring.drift_tests import TestResult, bonferroni, class_mix_test, ks_test, mmd_permutation_test
from tasks.monitoring.estimation import AccuracyEstimate, ShiftInputs, estimate_accuracy

FAMILY_COUNT = 4  # the first tests of a verdict are its families; the rest are the properties' members


@dataclass
class Verdict:
    drift: bool
    performance_breach: bool
    p_value: float
    alpha: float
    window_rows: int
    labelled_rows: int
    tests: list[TestResult]
    performance: dict[str, float] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    estimate: AccuracyEstimate | None = None  # accuracy estimated before labels
    set_coverage: float | None = None  # share of labelled rows whose prediction set held the label

    @property
    def alarm(self) -> bool:
        return self.drift or self.performance_breach

    @property
    def estimate_reliable(self) -> bool:
        """The shift regression vouches for windows like those it learned from; confidence alone cannot see
        a shift that leaves the model confidently wrong, so without it a drifted window is not vouched for."""
        if self.estimate is not None and self.estimate.within_fit is not None:
            return self.estimate.within_fit
        return not self.drift

    def as_dict(self) -> dict[str, Any]:
        return {
            "drift": self.drift,
            "performance_breach": self.performance_breach,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "window_rows": self.window_rows,
            "labelled_rows": self.labelled_rows,
            "tests": [t.as_dict() for t in self.tests],
            "performance": self.performance,
            "violations": self.violations,
            **(self.estimate.as_dict() if self.estimate else {"estimated_accuracy": None}),
            "estimate_reliable": self.estimate_reliable,
            "set_coverage": self.set_coverage,
        }


def drift_tests(reference: pd.DataFrame, current: pd.DataFrame, class_names: list[str], seed: int) -> list[TestResult]:
    """The four families: UAE and BBSD embeddings (MMD), class mix (chi-square), image properties (KS)."""
    uae = [c for c in reference.columns if c.startswith("uae_")]
    bbsd = bbsd_columns(len(class_names))
    properties = [
        ks_test(reference[c].to_numpy(float), current[c].to_numpy(float), f"property {c}")
        for c in PROPERTY_COLUMNS
        if not _same_constant(reference[c], current[c])
    ]
    properties_family = TestResult(
        "image properties",
        f"Bonferroni over {len(properties)} KS tests",
        float(len(properties)),
        bonferroni(properties),
    )
    return [
        mmd_permutation_test(reference[uae].to_numpy(), current[uae].to_numpy(), "UAE embedding", seed=seed),
        mmd_permutation_test(reference[bbsd].to_numpy(), current[bbsd].to_numpy(), "BBSD softmax", seed=seed + 1),
        class_mix_test(reference["prediction"].to_numpy(), current["prediction"].to_numpy(), class_names, "class mix"),
        properties_family,
        *properties,
    ]


def _same_constant(reference: pd.Series, current: pd.Series) -> bool:
    """A property that never varies (e.g. width 28 everywhere) has nothing to test."""
    return reference.nunique() == 1 and current.nunique() == 1 and reference.iloc[0] == current.iloc[0]


def live_performance(current: pd.DataFrame, class_names: list[str]) -> dict[str, float]:
    labelled = current.dropna(subset=["label"])
    if labelled.empty:
        return {}
    metrics = {"accuracy": float((labelled["label"] == labelled["prediction"]).mean())}
    for name in class_names:
        of_class = labelled[labelled["label"] == name]
        if len(of_class):
            metrics[f"recall/{name}"] = float((of_class["prediction"] == name).mean())
    return metrics


def estimated_accuracy(
    reference: pd.DataFrame, current: pd.DataFrame, config: MonitorConfig, regression: ShiftRegression | None = None
) -> AccuracyEstimate:
    """From the calibrated probabilities of the served rows (and, with the version's shift regression,
    their out-of-distribution scores and image properties), before labels."""
    probabilities = [c for c in current.columns if c.startswith("bbsd_")]
    labelled = reference.dropna(subset=["label"])
    correct = (labelled["label"] == labelled["prediction"]).to_numpy()
    flags = current.get("ood")
    ood = None if flags is None or flags.isna().any() else flags.to_numpy(bool)  # a version with a trust layer
    shift = None
    signals = ["ood_score", *FEATURE_PROPERTIES]
    if regression is not None and set(signals) <= set(current) and current[signals].notna().all().all():
        shift = ShiftInputs(
            regression,
            current["ood_score"].to_numpy(float),
            current[list(FEATURE_PROPERTIES)].to_numpy(float),
        )
    return estimate_accuracy(
        current[probabilities].to_numpy(float),
        labelled[probabilities].to_numpy(float).max(axis=1),
        correct,
        config.accuracy_estimator,
        ood=ood,
        shift=shift,
    )


def set_coverage(current: pd.DataFrame) -> float | None:
    """Of the labelled rows served with a prediction set, the share whose set held the label."""
    if "prediction_set" not in current:
        return None
    rows = current.dropna(subset=["label"])
    rows = rows[rows["prediction_set"].map(lambda members: isinstance(members, list | np.ndarray))]
    if rows.empty:
        return None
    return float(
        np.mean([label in list(members) for label, members in zip(rows["label"], rows["prediction_set"], strict=True)])
    )


def decide(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    class_names: list[str],
    config: MonitorConfig,
    seed: int = 0,
    regression: ShiftRegression | None = None,
) -> Verdict:
    """Drift when the family-wise p-value (Bonferroni over four families) is below alpha;
    a performance breach when labelled accuracy or recall break their thresholds, or too few labels."""
    tests = drift_tests(reference, current, class_names, seed)
    family_p = bonferroni(tests[:FAMILY_COUNT])
    performance = live_performance(current, class_names)
    labelled = int(current["label"].notna().sum())
    measurable = {name: bound for name, bound in config.thresholds.items() if name in performance}
    violations = gate_violations(performance, measurable)
    estimate = estimated_accuracy(reference, current, config, regression)
    if labelled < config.min_labelled and "accuracy" in config.thresholds:  # the estimate stands in for labels
        found = gate_violations({"accuracy": estimate.value}, {"accuracy": config.thresholds["accuracy"]})
        violations += [f"estimated ({estimate.estimator}, before labels): {v}" for v in found]
    breach = bool(violations)
    if labelled < config.min_labelled:  # reported, but too few labels is not evidence of a breach
        violations.append(f"only {labelled} labelled predictions in the window; at least {config.min_labelled} wanted")
    return Verdict(
        family_p < config.p_value,
        breach,
        family_p,
        config.p_value,
        len(current),
        labelled,
        tests,
        performance,
        violations,
        estimate,
        set_coverage(current),
    )
