"""Training with early stopping, a terminal progress bar and per-epoch metrics sent to MLflow in batches."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import tensorflow as tf

from configs.schema import FlowConfig, TrainConfig
from tasks.core.tracking import TrackingRun
from tasks.data.dataset import class_names
from tasks.data.pipeline import evaluation_batches, image_dataset
from tasks.training.augmentation import build_augmenter
from tasks.training.batches import training_batches
from tasks.training.calibration import calibration_rows
from tasks.training.metadata import input_spec
from tasks.training.models import build_classifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FittedClassifier:
    model: keras.Model
    class_names: list[str]
    history: dict[str, list[float]]


def train_classifier(
    config: FlowConfig, data_dir: Path, table: pd.DataFrame, epoch_logger: keras.callbacks.Callback
) -> FittedClassifier:
    """Seeded: the training split shuffled once and fed as augmented batches, early stopping on validation.

    ``table`` lists the images (path, split, label) under ``data_dir``.
    """
    data, spec, train_cfg = config.dataset, input_spec(config), config.train
    keras.utils.set_random_seed(train_cfg.seed)
    names = class_names(table, data.train_split)
    # Manifests are sorted by class: a shuffle buffer alone would feed the classes in runs.
    train_rows = table[table["split"] == data.train_split].sample(frac=1.0, random_state=train_cfg.seed)
    train = training_batches(
        image_dataset(data_dir, train_rows, names, spec),
        train_cfg.batch_size,
        train_cfg.seed,
        train_cfg.shuffle_buffer,
        build_augmenter(train_cfg.augmentation, train_cfg.seed),
    )
    held_out = calibration_rows(table, config)  # calibration data early stopping must not see
    validation_rows = table[(table["split"] == data.validation_split) & ~table.index.isin(held_out.index)]
    validation = evaluation_batches(image_dataset(data_dir, validation_rows, names, spec), 512)
    model = build_classifier(config.model, len(names))
    compile_model(model, train_cfg.learning_rate)
    logger.info(
        "Training %s on %d images (%d classes) for up to %d epochs",
        model.name,
        len(train_rows),
        len(names),
        train_cfg.epochs,
    )
    return FittedClassifier(model, names, fit_model(model, train, validation, train_cfg, epoch_logger))


class MlflowEpochLogger(keras.callbacks.Callback):
    """Every metric of an epoch in one MLflow request, so logging never slows training."""

    def __init__(self, run: TrackingRun) -> None:
        super().__init__()
        self.run = run
        self.epoch_started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        metrics = dict(logs or {})
        metrics["epoch_seconds"] = time.perf_counter() - self.epoch_started
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.run.log_metrics(metrics, step=epoch)


def compile_model(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def fit_model(
    model: keras.Model,
    train_batches: tf.data.Dataset,
    validation_batches: tf.data.Dataset,
    config: TrainConfig,
    epoch_logger: keras.callbacks.Callback,
) -> dict[str, list[float]]:
    """Fit with early stopping (best weights restored); returns the per-epoch history."""
    stopping = config.early_stopping
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=stopping.monitor,
            patience=stopping.patience,
            min_delta=stopping.min_delta,
            mode="auto",
            restore_best_weights=True,
        ),
        keras.callbacks.ReduceLROnPlateau(monitor=stopping.monitor, factor=0.5, patience=max(1, stopping.patience - 1)),
        epoch_logger,
    ]
    history = model.fit(
        train_batches,
        validation_data=validation_batches,
        epochs=config.epochs,
        shuffle=False,  # the tf.data pipeline shuffles; Keras would warn that it ignores its own
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,  # a live bar in a terminal, one line per epoch in logs
    )
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def plot_curves(history: dict[str, list[float]], path: Path) -> Path:
    """Loss and accuracy per epoch, training against validation."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        epochs = range(1, len(history.get(metric, [])) + 1)
        axis.plot(epochs, history.get(metric, []), marker="o", label="train")
        axis.plot(epochs, history.get(f"val_{metric}", []), marker="o", label="validation")
        axis.set(title=metric, xlabel="epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
