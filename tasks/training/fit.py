"""Training with early stopping, a terminal progress bar and per-epoch metrics sent to MLflow in batches."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import tensorflow as tf

from configs.schema import TrainConfig
from tasks.core.tracking import TrackingRun


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
