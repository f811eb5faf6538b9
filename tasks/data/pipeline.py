"""tf.data input: read, preprocess with the shared function, batch in a fixed order, prefetch.

Decoded images are cached as uint8 after the first pass. Training batches (shuffled and
augmented) are built on top of these in ``tasks.training.batches``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from tasks.core.preprocessing import InputSpec, preprocess_image

AUTOTUNE = tf.data.AUTOTUNE


def encode_labels(labels: pd.Series, class_names: list[str]) -> np.ndarray:
    index = {name: position for position, name in enumerate(class_names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the model's classes {class_names}")
    return labels.map(index).to_numpy(dtype=np.int32)


def image_dataset(data_dir: Path, rows: pd.DataFrame, class_names: list[str], spec: InputSpec) -> tf.data.Dataset:
    """(uint8 image, label index) per manifest row, in manifest order."""
    paths = [str(data_dir / relative) for relative in rows["path"]]
    labels = encode_labels(rows["label"], class_names)
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    return dataset.map(
        lambda path, label: (preprocess_image(tf.io.read_file(path), spec), label),
        num_parallel_calls=AUTOTUNE,
    )


def labelled_batches(
    data_dir: Path, rows: pd.DataFrame, class_names: list[str], spec: InputSpec, batch_size: int = 512
) -> tf.data.Dataset:
    """(uint8 images, label indices, paths) in manifest order: one pass keeps all three aligned."""
    labels = encode_labels(rows["label"], class_names)
    paths = rows["path"].tolist()
    dataset = tf.data.Dataset.from_tensor_slices(([str(data_dir / p) for p in paths], labels, paths))
    dataset = dataset.map(
        lambda file, label, path: (preprocess_image(tf.io.read_file(file), spec), label, path),
        num_parallel_calls=AUTOTUNE,
    )
    return dataset.batch(batch_size).prefetch(AUTOTUNE)


def evaluation_batches(images: tf.data.Dataset, batch_size: int, cache: bool = True) -> tf.data.Dataset:
    """Batches in a fixed order with no augmentation, so labels stay aligned with predictions."""
    if cache:
        images = images.cache()
    return images.batch(batch_size).map(to_model_input, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def to_model_input(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(images, tf.float32), labels
