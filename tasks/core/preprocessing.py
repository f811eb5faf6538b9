"""The one image-preprocessing path shared by training, evaluation, reference building and serving.

An encoded image (PNG, JPEG, GIF, BMP) becomes a uint8 RGB tensor of the model's input size:
grayscale is replicated to three channels, alpha is dropped, and the image is resized with
antialiased bilinear interpolation only when its size differs. Scaling to [0, 1] happens inside
the model (its first layer), so every caller hands the model the same uint8 pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import tensorflow as tf

CHANNELS = 3


@dataclass(frozen=True)
class InputSpec:
    """What the saved model expects; travels inside the model's metadata."""

    height: int
    width: int
    channels: int = CHANNELS
    dtype: str = "uint8"
    color_order: str = "RGB"
    resize: str = "bilinear, antialiased, only when the size differs"
    scaling: str = "inside the model: x / 255"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_rgb(encoded: tf.Tensor | bytes) -> tf.Tensor:
    """Decode any supported format to uint8 RGB (grayscale replicated, alpha dropped)."""
    return tf.io.decode_image(encoded, channels=CHANNELS, dtype=tf.uint8, expand_animations=False)


def resize_to_input(image: tf.Tensor, spec: InputSpec) -> tf.Tensor:
    """Resize a uint8 HxWx3 image to the input size, rounding back to uint8."""
    target = tf.constant([spec.height, spec.width], dtype=tf.int32)

    def resized() -> tf.Tensor:
        scaled = tf.image.resize(image, target, method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(scaled), 0.0, 255.0), tf.uint8)

    same_size = tf.reduce_all(tf.equal(tf.shape(image)[:2], target))
    output = tf.cond(same_size, lambda: tf.identity(image), resized)
    return tf.ensure_shape(output, (spec.height, spec.width, CHANNELS))


def preprocess_image(encoded: tf.Tensor | bytes, spec: InputSpec) -> tf.Tensor:
    """Encoded bytes -> the model's uint8 input; usable eagerly and inside tf.data graphs."""
    return resize_to_input(decode_rgb(encoded), spec)
