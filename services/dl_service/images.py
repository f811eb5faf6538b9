"""Checks on uploaded bytes before they reach the model: every refusal is a 4xx with a reason.

Status codes mean what HTTP says: 400 empty body, 413 too many bytes or pixels, 415 not an
image or an unsupported format, colour mode or bit depth, 422 a corrupt or truncated file.
"""

from __future__ import annotations

import io
import struct
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
PNG_START = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"  # the signature, then IHDR: always first, 13 bytes
PLAIN_PNG_MODES = {0: "L", 2: "RGB", 6: "RGBA"}  # IHDR colour type -> Pillow's mode, at 8 bits
# What makes a PNG not plain, found by name (chunk names are never compressed): a transparency key, an
# animation, and where Pillow finds an EXIF orientation (upright() turns the image by it): the eXIf
# chunk, an ImageMagick text chunk, XMP. A name that turns up inside compressed data only sends the
# upload to Pillow, which reads it exactly.
NOT_PLAIN_MARKERS = (b"tRNS", b"acTL", b"eXIf", b"Raw profile type exif", b"XML:com.adobe.xmp")
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


@dataclass(frozen=True)
class PlainPng:
    """The header of a plain PNG (8-bit gray, RGB or RGBA, not interlaced, no transparency key, not
    animated, nothing that could turn it), read from IHDR without Pillow: libpng decodes it in one call."""

    width: int
    height: int
    mode: str


Opened = Image.Image | PlainPng  # what open_checked passed: Pillow's opened image, or a plain PNG's header


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


def open_checked(content: bytes, max_bytes: int, max_pixels: int) -> Opened:
    """Read the header only and refuse what would be too large to decode: no pixel is decoded here."""
    if not content:
        raise ImageRejected(400, "empty upload: send the image file as the 'file' form field")
    if len(content) > max_bytes:
        raise ImageRejected(413, f"upload is {len(content):,} bytes; the limit is {max_bytes:,}")
    plain = plain_png_header(content)
    if plain is not None:
        _check_pixels(plain.width, plain.height, max_pixels)
        return plain
    with _refusals():
        image = Image.open(io.BytesIO(content))
        _check_header(image, max_pixels)
    return image


def plain_png_header(content: bytes) -> PlainPng | None:
    """The IHDR of a plain PNG, in a few microseconds where Pillow's open takes 9 to 17; None for anything
    else (Pillow reads it)."""
    if not content.startswith(PNG_START) or len(content) < 33:
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", content, 16)
    mode = PLAIN_PNG_MODES.get(colour)
    if mode is None or depth != 8 or compression or filtering or interlace:
        return None
    if any(marker in content for marker in NOT_PLAIN_MARKERS):
        return None
    return PlainPng(width, height, mode)


def decode_checked(content: bytes, opened: Opened, spec: InputSpec | None) -> CheckedImage:
    """Decode an image ``open_checked`` passed (its first frame, upright), measure it and make the model's input."""
    with _refusals():
        stored = plain_png_pixels(content, opened) if isinstance(opened, PlainPng) else None
        image: Image.Image | None = None  # a plain PNG's pixels need no Pillow image (model_pixels)
        if stored is None:
            image = opened if isinstance(opened, Image.Image) else Image.open(io.BytesIO(content))
            image.load()
            image = upright(image)
            stored = measurable_pixels(image)
        properties = image_properties(stored)
        pixels = model_pixels(image, spec, stored) if spec is not None else None
    return CheckedImage(content, content_hash(content), properties, pixels)


def plain_png_pixels(content: bytes, header: PlainPng) -> np.ndarray | None:
    """The stored pixels of a plain PNG, decoded by libpng in one call: the same array Pillow's decoder gives,
    for about a third of its cost on the request path (tests/service/test_image_checks.py compares the two).
    None if libpng reads another size than IHDR says (Pillow decodes it then)."""
    decoded = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageRejected(422, "corrupt or truncated image: the PNG data does not decode")
    if decoded.shape[:2] != (header.height, header.width):
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
    _check_pixels(*image.size, max_pixels)
    if image.format != "MPO" and getattr(image, "is_animated", False):  # header walk only: no frame is decoded
        raise ImageRejected(415, "animated images are not supported: send a single frame")


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageRejected(413, f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}")
