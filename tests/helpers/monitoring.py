"""Monitoring windows with a known shift, in the columns of the training reference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.core.image_properties import PROPERTY_COLUMNS
from tasks.core.prediction_log import bbsd_columns, uae_columns

CLASSES = ["shirt", "bag", "boot"]


def window(rng: np.random.Generator, rows: int, shift: float, labelled: int) -> pd.DataFrame:
    """A monitoring window in the reference's columns; ``shift`` moves the embeddings and the brightness."""
    frame = pd.DataFrame(rng.normal(shift, 1.0, size=(rows, 8)), columns=uae_columns(8))
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), size=rows)
    frame[bbsd_columns(len(CLASSES))] = probabilities
    for column in PROPERTY_COLUMNS:
        frame[column] = rng.normal(0.5 + shift, 0.1, size=rows)
    frame["prediction"] = np.array(CLASSES)[probabilities.argmax(axis=1)]
    frame["label"] = [frame["prediction"][i] if i < labelled else None for i in range(rows)]
    stamps = pd.Timestamp.now(tz="UTC") - pd.to_timedelta(np.arange(rows), unit="h")
    frame["label_created_at"] = [stamps[i] if i < labelled else pd.NaT for i in range(rows)]
    return frame
