"""The one preprocessing path: any supported image becomes the model's uint8 RGB input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from tasks.core.image_properties import measurable_pixels
from tasks.core.preprocessing import InputSpec, model_pixels, preprocess, preprocess_image

SPEC = InputSpec(height=28, width=28)


def encode(array: np.ndarray, mode: str, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def gray() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)


def test_preprocess_grayscale_is_replicated_to_rgb_unchanged(gray: np.ndarray) -> None:
    out = preprocess(encode(gray, "L"), SPEC)
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


def test_preprocess_keeps_rgb_channel_order() -> None:
    rgb = np.zeros((28, 28, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red must stay in channel 0
    out = preprocess(encode(rgb, "RGB"), SPEC)
    assert out[..., 0].min() == 200 and out[..., 1].max() == 0 and out[..., 2].max() == 0


def test_preprocess_drops_alpha(gray: np.ndarray) -> None:
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 7)])
    out = preprocess(encode(rgba, "RGBA"), SPEC)
    np.testing.assert_array_equal(out[..., 0], gray)


def test_preprocess_resizes_other_sizes_and_jpeg() -> None:
    big = np.full((100, 60, 3), 128, dtype=np.uint8)
    out = preprocess(encode(big, "RGB", "JPEG"), SPEC)
    assert out.shape == (28, 28, 3)
    assert abs(int(out.mean()) - 128) <= 2


def test_preprocess_rejects_bytes_that_are_not_an_image() -> None:
    with pytest.raises(UnidentifiedImageError):
        preprocess(b"definitely not an image", SPEC)


def test_tf_data_path_gives_the_same_pixels(gray: np.ndarray) -> None:
    """Training reads images inside tf.data; it must decode exactly as the service does."""
    files = [encode(gray, "L"), encode(np.full((100, 60, 3), 90, dtype=np.uint8), "RGB", "JPEG")]
    dataset = tf.data.Dataset.from_tensor_slices(files).map(lambda one: preprocess_image(one, SPEC))
    for from_graph, content in zip(dataset, files, strict=True):
        np.testing.assert_array_equal(from_graph.numpy(), preprocess(content, SPEC))


@pytest.mark.parametrize(("orientation", "turn"), [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(orientation: int, turn: int) -> None:
    """A camera stores the sensor's pixels and says how to turn them: the model sees the photo upright."""
    upright = np.zeros((28, 28, 3), dtype=np.uint8)
    upright[:8, :, :] = 255  # a white band at the top
    stored = np.ascontiguousarray(np.rot90(upright, k=-turn))  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    seen = preprocess(buffer.getvalue(), SPEC).mean(axis=2)
    assert seen[:8].mean() > 200 and seen[12:].mean() < 40, "the band must be at the top"


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1"])
@pytest.mark.parametrize("size", [(28, 28), (31, 20)])
def test_model_input_taken_from_the_stored_pixels_is_the_one_pillow_makes(mode: str, size: tuple[int, int]) -> None:
    """The service reuses the pixels it measured for the model input: the same bytes as converting anew."""
    rgba = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").convert(mode).save(buffer, format="PNG")
    image = Image.open(buffer)
    image.load()
    reused = model_pixels(image, SPEC, measurable_pixels(image))
    assert reused.shape == (28, 28, 3) and reused.dtype == np.uint8
    np.testing.assert_array_equal(reused, model_pixels(image, SPEC))
