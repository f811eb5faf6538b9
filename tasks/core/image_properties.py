"""Per-image properties used by data validation, the prediction log and drift monitoring.

Computed on the image as received (before resizing), so a change in what users send, such as
brightness, size or colour, is visible even when the model input looks the same.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

PROPERTY_COLUMNS = ("brightness", "contrast", "sharpness", "width", "height", "channels")


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def image_properties(image: np.ndarray) -> dict[str, float]:
    """Brightness and contrast (mean and std of gray levels, 0-1), sharpness (Laplacian variance).

    OpenCV's one-pass mean/std keeps this at about 12 us for a small image: the service
    measures every upload on its request path.
    """
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels >= 3:
        gray = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    else:  # gray, or gray + alpha: the gray channel
        gray = np.ascontiguousarray(image.reshape(image.shape[0], image.shape[1], -1)[..., 0])
    gray = gray.astype(np.float32) * np.float32(1 / 255.0)
    mean, std = cv2.meanStdDev(gray)
    _, laplacian_std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_32F))
    return {
        "brightness": float(mean[0, 0]),
        "contrast": float(std[0, 0]),
        "sharpness": float(laplacian_std[0, 0] ** 2),
        "width": float(image.shape[1]),
        "height": float(image.shape[0]),
        "channels": float(channels),
    }


def measurable_pixels(image: Image.Image) -> np.ndarray:
    """The pixels properties are measured on, the same for training data and served uploads:
    the stored channels where they are 8-bit gray or colour, bilevel as gray, anything else as RGB."""
    if image.mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(image)
    if image.mode == "1":
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))  # palettes, CMYK, 16-bit


def decode_original(content: bytes) -> np.ndarray:
    """The image as stored, with its own channel count (no conversion), for measuring it."""
    with Image.open(io.BytesIO(content)) as opened:
        return measurable_pixels(opened)


def file_properties(path: Path) -> dict[str, float | str]:
    content = path.read_bytes()
    return {"sha256": content_hash(content), **image_properties(decode_original(content))}
