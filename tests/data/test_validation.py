"""Deepchecks validation on real image properties: clean data passes, leaks and duplicates stop the run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from configs.schema import ValidationConfig
from tasks.core.errors import DataValidationError
from tasks.data.dataset import properties_table, read_manifest
from tasks.data.validation import raise_on_failures, validate_dataset


@pytest.fixture
def table(tiny_repo: Path) -> pd.DataFrame:
    data = tiny_repo / "data"
    return properties_table(data, read_manifest(data))


def split(table: pd.DataFrame, name: str) -> pd.DataFrame:
    return table[table["split"] == name]


def test_clean_data_passes_and_writes_reports(table: pd.DataFrame, tmp_path: Path) -> None:
    config = ValidationConfig(max_property_drift=0.5, max_label_drift=0.5)
    outcome = validate_dataset(split(table, "train"), split(table, "test"), config, tmp_path, seed=0)
    assert outcome.passed, outcome.failures
    assert outcome.checks_run >= 8
    assert sorted(p.name for p in outcome.report_files) == [
        "image_data_integrity.html",
        "image_data_integrity.json",
        "train_test_validation.html",
        "train_test_validation.json",
    ]
    assert "Train Test Samples Mix" in (tmp_path / "train_test_validation.json").read_text()


def test_leakage_and_duplicates_fail_with_every_condition_listed(table: pd.DataFrame, tmp_path: Path) -> None:
    train, test = split(table, "train"), split(table, "test")
    leaked = pd.concat([train, test.head(30).assign(split="train")])  # 30 test images copied into train
    config = ValidationConfig(max_property_drift=0.5, max_label_drift=0.5, min_samples_per_class=50)
    outcome = validate_dataset(leaked, test, config, tmp_path, seed=0)
    with pytest.raises(DataValidationError) as error:
        raise_on_failures(outcome)
    message = str(error.value)
    assert "Train Test Samples Mix" in message
    assert "fewer than 50" in message  # the class-count condition is listed too
    assert message.count("\n  - ") == len(outcome.failures) >= 2
