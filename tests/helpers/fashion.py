"""Real Fashion-MNIST images as a plain image folder, and the project's small CNN trained on it the way
the train task does, for the model-behaviour tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from configs.schema import FlowConfig, load_config
from tasks.core.preprocessing import InputSpec, preprocess
from tasks.core.settings import REPO_ROOT
from tasks.data.dataset import read_manifest
from tasks.data.demo import CLASS_NAMES, load_source, png_bytes
from tasks.training.fit import train_classifier as fit
from tasks.training.models import build_classifier

SPEC = InputSpec(28, 28)
# split -> (release of the original dataset, first index, number of images); train and validation do not
# overlap, and test comes from the original test release. Sized so training takes about 25 s on 2 CPU cores.
FOLDER_SPLITS = {
    "train": ("train", 0, 10_000),
    "validation": ("train", 10_000, 500),
    "test": ("test", 0, 1_000),
}


@dataclass
class TrainedClassifier:
    model: keras.Model
    class_names: list[str]
    history: dict[str, list[float]]
    config: FlowConfig


def write_image_folder(source: Path, folder: Path) -> Path:
    """The images of ``FOLDER_SPLITS`` as ``<split>/<class>/<release>-<index>.png`` under ``folder``."""
    releases = load_source(source)
    for split, (release, start, count) in FOLDER_SPLITS.items():
        images, labels = releases[release]
        for index in range(start, start + count):
            path = folder / split / CLASS_NAMES[labels[index]] / f"{release}-{index:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png_bytes(images[index]))
    return folder


def shipped_config(*overrides: str) -> FlowConfig:
    """The shipped experiment (model and augmentation as users run them), with ``overrides`` last."""
    return load_config(REPO_ROOT / "configs" / "full_flow_config.yaml", list(overrides), root=REPO_ROOT)


def train_classifier(data_dir: Path, config: FlowConfig) -> TrainedClassifier:
    """Train on ``data_dir`` exactly as the train task does (its own function), seeded by the config."""
    fitted = fit(config, data_dir, read_manifest(data_dir), keras.callbacks.Callback())
    return TrainedClassifier(fitted.model, fitted.class_names, fitted.history, config)


def untrained_classifier(config: FlowConfig, num_classes: int, seed: int) -> keras.Model:
    """The same architecture with fresh random weights."""
    keras.utils.set_random_seed(seed)
    return build_classifier(config.model, num_classes)


def read_images(data_dir: Path, paths: Iterable[str]) -> np.ndarray:
    """The model's uint8 input for each image file, through the shared preprocessing."""
    return np.stack([preprocess((data_dir / path).read_bytes(), SPEC) for path in paths])


def blank_image(value: int) -> np.ndarray:
    """A uniform 28x28 grayscale image, through the PNG encoding and the shared preprocessing."""
    encoded = png_bytes(np.full((28, 28), value, dtype=np.uint8))
    return preprocess(encoded, SPEC)


def probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The model's class probabilities for a batch of the preprocessing's uint8 images."""
    return np.asarray(model(images.astype(np.float32), training=False))
