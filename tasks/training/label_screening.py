"""Label screening of the training set after training (tasks/data/label_screening.py has the rule).

The likely label errors are reported (a table and a sheet of thumbnails, logged to MLflow) and the
most doubtful go to the review queue for two reviewers; nothing is dropped from the training data.
A later ``mlops dataset add-reviews`` relabels those the reviewers correct.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image

from tasks.core.preprocessing import InputSpec
from tasks.core.review_queue import DoubtedLabel, ReviewQueue
from tasks.core.storage import image_url, write_image_once
from tasks.data.label_screening import likely_label_errors, thumbnail_sheet
from tasks.data.pipeline import labelled_batches

logger = logging.getLogger(__name__)

SHEET_IMAGES = 64  # thumbnails on the sheet: the most doubtful
QUEUED_AT_MOST = 100  # a bad run must not flood the reviewers


@dataclass(frozen=True)
class ScreeningReport:
    suspects: pd.DataFrame  # path, label, suggested, label_probability, suggested_probability; most doubtful first
    table_file: Path
    sheet_file: Path | None


def screen_training_labels(
    model: keras.Model, data_dir: Path, rows: pd.DataFrame, class_names: list[str], spec: InputSpec, folder: Path
) -> ScreeningReport:
    """The likely label errors among ``rows`` by the trained model's probabilities."""
    probabilities, labels = [], []
    for images, batch_labels, _ in labelled_batches(data_dir, rows, class_names, spec):
        probabilities.append(model(tf.cast(images, tf.float32), training=False).numpy())
        labels.append(batch_labels.numpy())
    found = likely_label_errors(np.concatenate(labels), np.concatenate(probabilities).astype(np.float64))
    paths = rows["path"].tolist()
    suspects = pd.DataFrame(
        {
            "path": [paths[e.index] for e in found],
            "label": [class_names[e.given] for e in found],
            "suggested": [class_names[e.suggested] for e in found],
            "label_probability": [round(e.given_probability, 4) for e in found],
            "suggested_probability": [round(e.suggested_probability, 4) for e in found],
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    table_file = folder / "likely_label_errors.csv"
    suspects.to_csv(table_file, index=False)
    sheet = None
    if len(suspects):
        shown = suspects.head(SHEET_IMAGES)
        sheet = thumbnail_sheet(
            [np.asarray(Image.open(data_dir / p).convert("L")) for p in shown["path"]],
            [f"{a} -> {b}" for a, b in zip(shown["label"], shown["suggested"], strict=True)],
            folder / "likely_label_errors.png",
            title=f"{len(suspects)} likely label errors of {len(rows)} training images (label -> model)",
        )
    return ScreeningReport(suspects, table_file, sheet)


def queue_for_review(report: ScreeningReport, data_dir: Path, storage_url: str, queue: ReviewQueue) -> int:
    """Copy the most doubtful images to central storage (by content hash) and queue them; the number queued."""
    doubted = []
    for row in report.suspects.head(QUEUED_AT_MOST).itertuples():
        content = (data_dir / row.path).read_bytes()
        digest = hashlib.sha256(content).hexdigest()
        uri = image_url(storage_url, digest)
        write_image_once(uri, content)
        doubted.append(DoubtedLabel(f"dataset:{digest}", row.label, row.suggested, digest, uri, dataset_path=row.path))
    return queue.send_back(doubted)
