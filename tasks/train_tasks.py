"""Prefect tasks of the train flow: thin wrappers that log, pass paths, and call the plain modules."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from configs.schema import DatasetConfig, FlowConfig
from tasks import data_validation, dataset, tracking
from tasks.image_properties import properties_table
from tasks.metadata import code_version, config_hash, package_versions
from tasks.settings import PlatformSettings
from tasks.storage import publish_version


@dataclass(frozen=True)
class RunContext:
    """Where one training run keeps its files and which MLflow run it reports to."""

    run_id: str
    workdir: Path
    settings: PlatformSettings


@dataclass
class TrainedModel:
    """Files of a trained model in the run's work folder, and its metrics."""

    model_path: Path
    class_names: list[str]
    metrics: dict[str, float]
    epochs_run: int


@task(name="start_tracking_run", cache_policy=NO_CACHE)
def start_tracking_run(
    config: FlowConfig, settings: PlatformSettings, config_file: str, flow: str = "train"
) -> RunContext:
    """Open the MLflow run every later task reports to; params are the whole validated config."""
    client = tracking.configure_mlflow(settings)
    experiment_id = tracking.ensure_experiment(client, config.train.experiment, settings)
    code = code_version()
    tags = {
        "config_file": config_file,
        "git_commit": code.commit,
        "git_dirty": str(code.dirty).lower(),
        "config_hash": config_hash(config),
        "flow": flow,
        "mlflow.runName": f"{flow}-{config.model.name}",
    }
    run = client.create_run(experiment_id, tags=tags)
    tracking.log_params(client, run.info.run_id, tracking.flatten(config.model_dump(mode="json")))
    workdir = settings.state_dir / "runs" / run.info.run_id
    workdir.mkdir(parents=True, exist_ok=True)
    get_run_logger().info("MLflow run %s (experiment %s)", run.info.run_id, config.train.experiment)
    return RunContext(run.info.run_id, workdir, settings)


@task(name="finish_tracking_run", cache_policy=NO_CACHE)
def finish_tracking_run(context: RunContext, status: str) -> None:
    tracking.configure_mlflow(context.settings).set_terminated(context.run_id, status)


@task(name="resolve_dataset", cache_policy=NO_CACHE)
def resolve_dataset(config: DatasetConfig, context: RunContext) -> dataset.DatasetRef:
    """The dataset at the pinned revision, checked out or refused per the config."""
    ref = dataset.resolve_dataset(config)
    client = tracking.configure_mlflow(context.settings)
    for key, value in {
        "dataset.commit": ref.commit,
        "dataset.content_hash": ref.content_hash,
        "dataset.modified": str(ref.modified).lower(),
    }.items():
        client.set_tag(context.run_id, key, value)
    get_run_logger().info(
        "Dataset %s at %s = commit %s, content %s",
        ref.repo.name,
        ref.revision,
        ref.commit[:10],
        ref.content_hash,
    )
    return ref


@task(name="build_property_table", cache_policy=NO_CACHE)
def build_property_table(ref: dataset.DatasetRef, config: DatasetConfig, seed: int, context: RunContext) -> Path:
    """Per-image properties of exactly the rows used, cached by the hash of those rows."""
    manifest = dataset.read_manifest(ref.data_dir)
    splits = (config.train_split, config.validation_split, config.test_split)
    used = pd.concat([dataset.select_split(manifest, s, config.limit_per_split, seed) for s in splits])
    rows_hash = dataset.manifest_hash(used)
    cached = context.settings.cache_dir / "properties" / f"{rows_hash}.parquet"
    if not cached.exists():
        started = time.perf_counter()
        cached.parent.mkdir(parents=True, exist_ok=True)
        properties_table(ref.data_dir, used.reset_index(drop=True)).to_parquet(cached, index=False)
        get_run_logger().info("Measured %d images in %.1f s", len(used), time.perf_counter() - started)
    client = tracking.configure_mlflow(context.settings)
    client.set_tag(context.run_id, "dataset.rows_hash", rows_hash)
    tracking.log_params(client, context.run_id, {f"dataset.rows.{s}": str((used["split"] == s).sum()) for s in splits})
    return cached


@task(name="validate_dataset", cache_policy=NO_CACHE)
def validate_dataset(table_path: Path, config: DatasetConfig, seed: int, context: RunContext) -> dict[str, Any]:
    """Deepchecks integrity and train/test suites; reports go to MLflow; failures stop the run."""
    logger = get_run_logger()
    if not config.validation.enabled:
        logger.warning("Data validation is disabled (dataset.validation.enabled: false)")
        return {"enabled": False}
    table = pd.read_parquet(table_path)
    train, test = (table[table["split"] == s] for s in (config.train_split, config.test_split))
    outcome = data_validation.validate_dataset(
        train, test, config.validation, context.workdir / "data_validation", seed
    )
    client = tracking.configure_mlflow(context.settings)
    for path in outcome.report_files:
        client.log_artifact(context.run_id, str(path), "data_validation")
    client.set_tag(context.run_id, "data_validation.failures", str(len(outcome.failures)))
    for failure in outcome.failures:
        logger.warning("Data validation: %s", failure)
    if config.validation.stop_on_failure:
        data_validation.raise_on_failures(outcome)
    logger.info("Data validation: %d checks, %d failed conditions", outcome.checks_run, len(outcome.failures))
    return {"enabled": True, "checks": outcome.checks_run, "failures": outcome.failures}


def write_metadata(path: Path, content: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def model_metadata(
    config: FlowConfig,
    ref: dataset.DatasetRef,
    trained: TrainedModel,
    input_spec: dict[str, Any],
    rows_hash: str,
) -> dict[str, Any]:
    """Everything needed to say which data, code and config made this model, and how to feed it."""
    code = code_version()
    return {
        "name": config.model.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "class_names": trained.class_names,
        "input": input_spec,
        "preprocessing": {"function": "tasks.preprocessing.preprocess_image", "model_input_dtype": "float32"},
        "architecture": config.model.architecture,
        "dataset": {
            "path": ref.repo.name,
            "revision": ref.revision,
            "commit": ref.commit,
            "content_hash": ref.content_hash,
            "rows_hash": rows_hash,
            "modified": ref.modified,
        },
        "code": asdict(code),
        "config_hash": config_hash(config),
        "metrics": trained.metrics,
        "epochs_run": trained.epochs_run,
        "drift": {
            "uae_dim": config.train.drift.uae_dim,
            "reference_rows": config.train.drift.reference_rows,
            "reference_split": config.train.drift.reference_split,
        },
        "packages": package_versions(),
    }


@task(name="publish_model", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def publish_model(bundle_dir: Path, storage_url: str, name: str, version: str) -> str:
    """Copy the bundle to central storage as an immutable, checksummed version."""
    url = publish_version(bundle_dir, storage_url, name, version)
    get_run_logger().info("Published %s", url)
    return url
