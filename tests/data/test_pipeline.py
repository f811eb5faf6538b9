"""Augmentation from YAML, and a tf.data pipeline that augments training batches only, repeatably."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from configs.schema import AugmenterConfig
from tasks.core.errors import ConfigError
from tasks.core.preprocessing import InputSpec
from tasks.data.pipeline import evaluation_batches, image_dataset, training_batches
from tasks.training.augmentation import augment_batch, build_augmenter

SPEC = InputSpec(28, 28)
AUGMENTERS = [
    AugmenterConfig(name="Fliplr", params={"p": 0.5}),
    AugmenterConfig(name="Affine", params={"translate_px": [-3, 3]}),
]


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(1)
    rows = []
    for index in range(24):
        label = ("a", "b")[index % 2]
        relative = f"train/{label}/{index:03d}.png"
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(tmp_path / relative)
        rows.append({"path": relative, "label": label, "split": "train"})
    return tmp_path, pd.DataFrame(rows)


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
