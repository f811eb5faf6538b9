"""Per-image properties used by data validation, the prediction log and drift monitoring.

Computed on the image as received (before resizing), so a change in what users send, such as
brightness, size or colour, is visible even when the model input looks the same.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tasks.core.preprocessing import decode

PROPERTY_COLUMNS = ("brightness", "contrast", "sharpness", "width", "height", "channels")
LAPLACIAN_STRIP_ROWS = 256  # rows filtered at once: bounds the float copy of a large upload


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def image_properties(image: np.ndarray) -> dict[str, float]:
    """Brightness and contrast (mean and std of gray levels, 0-1), sharpness (Laplacian variance).

    OpenCV's one-pass mean/std keeps this at about 12 us for a small image: the service
    measures every upload on its request path. Gray levels stay uint8 and the Laplacian is taken
    in strips of rows, so a 25-megapixel upload costs one byte per pixel, not a float copy.
    """
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels >= 3:
        gray = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    else:  # gray, or gray + alpha: the gray channel
        gray = np.ascontiguousarray(image.reshape(image.shape[0], image.shape[1], -1)[..., 0])
    mean, std = cv2.meanStdDev(gray)
    return {
        "brightness": float(mean[0, 0]) / 255.0,
        "contrast": float(std[0, 0]) / 255.0,
        "sharpness": laplacian_variance(gray) / 255.0**2,
        "width": float(image.shape[1]),
        "height": float(image.shape[0]),
        "channels": float(channels),
    }


def laplacian_variance(gray: np.ndarray, strip_rows: int = LAPLACIAN_STRIP_ROWS) -> float:
    """Variance of the 4-neighbour Laplacian (reflected border) of uint8 gray levels.

    Each strip is filtered with one row of its neighbours on either side, and only its own rows
    are counted, so the result equals filtering the whole image at once.
    """
    height = gray.shape[0]
    total, total_squares = 0.0, 0.0
    for top in range(0, height, strip_rows):
        bottom = min(top + strip_rows, height)
        above, below = min(top, 1), min(height - bottom, 1)  # neighbour rows that exist
        laplacian = cv2.Laplacian(gray[top - above : bottom + below], cv2.CV_32F)[above : above + bottom - top]
        strip_mean, strip_std = cv2.meanStdDev(laplacian)  # one pass in C; strips combine through their sums
        mean, variance = float(strip_mean[0, 0]), float(strip_std[0, 0]) ** 2
        total += mean * laplacian.size
        total_squares += (variance + mean * mean) * laplacian.size
    mean = total / gray.size
    return max(total_squares / gray.size - mean * mean, 0.0)


def measurable_pixels(image: Image.Image) -> np.ndarray:
    """The pixels properties are measured on, the same for training data and served uploads:
    the stored channels where they are 8-bit gray or colour, bilevel as gray, anything else as RGB."""
    if image.mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(image)
    if image.mode == "1":
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))  # palettes, CMYK, 16-bit


def decode_original(content: bytes) -> np.ndarray:
    """The image as stored and shown upright, with its own channel count (no conversion), for measuring it."""
    return measurable_pixels(decode(content))


def file_properties(path: Path) -> dict[str, float | str]:
    content = path.read_bytes()
    return {"sha256": content_hash(content), **image_properties(decode_original(content))}
