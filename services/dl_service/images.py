"""Checks on uploaded bytes before they reach the model: every refusal is a 4xx with a reason.

Status codes mean what HTTP says: 400 empty body, 413 too many bytes or pixels, 415 not an
image or an unsupported format, colour mode or bit depth, 422 a corrupt or truncated file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from tasks.core.image_properties import content_hash, image_properties, measurable_pixels
from tasks.core.preprocessing import InputSpec, model_pixels, upright

SUPPORTED_FORMATS = {"PNG", "JPEG", "MPO", "GIF", "BMP"}  # MPO: a camera JPEG with extra views
SUPPORTED_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA"}
PLAIN_PNG_MODES = {"L", "RGB", "RGBA"}
# Where Pillow finds an EXIF orientation in a PNG (upright() turns the image by it): the eXIf chunk, an
# ImageMagick text chunk, XMP. Their names are never compressed, so finding none means no turn.
ORIENTATION_MARKERS = (b"eXIf", b"Raw profile type exif", b"XML:com.adobe.xmp")
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
        stored = plain_png_pixels(content, image)
        if stored is None:
            image.load()
            image = upright(image)
            stored = measurable_pixels(image)
        properties = image_properties(stored)
        pixels = model_pixels(image, spec, stored) if spec is not None else None
    return CheckedImage(content, content_hash(content), properties, pixels)


def plain_png_pixels(content: bytes, image: Image.Image) -> np.ndarray | None:
    """The stored pixels of a plain PNG (8-bit gray, RGB or RGBA, not interlaced, no transparency key, nothing
    that could turn it), decoded by libpng in one call: the same array Pillow's decoder gives, for about a
    third of its cost on the request path (tests/service/test_image_checks.py compares the two). None for
    any other image, which Pillow decodes."""
    if image.format != "PNG" or image.mode not in PLAIN_PNG_MODES or "transparency" in image.info:
        return None
    # IHDR is the first chunk (Pillow checked): bit depth at byte 24, interlace method at byte 28.
    if content[24] != 8 or content[28] != 0 or any(marker in content for marker in ORIENTATION_MARKERS):
        return None
    decoded = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageRejected(422, "corrupt or truncated image: the PNG data does not decode")
    if decoded.shape[:2] != (image.height, image.width):
        return None
    if decoded.ndim == 3:  # libpng through OpenCV gives blue first
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB if decoded.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    return decoded


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
