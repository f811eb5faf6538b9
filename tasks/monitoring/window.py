"""The monitoring window: the newest served predictions of one model version, with their feedback labels,
as the columns of the training reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Select, create_engine, inspect, select

from configs.schema import MonitorConfig
from tasks.core.errors import MlopsError
from tasks.core.image_properties import PROPERTY_COLUMNS
from tasks.core.prediction_log import add_missing_columns, bbsd_columns, feedback, predictions, uae_columns

WINDOW_COLUMNS = [
    "id",
    "created_at",
    "predicted_label",
    "label",
    "label_created_at",
    "prediction_set",
    "ood",
    "ood_score",
]


class EmptyWindowError(MlopsError):
    """No predictions of the current model fall in the monitoring window."""


def load_window(database_url: str, model_name: str, version: str, config: MonitorConfig) -> pd.DataFrame:
    """The newest predictions of one model version (last N, or last D days), then ordered in time.

    Each row carries the latest feedback label, when one was given.
    """
    query = select(predictions).where(predictions.c.model_name == model_name, predictions.c.model_version == version)
    if config.window_days is not None:
        query = query.where(predictions.c.created_at >= datetime.now(UTC) - timedelta(days=config.window_days))
    query = query.order_by(predictions.c.created_at.desc())
    if config.window_size is not None:
        query = query.limit(config.window_size)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(predictions.name):  # no service has logged anything yet
                raise EmptyWindowError(f"no predictions have been logged yet ({engine.url.render_as_string()})")
        add_missing_columns(engine)  # a log an older service wrote: its rows read with nulls there
        with engine.connect() as connection:
            window = pd.DataFrame(connection.execute(query).mappings().all())
            labels = pd.DataFrame(connection.execute(_feedback_on(query)).mappings().all())
    finally:
        engine.dispose()
    if window.empty:
        raise EmptyWindowError(f"no logged predictions of {model_name} version {version} in the window")
    window = window.sort_values("created_at").reset_index(drop=True)
    latest = labels.drop_duplicates("prediction_id", keep="last") if not labels.empty else labels
    ids = latest.get("prediction_id", [])
    window["label"] = window["id"].map(dict(zip(ids, latest.get("label", []), strict=True)))
    stamps = dict(zip(ids, latest.get("created_at", []), strict=True))
    window["label_created_at"] = pd.to_datetime(window["id"].map(stamps), utc=True)  # SQLite's are naive UTC
    return window


def _feedback_on(window: Select) -> Select:
    """The feedback on the window's predictions only, oldest first: not the whole table, which only grows."""
    ids = window.with_only_columns(predictions.c.id)
    return select(feedback).where(feedback.c.prediction_id.in_(ids)).order_by(feedback.c.id)


def expand_features(window: pd.DataFrame) -> pd.DataFrame:
    """The JSON lists of the log as the reference's columns: bbsd_0.., uae_0.., prediction."""
    bbsd = np.array(window["probabilities"].tolist(), dtype=float)
    uae = np.array(window["uae"].tolist(), dtype=float)
    expanded = pd.concat(
        [
            window[[*WINDOW_COLUMNS, *PROPERTY_COLUMNS]].reset_index(drop=True),
            pd.DataFrame(bbsd, columns=bbsd_columns(bbsd.shape[1])),
            pd.DataFrame(uae, columns=uae_columns(uae.shape[1])),
        ],
        axis=1,
    )
    return expanded.rename(columns={"predicted_label": "prediction"})
