"""Prefect tasks that train, test, describe and register the model and its drift detectors."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import keras
import mlflow
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from configs.schema import FlowConfig
from tasks import dataset, drift_reference, tracking
from tasks.augmentation import build_augmenter
from tasks.model_bundle import METADATA_FILE, MODEL_FILE, REFERENCE_FILE, UAE_FILE
from tasks.models import build_classifier, build_uae
from tasks.pipeline import evaluation_batches, image_dataset, training_batches
from tasks.preprocessing import InputSpec
from tasks.train_tasks import RunContext, TrainedModel, model_metadata, write_metadata
from tasks.training import MlflowEpochLogger, compile_model, fit_model, plot_curves


def input_spec(config: FlowConfig) -> InputSpec:
    height, width = config.model.input_size
    return InputSpec(height=height, width=width)


@task(name="train_model", cache_policy=NO_CACHE)
def train_model(config: FlowConfig, ref: dataset.DatasetRef, table_path: Path, context: RunContext) -> TrainedModel:
    """Build the pipeline and the network, fit it, measure it on the test split, save it."""
    logger = get_run_logger()
    keras.utils.set_random_seed(config.train.seed)
    data, spec, train_cfg = config.dataset, input_spec(config), config.train
    table = pd.read_parquet(table_path, columns=["path", "split", "label"])
    names = dataset.class_names(table, data.train_split)
    splits = {s: table[table["split"] == s] for s in (data.train_split, data.validation_split, data.test_split)}
    augmenter = build_augmenter(train_cfg.augmentation, train_cfg.seed)
    # Manifests are sorted by class: a shuffle buffer alone would feed the classes in runs.
    train_rows = splits[data.train_split].sample(frac=1.0, random_state=train_cfg.seed)
    train = training_batches(
        image_dataset(ref.data_dir, train_rows, names, spec),
        train_cfg.batch_size,
        train_cfg.seed,
        train_cfg.shuffle_buffer,
        augmenter,
    )
    validation = evaluation_batches(image_dataset(ref.data_dir, splits[data.validation_split], names, spec), 512)
    model = build_classifier(config.model, len(names))
    compile_model(model, train_cfg.learning_rate)
    client = tracking.configure_mlflow(context.settings)
    logger.info(
        "Training %s on %d images (%d classes) for up to %d epochs",
        model.name,
        len(splits[data.train_split]),
        len(names),
        train_cfg.epochs,
    )
    started = time.perf_counter()
    history = fit_model(model, train, validation, train_cfg, MlflowEpochLogger(client, context.run_id))
    test = evaluation_batches(image_dataset(ref.data_dir, splits[data.test_split], names, spec), 512, cache=False)
    test_loss, test_accuracy = model.evaluate(test, verbose=0)
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "best_val_accuracy": max(history.get("val_accuracy", [0.0])),
        "train_seconds": time.perf_counter() - started,
    }
    tracking.log_metrics(client, context.run_id, metrics, step=len(history["loss"]), timestamp=int(time.time() * 1000))
    logger.info("Test accuracy %.4f after %d epochs", test_accuracy, len(history["loss"]))
    model_path = context.workdir / "bundle" / MODEL_FILE
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(model_path)
    curves = plot_curves(history, context.workdir / "training_curves.png")
    client.log_artifact(context.run_id, str(curves), "plots")
    return TrainedModel(model_path, names, metrics, len(history["loss"]))


@task(name="build_drift_detectors", cache_policy=NO_CACHE)
def build_drift_detectors(
    config: FlowConfig, ref: dataset.DatasetRef, table_path: Path, trained: TrainedModel, context: RunContext
) -> TrainedModel:
    """Save the seeded UAE and the reference features of exactly ``reference_rows`` held-out images."""
    drift = config.train.drift
    table = pd.read_parquet(table_path)
    held_out = table[table["split"] == drift.reference_split]
    rows = drift_reference.sample_reference_rows(held_out, drift.reference_rows, config.train.seed)
    encoder = build_uae(config.model.input_size, drift.uae_dim, config.train.seed)
    bundle = trained.model_path.parent
    encoder.save(bundle / UAE_FILE)
    classifier = keras.models.load_model(trained.model_path)
    features = drift_reference.build_reference_features(
        classifier, encoder, ref.data_dir, rows, table, trained.class_names, input_spec(config)
    )
    features.to_parquet(bundle / REFERENCE_FILE, index=False)
    get_run_logger().info(
        "Reference features: %d rows x %d columns from split %r",
        len(features),
        features.shape[1],
        drift.reference_split,
    )
    return trained


@task(name="register_model", cache_policy=NO_CACHE)
def register_model(
    config: FlowConfig, ref: dataset.DatasetRef, table_path: Path, trained: TrainedModel, context: RunContext
) -> tuple[str, dict[str, Any]]:
    """Log the model with its metadata to MLflow, register a version aliased ``challenger``."""
    bundle = trained.model_path.parent
    rows_hash = Path(table_path).stem
    metadata = model_metadata(config, ref, trained, input_spec(config).as_dict(), rows_hash)
    client = tracking.configure_mlflow(context.settings)
    with mlflow.start_run(run_id=context.run_id):
        info = mlflow.keras.log_model(
            keras.models.load_model(trained.model_path),
            name="model",
            pip_requirements=[f"{k}=={v}" for k, v in metadata["packages"].items() if k in ("tensorflow-cpu", "keras")],
            metadata={"class_names": trained.class_names, "input": metadata["input"]},
        )
    version = tracking.register_version(client, config.model.name, info.model_uri, tracking.CHALLENGER_ALIAS)
    metadata["version"] = version
    metadata["mlflow"] = {"run_id": context.run_id, "model_uri": f"models:/{config.model.name}/{version}"}
    write_metadata(bundle / METADATA_FILE, metadata)
    client.log_artifact(context.run_id, str(bundle / METADATA_FILE))
    client.log_artifact(context.run_id, str(bundle / REFERENCE_FILE), "drift")
    client.log_artifact(context.run_id, str(bundle / UAE_FILE), "drift")
    return version, metadata


def discard_workdir(context: RunContext) -> None:
    """The run's scratch files are in MLflow and central storage once published."""
    shutil.rmtree(context.workdir / "bundle", ignore_errors=True)
