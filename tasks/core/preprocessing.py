"""The one preprocessing path shared by training, evaluation, reference building and serving.

An encoded image (PNG, JPEG, GIF, BMP) becomes a uint8 RGB array of the model's input size.
One decoder (Pillow) serves every caller, so what the service checked is exactly what the model
sees (the service decodes plain PNGs with libpng in one call, proven to give the same pixels:
services/dl_service/images.py): the first frame only, turned upright by its EXIF orientation (a
photographed JPEG is classified the way it is displayed), grayscale replicated to three channels,
alpha dropped, and resized with antialiased bilinear interpolation only when its size differs.
Scaling to [0, 1] happens inside the model (its first layer), so every caller hands the model the
same uint8 pixels.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import tensorflow as tf
from PIL import Image

CHANNELS = 3
VIEWABLE_AS_RGB = ("L", "RGB", "RGBA")  # modes whose stored pixels give RGB without Pillow's conversion
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose does).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class InputSpec:
    """What the saved model expects; travels inside the model's metadata."""

    height: int
    width: int
    channels: int = CHANNELS
    dtype: str = "uint8"
    color_order: str = "RGB"
    decoder: str = "Pillow: first frame, EXIF orientation applied"
    resize: str = "bilinear, antialiased, only when the size differs"
    scaling: str = "inside the model: x / 255"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def upright(image: Image.Image) -> Image.Image:
    """The decoded image turned the way its EXIF orientation says it is displayed."""
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    return image.transpose(UPRIGHT[orientation]) if orientation in UPRIGHT else image


def decode(content: bytes) -> Image.Image:
    """Encoded bytes -> the decoded, upright first frame (callers that take uploads check limits first)."""
    image = Image.open(io.BytesIO(content))
    image.load()
    return upright(image)


def as_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "PA":  # palette + alpha: through RGBA, since Pillow has no direct conversion
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")  # gray replicated, palettes expanded, alpha dropped


def model_pixels(image: Image.Image | None, spec: InputSpec, stored: np.ndarray | None = None) -> np.ndarray:
    """A decoded image -> the model's uint8 HxWx3 input. Pillow's bilinear resize is antialiased
    (its support widens with the scale) and works on uint8, so no float copy of a large image is made.

    ``stored``: the image's pixels as already read (``measurable_pixels``). At the model's size, gray,
    RGB and RGBA are taken from them as Pillow's conversion would make them (gray replicated, alpha
    dropped), which spares the service a second read of every upload. ``image`` may be None when
    ``stored`` holds 8-bit gray, RGB or RGBA pixels (decoded without Pillow)."""
    at_model_size = stored is not None and stored.shape[:2] == (spec.height, spec.width)
    if stored is not None and at_model_size and (image is None or image.mode in VIEWABLE_AS_RGB):
        if stored.ndim == 2:  # gray: the same plane three times (one call in C; numpy's ways cost 3-8 us)
            return cv2.cvtColor(np.ascontiguousarray(stored), cv2.COLOR_GRAY2RGB)
        return stored[:, :, :CHANNELS]
    if image is None:
        if stored is None:
            raise ValueError("model_pixels needs the image or its stored pixels")
        image = Image.fromarray(stored)
    rgb = as_rgb(image)
    if rgb.size != (spec.width, spec.height):
        rgb = rgb.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def preprocess(content: bytes, spec: InputSpec) -> np.ndarray:
    """Encoded bytes -> the model's uint8 input."""
    return model_pixels(decode(content), spec)


def preprocess_image(encoded: tf.Tensor, spec: InputSpec) -> tf.Tensor:
    """The same path inside tf.data graphs (a string tensor in, a uint8 HxWx3 tensor out)."""

    def preprocess_bytes(content: bytes) -> np.ndarray:
        return preprocess(bytes(content), spec)

    pixels = tf.numpy_function(preprocess_bytes, [encoded], tf.uint8, stateful=False)
    return tf.ensure_shape(pixels, (spec.height, spec.width, CHANNELS))
