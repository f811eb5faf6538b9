"""The one preprocessing path: any supported image becomes the model's uint8 RGB input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tasks.core.preprocessing import InputSpec, preprocess_image

SPEC = InputSpec(height=28, width=28)


def encode(array: np.ndarray, mode: str, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def gray() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)


def test_preprocess_grayscale_is_replicated_to_rgb_unchanged(gray: np.ndarray) -> None:
    out = preprocess_image(encode(gray, "L"), SPEC).numpy()
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


def test_preprocess_keeps_rgb_channel_order() -> None:
    rgb = np.zeros((28, 28, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red must stay in channel 0
    out = preprocess_image(encode(rgb, "RGB"), SPEC).numpy()
    assert out[..., 0].min() == 200 and out[..., 1].max() == 0 and out[..., 2].max() == 0


def test_preprocess_drops_alpha(gray: np.ndarray) -> None:
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 7)])
    out = preprocess_image(encode(rgba, "RGBA"), SPEC).numpy()
    np.testing.assert_array_equal(out[..., 0], gray)


def test_preprocess_resizes_other_sizes_and_jpeg() -> None:
    big = np.full((100, 60, 3), 128, dtype=np.uint8)
    out = preprocess_image(encode(big, "RGB", "JPEG"), SPEC).numpy()
    assert out.shape == (28, 28, 3)
    assert abs(int(out.mean()) - 128) <= 2


def test_preprocess_rejects_bytes_that_are_not_an_image() -> None:
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?i)unknown image file format|decode"):
        preprocess_image(b"definitely not an image", SPEC)
