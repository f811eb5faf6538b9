"""The monitoring window on a real prediction log, SQLite and PostgreSQL: which rows it keeps (last D days,
newest N, one model version), in what order, with which feedback label, and how its JSON lists become
feature columns."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, insert

from configs.schema import MonitorConfig
from tasks.core.prediction_log import feedback, metadata, predictions
from tasks.monitoring.window import EmptyWindowError, expand_features, load_window

MODEL = "fashion-cnn"
# Row id -> (model, version, age in days). Ages sit half a day or more from every boundary a test
# uses, so the seconds between writing the rows and reading the window cannot move a row across one.
ROWS = {
    "v2-6d": (MODEL, "2", 6.5),
    "v2-3d": (MODEL, "2", 3.5),
    "v2-2d": (MODEL, "2", 2.5),
    "v2-1d": (MODEL, "2", 1.5),
    "v2-0d": (MODEL, "2", 0.5),
    "v1-5d": (MODEL, "1", 5.5),
    "v1-3d": (MODEL, "1", 3.5),
    "other-0d": ("other-cnn", "2", 0.1),  # same version string, another model: newest of all
}
# In insertion order; one prediction is labelled twice and the second label is the one that counts.
FEEDBACK = [("v2-1d", "dress"), ("v2-0d", "coat"), ("v2-1d", "shirt")]


def prediction_row(row_id: str, model: str, version: str, created_at: datetime, number: int) -> dict[str, Any]:
    """A complete log row whose JSON lists differ by ``number``, so each row's features can be told apart."""
    return {
        "id": row_id,
        "created_at": created_at,
        "model_name": model,
        "model_version": version,
        "predicted_label": ["coat", "dress", "shirt"][number % 3],
        "confidence": 0.7,
        "probabilities": [0.7, 0.2, 0.1] if number % 2 else [0.1, 0.2, 0.7],
        "uae": [float(number), -float(number), 0.5, 2.0 * number],
        "brightness": 0.1 * number,
        "contrast": 0.3,
        "sharpness": 0.2,
        "width": 28.0,
        "height": 28.0,
        "channels": 1.0,
        "sha256": f"{number:064d}",
        "latency_ms": 3.0,
    }


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A prediction log holding ROWS (inserted out of time order) and FEEDBACK."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'predictions.db'}"
    else:
        url = request.getfixturevalue("fresh_database")
    now = datetime.now(UTC)
    engine = create_engine(url)
    metadata.create_all(engine)
    scrambled = sorted(ROWS)  # by name: neither time nor version order
    rows = [
        prediction_row(row_id, *ROWS[row_id][:2], now - timedelta(days=ROWS[row_id][2]), number)
        for number, row_id in enumerate(scrambled)
    ]
    labels = [
        {"prediction_id": row_id, "label": label, "created_at": now - timedelta(hours=len(FEEDBACK) - i)}
        for i, (row_id, label) in enumerate(FEEDBACK)
    ]
    with engine.begin() as connection:
        connection.execute(insert(predictions), rows)
        connection.execute(insert(feedback), labels)
    engine.dispose()
    return url


def window_ids(url: str, version: str, config: MonitorConfig) -> list[str]:
    return load_window(url, MODEL, version, config)["id"].tolist()


def test_load_window_days_keeps_only_the_last_days(log_url: str) -> None:
    config = MonitorConfig(window_size=None, window_days=3)
    assert window_ids(log_url, "2", config) == ["v2-2d", "v2-1d", "v2-0d"]


def test_load_window_size_keeps_the_newest_rows_oldest_first(log_url: str) -> None:
    window = load_window(log_url, MODEL, "2", MonitorConfig(window_size=3, window_days=None))
    assert window["id"].tolist() == ["v2-2d", "v2-1d", "v2-0d"]
    assert window["created_at"].is_monotonic_increasing


def test_load_window_size_and_days_give_the_newest_rows_of_the_last_days(log_url: str) -> None:
    assert window_ids(log_url, "2", MonitorConfig(window_size=2, window_days=5)) == ["v2-1d", "v2-0d"]
    # The days bound when they are tighter than the size: 3 rows in the last 3 days, not 4.
    assert window_ids(log_url, "2", MonitorConfig(window_size=4, window_days=3)) == ["v2-2d", "v2-1d", "v2-0d"]


def test_load_window_returns_only_the_asked_model_and_version(log_url: str) -> None:
    everything = MonitorConfig(window_size=None, window_days=None)
    assert window_ids(log_url, "1", everything) == ["v1-5d", "v1-3d"]
    window = load_window(log_url, MODEL, "2", everything)
    assert window["id"].tolist() == ["v2-6d", "v2-3d", "v2-2d", "v2-1d", "v2-0d"]
    assert set(window["model_name"]) == {MODEL}
    assert set(window["model_version"]) == {"2"}


def test_load_window_attaches_the_latest_feedback_label(log_url: str) -> None:
    window = load_window(log_url, MODEL, "2", MonitorConfig(window_size=None))
    labels = dict(zip(window["id"], window["label"], strict=True))
    assert labels["v2-1d"] == "shirt"  # labelled "dress" first, then corrected
    assert labels["v2-0d"] == "coat"
    assert [row_id for row_id, label in labels.items() if pd.isna(label)] == ["v2-6d", "v2-3d", "v2-2d"]


@pytest.mark.parametrize(
    ("version", "config"),
    [
        ("3", MonitorConfig(window_size=None)),  # never served
        ("1", MonitorConfig(window_size=None, window_days=3)),  # served, but longer ago than the window
    ],
)
def test_load_window_empty_raises_naming_the_model_and_version(
    log_url: str, version: str, config: MonitorConfig
) -> None:
    with pytest.raises(EmptyWindowError, match=re.escape(f"{MODEL} version {version}")):
        load_window(log_url, MODEL, version, config)


def test_load_window_before_any_prediction_was_logged_says_so(tmp_path: Path) -> None:
    """A monitor run right after the first deploy: the log has no table yet, and no SQL error leaks."""
    url = f"sqlite:///{tmp_path / 'never-served.db'}"
    with pytest.raises(EmptyWindowError, match="no predictions have been logged yet"):
        load_window(url, "fashion-cnn", "1", MonitorConfig())


def test_expand_features_turns_json_lists_into_feature_columns(log_url: str) -> None:
    window = load_window(log_url, MODEL, "2", MonitorConfig(window_size=None))
    expanded = expand_features(window)
    bbsd, uae = ["bbsd_0", "bbsd_1", "bbsd_2"], ["uae_0", "uae_1", "uae_2", "uae_3"]
    assert {*bbsd, *uae, "prediction", "label", "brightness"} <= set(expanded.columns)
    assert not {"predicted_label", "probabilities", "uae"} & set(expanded.columns)
    assert expanded["id"].tolist() == window["id"].tolist()
    assert expanded["prediction"].tolist() == window["predicted_label"].tolist()
    for index, row in window.iterrows():
        assert expanded.loc[index, bbsd].tolist() == row["probabilities"]
        assert expanded.loc[index, uae].tolist() == row["uae"]
    shirt = expanded.loc[expanded["id"] == "v2-1d", "label"].item()
    assert shirt == "shirt"
    assert math.isnan(expanded.loc[expanded["id"] == "v2-6d", "label"].item())
