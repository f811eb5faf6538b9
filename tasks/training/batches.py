"""Training batches: cached, reshuffled each epoch, augmented with imgaug, cast for the model.

Augmentation runs on training batches only, each batch with its own seed drawn from a seeded
stream, so a run is repeatable whatever the thread timing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from tasks.data.pipeline import AUTOTUNE, to_model_input
from tasks.training.augmentation import augment_batch

if TYPE_CHECKING:
    import imgaug.augmenters as iaa


def training_batches(
    images: tf.data.Dataset,
    batch_size: int,
    seed: int,
    shuffle_buffer: int,
    augmenter: iaa.Sequential | None,
) -> tf.data.Dataset:
    """Cached, reshuffled each epoch, batched, augmented, cast for the model, prefetched."""
    batches = images.cache().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    batches = batches.batch(batch_size)
    if augmenter is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        batches = tf.data.Dataset.zip(batches, seeds).map(
            lambda batch, batch_seed: _augment(augmenter, batch, batch_seed), num_parallel_calls=AUTOTUNE
        )
    return batches.map(to_model_input, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def _augment(
    augmenter: iaa.Sequential, batch: tuple[tf.Tensor, tf.Tensor], batch_seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    images, labels = batch
    augmented = tf.numpy_function(
        lambda x, s: augment_batch(augmenter, x, s), [images, batch_seed], tf.uint8, stateful=False
    )
    augmented.set_shape(images.shape)
    return augmented, labels
