"""Image properties feed drift monitoring: they must measure what their names say, for every layout."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tasks.core.image_properties import decode_original, image_properties


def reference_properties(gray_uint8: np.ndarray) -> tuple[float, float, float]:
    """Plain NumPy: gray mean and std, and the variance of the 4-neighbour Laplacian (reflected border)."""
    gray = gray_uint8.astype(np.float64) / 255.0
    padded = np.pad(gray, 1, mode="reflect") if min(gray.shape) > 1 else np.pad(gray, 1, mode="edge")
    laplacian = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * padded[1:-1, 1:-1]
    return gray.mean(), gray.std(), laplacian.var()


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 2), (28, 28, 3), (28, 28, 4), (300, 200, 3), (7, 5)])
def test_properties_match_their_definition(shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    if len(shape) == 3 and shape[2] >= 3:
        red, green, blue = (image[..., i].astype(np.int64) for i in range(3))
        # ITU-R BT.601 luma in the 15-bit fixed point OpenCV uses for 8-bit images
        gray = ((red * 9798 + green * 19235 + blue * 3735 + (1 << 14)) >> 15).astype(np.uint8)
    else:
        gray = image if len(shape) == 2 else image[..., 0]
    brightness, contrast, sharpness = reference_properties(gray)
    measured = image_properties(image)
    assert measured["brightness"] == pytest.approx(brightness, rel=1e-5, abs=1e-3 / 255)
    assert measured["contrast"] == pytest.approx(contrast, rel=1e-4, abs=1e-3 / 255)
    assert measured["sharpness"] == pytest.approx(sharpness, rel=1e-3)
    assert (measured["width"], measured["height"]) == (shape[1], shape[0])
    assert measured["channels"] == (shape[2] if len(shape) == 3 else 1)


def test_flat_image_has_no_contrast_or_sharpness() -> None:
    measured = image_properties(np.full((10, 12), 200, dtype=np.uint8))
    assert measured["brightness"] == pytest.approx(200 / 255)
    assert measured["contrast"] == pytest.approx(0.0, abs=1e-7)
    assert measured["sharpness"] == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA"])
def test_served_uploads_are_measured_as_training_images_are(mode: str) -> None:
    """Drift monitoring compares the two: the same file must give the same properties."""
    from services.dl_service.images import check_image

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    content = buffer.getvalue()
    assert check_image(content, 10**7, 10**7).properties == image_properties(decode_original(content))
