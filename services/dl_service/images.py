"""Checks on uploaded bytes before they reach the model: every refusal is a 4xx with a reason.

Status codes mean what HTTP says: 400 empty body, 413 too many bytes or pixels, 415 not an
image or an unsupported format, colour mode or bit depth, 422 a corrupt or truncated file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from tasks.core.image_properties import content_hash, image_properties, measurable_pixels
from tasks.core.preprocessing import InputSpec, model_pixels, upright

SUPPORTED_FORMATS = {"PNG", "JPEG", "MPO", "GIF", "BMP"}  # MPO: a camera JPEG with extra views
SUPPORTED_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA"}
# Every upload's header is checked against the service's own pixel limit before anything is decoded;
# Pillow's fixed guard (which fires at open, with its own limit and wording) would only pre-empt it.
Image.MAX_IMAGE_PIXELS = None


class ImageRejected(Exception):
    """An upload that cannot be served; ``status_code`` and the message go back to the client."""

    def __init__(self, status_code: int, reason: str, index: int | None = None) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason
        self.index = index  # which image of a multi-image request

    def at(self, index: int) -> ImageRejected:
        return ImageRejected(self.status_code, self.reason, index)


@dataclass(frozen=True)
class CheckedImage:
    content: bytes
    sha256: str
    properties: dict[str, float]
    pixels: np.ndarray | None  # the model's input, when the model's input size was known


@contextmanager
def _refusals() -> Iterator[None]:
    """Pillow's errors, as the status code and reason the client gets."""
    try:
        yield
    except Image.DecompressionBombError as error:
        raise ImageRejected(413, f"image has too many pixels: {error}") from None
    except UnidentifiedImageError:
        raise ImageRejected(415, "not an image: send a PNG, JPEG, GIF or BMP file") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRejected(422, f"corrupt or truncated image: {error}") from None


def open_checked(content: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Read the header only and refuse what would be too large to decode: no pixel is decoded here."""
    if not content:
        raise ImageRejected(400, "empty upload: send the image file as the 'file' form field")
    if len(content) > max_bytes:
        raise ImageRejected(413, f"upload is {len(content):,} bytes; the limit is {max_bytes:,}")
    with _refusals():
        image = Image.open(io.BytesIO(content))
        _check_header(image, max_pixels)
    return image


def decode_checked(content: bytes, image: Image.Image, spec: InputSpec | None) -> CheckedImage:
    """Decode an image ``open_checked`` passed (its first frame, upright), measure it and make the model's input."""
    with _refusals():
        image.load()
        shown = upright(image)
        stored = measurable_pixels(shown)
        properties = image_properties(stored)
        pixels = model_pixels(shown, spec, stored) if spec is not None else None
    return CheckedImage(content, content_hash(content), properties, pixels)


def check_image(content: bytes, max_bytes: int, max_pixels: int, spec: InputSpec | None = None) -> CheckedImage:
    """Refuse what the model cannot take; measure what it can (properties, content hash, model input)."""
    return decode_checked(content, open_checked(content, max_bytes, max_pixels), spec)


def _check_header(image: Image.Image, max_pixels: int) -> None:
    if image.format not in SUPPORTED_FORMATS:
        raise ImageRejected(415, f"unsupported format {image.format}: send PNG, JPEG, GIF or BMP")
    if image.mode not in SUPPORTED_MODES:
        raise ImageRejected(415, f"unsupported colour mode or bit depth {image.mode!r}: send 8-bit grayscale or RGB(A)")
    # Pillow's size is the decoded canvas: a GIF's logical screen, widened by a first frame that
    # reaches past it, so a tiny frame on a huge screen is refused here too.
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(413, f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}")
    if image.format != "MPO" and getattr(image, "is_animated", False):  # header walk only: no frame is decoded
        raise ImageRejected(415, "animated images are not supported: send a single frame")
