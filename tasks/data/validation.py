"""Deepchecks validation of a dataset, through its per-image property table.

Deepchecks' vision module needs torch and torchvision (5.5 GB, and a segfault beside TensorFlow),
so the tabular module checks a table with one row per image: its content hash (duplicates,
conflicting labels, train/test leakage), its properties (drift between splits) and its label.
Every configured condition is evaluated; a failure lists all failed conditions at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from configs.schema import ValidationConfig
from tasks.core.errors import DataValidationError
from tasks.core.image_properties import PROPERTY_COLUMNS

logger = logging.getLogger(__name__)

FEATURES = ["sha256", *PROPERTY_COLUMNS]


@dataclass
class ValidationOutcome:
    """Where the reports are and which conditions failed."""

    report_files: list[Path]
    failures: list[str] = field(default_factory=list)
    checks_run: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures


def _deepchecks_dataset(table: pd.DataFrame):  # type: ignore[no-untyped-def]
    from deepchecks.tabular import Dataset

    frame = table[[*FEATURES, "label"]].reset_index(drop=True)
    return Dataset(frame, label="label", features=FEATURES, cat_features=["sha256"], label_type="multiclass")


def build_suites(config: ValidationConfig):  # type: ignore[no-untyped-def]
    """The integrity and train/test suites, each condition taken from the config."""
    from deepchecks.tabular import Suite, checks

    integrity = Suite(
        "Image data integrity",
        checks.DataDuplicates(columns=["sha256"]).add_condition_ratio_less_or_equal(config.max_duplicate_ratio),
        checks.ConflictingLabels(columns=["sha256"]).add_condition_ratio_of_conflicting_labels_less_or_equal(0),
        checks.MixedNulls(columns=list(PROPERTY_COLUMNS)).add_condition_different_nulls_less_equal_to(0),
        checks.ClassImbalance(n_top_labels=100),
    )
    train_test = Suite(
        "Train/test validation",
        checks.TrainTestSamplesMix().add_condition_duplicates_ratio_less_or_equal(config.max_train_test_leakage_ratio),
        checks.FeatureDrift(columns=list(PROPERTY_COLUMNS)).add_condition_drift_score_less_than(
            config.max_property_drift, config.max_property_drift
        ),
        checks.LabelDrift().add_condition_drift_score_less_than(config.max_label_drift),
        checks.NewLabelTrainTest().add_condition_new_labels_number_less_or_equal(0),
    )
    return integrity, train_test


def _class_counts_check_failures(table: pd.DataFrame, minimum: int, split: str) -> list[str]:
    counts = table["label"].value_counts()
    return [
        f"{split}: class {label!r} has {n} images, fewer than {minimum}" for label, n in counts.items() if n < minimum
    ]


def validate_dataset(
    train: pd.DataFrame, test: pd.DataFrame, config: ValidationConfig, report_dir: Path, seed: int
) -> ValidationOutcome:
    """Run both suites on property tables of two splits; write HTML and JSON reports."""
    if len(train) > config.sample_size:
        train = train.sample(n=config.sample_size, random_state=seed)
    if len(test) > config.sample_size:
        test = test.sample(n=config.sample_size, random_state=seed)
    report_dir.mkdir(parents=True, exist_ok=True)
    train_ds, test_ds = _deepchecks_dataset(train), _deepchecks_dataset(test)
    outcome = ValidationOutcome(report_files=[])
    for suite in build_suites(config):
        result = suite.run(train_dataset=train_ds, test_dataset=test_ds)
        stem = suite.name.lower().replace("/", "_").replace(" ", "_")
        outcome.report_files += _save_reports(result, report_dir / stem)
        outcome.failures += _failed_conditions(result)
        outcome.checks_run += len(result.results)
    outcome.failures += _class_counts_check_failures(train, config.min_samples_per_class, "train")
    return outcome


def _save_reports(result, stem: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    html, as_json = stem.with_suffix(".html"), stem.with_suffix(".json")
    result.save_as_html(str(html), as_widget=False)
    as_json.write_text(json.dumps(json.loads(result.to_json()), indent=1), encoding="utf-8")
    return [html, as_json]


def _failed_conditions(result) -> list[str]:  # type: ignore[no-untyped-def]
    from deepchecks.core import ConditionCategory

    failures = []
    for check_result in result.results:
        for condition in getattr(check_result, "conditions_results", []):
            if condition.category in (ConditionCategory.FAIL, ConditionCategory.ERROR):
                failures.append(f"{check_result.get_header()}: {condition.name} ({condition.details})")
        if type(check_result).__name__ == "CheckFailure":
            failures.append(f"{check_result.header}: check could not run ({check_result.exception})")
    return failures


def raise_on_failures(outcome: ValidationOutcome) -> None:
    if outcome.failures:
        listed = "\n".join(f"  - {failure}" for failure in outcome.failures)
        raise DataValidationError(
            f"data validation failed {len(outcome.failures)} condition(s):\n{listed}\n"
            f"reports: {', '.join(str(p) for p in outcome.report_files)}"
        )
