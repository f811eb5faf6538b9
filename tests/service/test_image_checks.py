"""The checks' two decoders agree: a plain PNG, its header read from IHDR and its pixels decoded by libpng in
one call, gives exactly the pixels, the properties and the model input that Pillow's path (the one training
uses) gives, and anything that is not plain (a palette, a transparency key, an orientation, gray with alpha,
an animation) goes through Pillow itself."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from services.dl_service.images import ImageRejected, PlainPng, check_image, open_checked, plain_png_pixels
from tasks.core.image_properties import image_properties, measurable_pixels
from tasks.core.preprocessing import EXIF_ORIENTATION, InputSpec, model_pixels, upright

SPEC = InputSpec(height=28, width=28)
LIMITS = (10 * 1024 * 1024, 25_000_000)


def png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def with_chunk(content: bytes, kind: bytes, data: bytes) -> bytes:
    """``content`` with one more chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return content[:33] + chunk + content[33:]


def pillow_reference(content: bytes) -> tuple[np.ndarray, dict[str, float], np.ndarray]:
    """What training's decoder makes of ``content``: stored pixels, properties, model input."""
    image = Image.open(io.BytesIO(content))
    image.load()
    shown = upright(image)
    stored = measurable_pixels(shown)
    return stored, image_properties(stored), model_pixels(shown, SPEC)


def noise(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    rgba = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    rgba[: size[1] // 2, :, :3] //= 3  # not uniform: a darker half, so brightness and contrast mean something
    return Image.fromarray(rgba, mode="RGBA").convert(mode)


def text_chunks() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "scanner 2.1")
    info.add_text("Comment", "compressed " * 20, zip=True)
    return info


PLAIN = {
    "gray": png(noise("L", (28, 28))),
    "RGB": png(noise("RGB", (28, 28), 1)),
    "RGBA": png(noise("RGBA", (28, 28), 2)),
    "gray, another size": png(noise("L", (100, 37), 3)),
    "RGB, another size": png(noise("RGB", (17, 64), 4)),
    "most compressed": png(noise("L", (28, 28), 5), optimize=True, compress_level=9),
    "text chunks": png(noise("RGB", (28, 28), 6), pnginfo=text_chunks()),
    "gamma, sRGB, dpi": with_chunk(
        with_chunk(png(noise("RGB", (28, 28), 7), dpi=(300, 300)), b"gAMA", struct.pack(">I", 45455)), b"sRGB", b"\0"
    ),
}


@pytest.mark.parametrize("name", list(PLAIN))
def test_a_plain_png_decodes_to_the_pixels_properties_and_model_input_pillow_gives(name: str) -> None:
    content = PLAIN[name]
    header = open_checked(content, *LIMITS)
    assert isinstance(header, PlainPng), "expected the plain path, without Pillow"
    stored, properties, model_input = pillow_reference(content)
    pillow = Image.open(io.BytesIO(content))
    assert (header.width, header.height, header.mode) == (*pillow.size, pillow.mode)
    checked = check_image(content, *LIMITS, SPEC)
    assert checked.properties == properties
    assert checked.pixels is not None
    np.testing.assert_array_equal(checked.pixels, model_input)
    np.testing.assert_array_equal(plain_png_pixels(content, header), stored)


def turned(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return png(noise("L", (20, 28), 8), exif=exif)


NOT_PLAIN = {
    "palette": png(noise("P", (28, 28), 9)),
    "gray with alpha": png(noise("LA", (28, 28), 10)),
    "transparency key": png(noise("RGB", (28, 28), 11), transparency=(0, 0, 0)),
    "EXIF orientation": turned(6),
    "orientation in a text chunk": png(
        noise("L", (28, 28), 12),
        pnginfo=(lambda info: (info.add_text("Raw profile type exif", "\nexif\n   0\n"), info)[1])(
            PngImagePlugin.PngInfo()
        ),
    ),
}


@pytest.mark.parametrize("name", list(NOT_PLAIN))
def test_anything_but_a_plain_png_goes_through_pillow_and_is_turned_as_it_says(name: str) -> None:
    content = NOT_PLAIN[name]
    assert isinstance(open_checked(content, *LIMITS), Image.Image), "expected Pillow's path"
    _, properties, model_input = pillow_reference(content)
    checked = check_image(content, *LIMITS, SPEC)
    assert checked.properties == properties
    np.testing.assert_array_equal(checked.pixels, model_input)


def test_a_plain_png_past_the_pixel_limit_is_refused_from_its_header() -> None:
    content = png(noise("L", (300, 200), 14))
    with pytest.raises(ImageRejected) as refused:
        open_checked(content, LIMITS[0], 59_999)
    assert refused.value.status_code == 413
    assert refused.value.reason == "image is 300x200 = 60,000 pixels; the limit is 59,999"


def test_an_animated_png_goes_to_pillow_and_is_refused() -> None:
    frames = [noise("L", (28, 28), seed) for seed in (15, 16)]
    content = png(frames[0], save_all=True, append_images=frames[1:])  # 8-bit gray: plain, but for acTL
    with pytest.raises(ImageRejected) as refused:
        open_checked(content, *LIMITS)
    assert refused.value.status_code == 415 and "animated images are not supported" in refused.value.reason


def test_the_turned_png_is_shown_upright() -> None:
    checked = check_image(turned(6), *LIMITS, SPEC)
    assert (checked.properties["width"], checked.properties["height"]) == (28, 20)  # 20x28 stored, shown turned


def test_a_plain_png_with_damaged_pixel_data_is_refused_with_a_reason() -> None:
    content = bytearray(PLAIN["gray"])
    start = content.index(b"IDAT") + 4
    length = struct.unpack(">I", content[start - 8 : start - 4])[0]
    content[start + 10 : start + 30] = bytes(20)  # the deflate stream broken, its CRC made to match
    content[start + length : start + length + 4] = struct.pack(
        ">I", zlib.crc32(bytes(content[start - 4 : start + length]))
    )
    with pytest.raises(ImageRejected) as refused:
        check_image(bytes(content), *LIMITS, SPEC)
    assert refused.value.status_code == 422 and "corrupt or truncated" in refused.value.reason
