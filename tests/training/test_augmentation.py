"""Augmentation from YAML, and training batches that are augmented, repeatably."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs.schema import AugmenterConfig
from tasks.core.errors import ConfigError
from tasks.core.preprocessing import InputSpec
from tasks.data.pipeline import evaluation_batches, image_dataset
from tasks.training.augmentation import augment_batch, build_augmenter
from tasks.training.batches import training_batches
from tests.helpers.images import random_png_folder

SPEC = InputSpec(28, 28)
AUGMENTERS = [
    AugmenterConfig(name="Fliplr", params={"p": 0.5}),
    AugmenterConfig(name="Affine", params={"translate_px": [-3, 3]}),
]


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    return tmp_path, random_png_folder(tmp_path)


def test_unknown_augmenter_names_the_entry() -> None:
    with pytest.raises(ConfigError, match=r"train\.augmentation\[1\]\.name: 'Blurr'"):
        build_augmenter([AUGMENTERS[0], AugmenterConfig(name="Blurr")], seed=0)


def test_bad_augmenter_parameter_names_the_entry() -> None:
    with pytest.raises(ConfigError, match=r"train\.augmentation\[0\]\.params: invalid for Fliplr"):
        build_augmenter([AugmenterConfig(name="Fliplr", params={"probability": 0.5})], seed=0)


def test_augment_batch_depends_only_on_its_seed() -> None:
    augmenter = build_augmenter(AUGMENTERS, seed=3)
    assert augmenter is not None
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 3), dtype=np.uint8)
    first = augment_batch(augmenter, images, np.int64(11))
    augment_batch(augmenter, images, np.int64(99))  # another batch in between changes nothing
    np.testing.assert_array_equal(first, augment_batch(augmenter, images, np.int64(11)))
    assert not np.array_equal(first, images)


def test_training_batches_are_augmented_and_repeatable(folder: tuple[Path, pd.DataFrame]) -> None:
    root, rows = folder
    names = ["a", "b"]

    def first_epoch() -> np.ndarray:
        augmenter = build_augmenter(AUGMENTERS, seed=5)
        batches = training_batches(image_dataset(root, rows, names, SPEC), 8, 5, 100, augmenter)
        return np.concatenate([x.numpy() for x, _ in batches])

    one, two = first_epoch(), first_epoch()
    np.testing.assert_array_equal(one, two)
    assert one.dtype == np.float32 and one.shape == (24, 28, 28, 3)
    plain = np.concatenate([x.numpy() for x, _ in evaluation_batches(image_dataset(root, rows, names, SPEC), 8)])
    assert not np.array_equal(np.sort(one.reshape(24, -1), axis=0), np.sort(plain.reshape(24, -1), axis=0))
