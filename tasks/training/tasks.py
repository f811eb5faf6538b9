"""Prefect tasks of the training stage: train, build the drift detectors, register, publish."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import mlflow
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import SQLAlchemyError

from configs.schema import FlowConfig
from tasks.core import tracking
from tasks.core.bundle import METADATA_FILE, MODEL_FILE, REFERENCE_FILE, TRUST_FILE, UAE_FILE
from tasks.core.progress import progress
from tasks.core.review_queue import ReviewQueue
from tasks.core.shift_regression import SHIFT_REGRESSION_FILE
from tasks.core.signing import load_private_key
from tasks.core.storage import publish_version
from tasks.core.tracking import TrackingRun
from tasks.core.trust import TrustModel
from tasks.data.dataset import DatasetRef
from tasks.data.pipeline import evaluation_batches, image_dataset
from tasks.data.tasks import progress_artifact
from tasks.training import drift_reference, label_screening
from tasks.training.calibration import fit_accuracy_regression, fit_trust
from tasks.training.fit import MlflowEpochLogger, plot_curves, train_classifier
from tasks.training.metadata import TrainedModel, input_spec, model_metadata, write_metadata
from tasks.training.models import build_uae


@task(name="train_model", cache_policy=NO_CACHE)
def train_model(config: FlowConfig, ref: DatasetRef, table_path: Path, run: TrackingRun) -> TrainedModel:
    """Fit the network, measure it on the test split, save it into the run's bundle folder."""
    table = pd.read_parquet(table_path, columns=["path", "split", "label"])
    started = time.perf_counter()
    fitted = train_classifier(config, ref.data_dir, table, MlflowEpochLogger(run))
    test_rows = table[table["split"] == config.dataset.test_split]
    test = image_dataset(ref.data_dir, test_rows, fitted.class_names, input_spec(config))
    test_loss, test_accuracy = fitted.model.evaluate(evaluation_batches(test, 512, cache=False), verbose=0)
    history = fitted.history
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "best_val_accuracy": max(history.get("val_accuracy", [0.0])),
        "train_seconds": time.perf_counter() - started,
    }
    run.log_metrics(metrics, step=len(history["loss"]))
    get_run_logger().info("Test accuracy %.4f after %d epochs", test_accuracy, len(history["loss"]))
    bundle = run.workdir / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    fitted.model.save(bundle / MODEL_FILE)
    run.log_artifact(plot_curves(history, run.workdir / "training_curves.png"), "plots")
    return TrainedModel(bundle, fitted.class_names, metrics, len(history["loss"]))


@task(name="screen_labels", cache_policy=NO_CACHE)
def screen_labels(
    config: FlowConfig, ref: DatasetRef, table_path: Path, trained: TrainedModel, run: TrackingRun
) -> int:
    """Likely label errors of the training set: reported to MLflow with thumbnails, the most doubtful queued
    for review (never dropped); the number found."""
    logger = get_run_logger()
    if not config.train.screen_labels:
        return 0
    table = pd.read_parquet(table_path, columns=["path", "split", "label"])
    rows = table[table["split"] == config.dataset.train_split].reset_index(drop=True)
    model = keras.models.load_model(trained.bundle_dir / MODEL_FILE)
    report = label_screening.screen_training_labels(
        model, ref.data_dir, rows, trained.class_names, input_spec(config), run.workdir / "label_screening"
    )
    for path in (report.table_file, report.sheet_file):
        if path is not None:
            run.log_artifact(path, "label_screening")
    run.set_tags({"label_screening.suspects": str(len(report.suspects))})
    try:
        queued = label_screening.queue_for_review(
            report, ref.data_dir, run.settings.central_storage_url, ReviewQueue.at(run.settings.prediction_database_url)
        )
    except (OSError, SQLAlchemyError) as error:  # the report stands; the queue can be filled at the next run
        logger.warning("Could not queue likely label errors for review: %s", error)
        queued = 0
    logger.info(
        "Label screening: %d likely label errors in %d training images, %d queued for review",
        len(report.suspects),
        len(rows),
        queued,
    )
    return len(report.suspects)


@task(name="calibrate_model", cache_policy=NO_CACHE)
def calibrate_model(
    config: FlowConfig, ref: DatasetRef, table_path: Path, trained: TrainedModel, run: TrackingRun
) -> None:
    """The trust layer (temperature, prediction-set thresholds, out-of-distribution threshold) into the bundle."""
    if not config.train.trust.enabled:
        get_run_logger().info("train.trust.enabled is false: the version serves raw softmax, no sets or OOD flag")
        return
    table = pd.read_parquet(table_path, columns=["path", "split", "label"])
    classifier = keras.models.load_model(trained.bundle_dir / MODEL_FILE)
    fitted = fit_trust(classifier, ref.data_dir, table, trained.class_names, input_spec(config), config)
    fitted.trust.save(trained.bundle_dir / TRUST_FILE)
    run.log_metrics(fitted.metrics)
    trained.metrics.update(fitted.metrics)
    estimator = fit_accuracy_regression(
        classifier, fitted.trust, ref.data_dir, table, trained.class_names, input_spec(config), config
    )
    if estimator is not None:
        regression, estimator_metrics = estimator
        regression.save(trained.bundle_dir / SHIFT_REGRESSION_FILE)
        run.log_metrics(estimator_metrics)
        trained.metrics.update(estimator_metrics)
        get_run_logger().info(
            "Accuracy estimator fitted on %d synthetic shifted windows: out-of-fold error %.2f points",
            int(estimator_metrics["estimator/windows"]),
            estimator_metrics["estimator/out_of_fold_error_points"],
        )
    get_run_logger().info(
        "Calibrated on %d images: temperature %.3f, ECE %.4f -> %.4f, mean set size %.2f at alpha %s",
        int(fitted.metrics["calibration/rows"]),
        fitted.metrics["calibration/temperature"],
        fitted.metrics["calibration/ece_before"],
        fitted.metrics["calibration/ece_after"],
        fitted.metrics["calibration/mean_set_size"],
        config.train.trust.alpha,
    )


@task(name="build_drift_detectors", cache_policy=NO_CACHE)
def build_drift_detectors(config: FlowConfig, ref: DatasetRef, table_path: Path, trained: TrainedModel) -> None:
    """Save the seeded UAE and the reference features of exactly ``reference_rows`` held-out images."""
    drift = config.train.drift
    table = pd.read_parquet(table_path)
    held_out = table[table["split"] == drift.reference_split]
    rows = drift_reference.sample_reference_rows(held_out, drift.reference_rows, config.train.seed)
    encoder = build_uae(config.model.input_size, drift.uae_dim, config.train.seed)
    encoder.save(trained.bundle_dir / UAE_FILE)
    classifier = keras.models.load_model(trained.bundle_dir / MODEL_FILE)
    trust_path = trained.bundle_dir / TRUST_FILE  # the reference's softmax is the one the service logs
    trust = TrustModel.load(trust_path) if trust_path.exists() else None
    report = progress_artifact("drift-reference", f"Reference features of {len(rows):,} {drift.reference_split} images")
    with progress(len(rows), "Drift reference features", report=report) as advance:
        features = drift_reference.build_reference_features(
            classifier,
            encoder,
            ref.data_dir,
            rows,
            table,
            trained.class_names,
            input_spec(config),
            trust,
            advance=advance,
        )
    features.to_parquet(trained.bundle_dir / REFERENCE_FILE, index=False)
    get_run_logger().info(
        "Reference features: %d rows x %d columns from split %r",
        len(features),
        features.shape[1],
        drift.reference_split,
    )


@task(name="register_model", cache_policy=NO_CACHE)
def register_model(
    config: FlowConfig, ref: DatasetRef, table_path: Path, trained: TrainedModel, run: TrackingRun
) -> str:
    """Log the model with its metadata to MLflow, register a version aliased ``challenger``; return the version."""
    bundle = trained.bundle_dir
    metadata = model_metadata(config, ref, trained, rows_hash=Path(table_path).stem)
    with mlflow.start_run(run_id=run.run_id):
        info = mlflow.keras.log_model(
            keras.models.load_model(bundle / MODEL_FILE),
            name="model",
            pip_requirements=[f"{k}=={v}" for k, v in metadata["packages"].items() if k in ("tensorflow-cpu", "keras")],
            metadata={"class_names": trained.class_names, "input": metadata["input"]},
        )
    version = tracking.register_version(run.client, config.model.name, info.model_uri, tracking.CHALLENGER_ALIAS)
    metadata["version"] = version
    metadata["mlflow"] = {"run_id": run.run_id, "model_uri": f"models:/{config.model.name}/{version}"}
    run.log_artifact(write_metadata(bundle / METADATA_FILE, metadata))
    run.log_artifact(bundle / REFERENCE_FILE, "drift")
    run.log_artifact(bundle / UAE_FILE, "drift")
    return version


@task(name="publish_model", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def publish_model(trained: TrainedModel, name: str, version: str, run: TrackingRun) -> str:
    """Copy the bundle to central storage as an immutable, checksummed version, signed when a key is set."""
    key_file = run.settings.signing_key_file
    signing_key = load_private_key(key_file) if key_file else None
    url = publish_version(trained.bundle_dir, run.settings.central_storage_url, name, version, signing_key)
    get_run_logger().info("Published %s", url)
    return url
