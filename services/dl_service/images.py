"""Checks on uploaded bytes before they reach the model: every refusal is a 4xx with a reason.

Status codes mean what HTTP says: 400 empty body, 413 too many bytes or pixels, 415 not an
image or an unsupported format, colour mode or bit depth, 422 a corrupt or truncated file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from tasks.core.image_properties import content_hash, image_properties, measurable_pixels

SUPPORTED_FORMATS = {"PNG", "JPEG", "GIF", "BMP"}
SUPPORTED_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA"}


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


def check_image(content: bytes, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Refuse what the model cannot take; measure what it can (properties, content hash)."""
    if not content:
        raise ImageRejected(400, "empty upload: send the image file as the 'file' form field")
    if len(content) > max_bytes:
        raise ImageRejected(413, f"upload is {len(content):,} bytes; the limit is {max_bytes:,}")
    try:
        with Image.open(io.BytesIO(content)) as image:
            _check_header(image, max_pixels)
            image.load()
            pixels = measurable_pixels(image)
    except Image.DecompressionBombError as error:
        raise ImageRejected(413, f"image has too many pixels: {error}") from None
    except UnidentifiedImageError:
        raise ImageRejected(415, "not an image: send a PNG, JPEG, GIF or BMP file") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(422, f"corrupt or truncated image: {error}") from None
    return CheckedImage(content, content_hash(content), image_properties(pixels))


def _check_header(image: Image.Image, max_pixels: int) -> None:
    if image.format not in SUPPORTED_FORMATS:
        raise ImageRejected(415, f"unsupported format {image.format}: send PNG, JPEG, GIF or BMP")
    if image.mode not in SUPPORTED_MODES:
        raise ImageRejected(415, f"unsupported colour mode or bit depth {image.mode!r}: send 8-bit grayscale or RGB(A)")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(413, f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}")
