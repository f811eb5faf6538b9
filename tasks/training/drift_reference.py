"""Reference features for drift monitoring: UAE encodings, BBSD softmax outputs and image properties.

Built in one pass over a held-out split: each batch goes through the classifier and the encoder
together, with its labels and paths, so every row's label, prediction and features describe the
same image. The service logs the same columns for every prediction it serves.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tasks.core.errors import DatasetRevisionError
from tasks.core.prediction_log import bbsd_columns, uae_columns
from tasks.core.preprocessing import InputSpec
from tasks.core.progress import Advance
from tasks.core.trust import TrustModel
from tasks.data.pipeline import labelled_batches
from tasks.training.calibration import feature_model


def sample_reference_rows(rows: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """Exactly ``count`` rows of the split, or an error saying how many there are."""
    if len(rows) < count:
        raise DatasetRevisionError(
            f"train.drift.reference_rows is {count} but the reference split has {len(rows)} images; lower it"
        )
    return rows.sample(n=count, random_state=seed).reset_index(drop=True)


def build_reference_features(
    classifier: keras.Model,
    encoder: keras.Model,
    data_dir: Path,
    rows: pd.DataFrame,
    properties: pd.DataFrame,
    class_names: list[str],
    spec: InputSpec,
    trust: TrustModel | None = None,
    batch_size: int = 256,
    advance: Advance | None = None,
) -> pd.DataFrame:
    """One row per image: path, label, prediction, confidence, bbsd_*, uae_*, properties, sha256.

    ``advance`` (tasks.core.progress) is told each batch's images as they are done."""
    dataset = labelled_batches(data_dir, rows, class_names, spec, batch_size)
    extractor = feature_model(classifier) if trust is not None else None

    parts = []
    for images, batch_labels, batch_paths in dataset:
        inputs = tf.cast(images, tf.float32)
        if trust is None or extractor is None:
            probabilities = classifier(inputs, training=False).numpy()
        else:  # calibrated, as the service returns and logs them
            probabilities = trust.calibrated(trust.logits(extractor(inputs, training=False).numpy().astype(float)))
        encodings = encoder(inputs, training=False).numpy()
        parts.append(_batch_frame(batch_paths.numpy(), batch_labels.numpy(), probabilities, encodings, class_names))
        if advance is not None:
            advance(len(probabilities))
    features = pd.concat(parts, ignore_index=True)
    measured = properties.drop(columns=["split", "label"], errors="ignore")
    return features.merge(measured, on="path", how="left", validate="one_to_one")


def _batch_frame(
    paths: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    encodings: np.ndarray,
    class_names: list[str],
) -> pd.DataFrame:
    predicted = probabilities.argmax(axis=1)
    frame = pd.DataFrame(
        {
            "path": [p.decode() for p in paths],
            "label": [class_names[i] for i in labels],
            "prediction": [class_names[i] for i in predicted],
            "confidence": probabilities.max(axis=1),
        }
    )
    bbsd = pd.DataFrame(probabilities, columns=bbsd_columns(len(class_names)))
    uae = pd.DataFrame(encodings, columns=uae_columns(encodings.shape[1]))
    return pd.concat([frame, bbsd, uae], axis=1)
