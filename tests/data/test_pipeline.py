"""The tf.data input: images in manifest order, with their labels, preprocessed by the shared function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.core.preprocessing import InputSpec
from tasks.data.pipeline import evaluation_batches, image_dataset
from tests.helpers.images import random_png_folder

SPEC = InputSpec(28, 28)


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    return tmp_path, random_png_folder(tmp_path)


def test_evaluation_batches_keep_order_and_pixels(folder: tuple[Path, pd.DataFrame]) -> None:
    root, rows = folder
    batches = evaluation_batches(image_dataset(root, rows, ["a", "b"], SPEC), 5)
    images = np.concatenate([x.numpy() for x, _ in batches])
    labels = np.concatenate([y.numpy() for _, y in batches])
    expected = np.asarray(Image.open(root / rows["path"][3]), dtype=np.float32)
    np.testing.assert_array_equal(images[3, ..., 1], expected)
    assert labels.tolist() == [0, 1] * 12


def test_unknown_label_is_reported(folder: tuple[Path, pd.DataFrame]) -> None:
    root, rows = folder
    with pytest.raises(ValueError, match=r"labels \['b'\] are not among the model's classes"):
        image_dataset(root, rows, ["a", "c"], SPEC)
