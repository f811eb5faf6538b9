"""Prefect tasks of the evaluate flow: measure a published version on a held-out split, log it all."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from configs.schema import FlowConfig
from tasks import dataset, tracking
from tasks.evaluation import classification_metrics, predict_split
from tasks.evaluation_plots import plot_confusion_matrix, plot_reliability, plot_worst_misclassified
from tasks.model_bundle import fetch_bundle
from tasks.train_tasks import RunContext


@dataclass
class Evaluation:
    version: str
    split: str
    rows: int
    metrics: dict[str, float]


@task(name="resolve_model_version", cache_policy=NO_CACHE)
def resolve_model_version(name: str, version: str | None, alias: str, context: RunContext) -> str | None:
    """An explicit version, or the one ``alias`` points at (None when the alias is not set)."""
    if version is not None:
        return version
    return tracking.alias_version(tracking.configure_mlflow(context.settings), name, alias)


@task(name="evaluate_model", cache_policy=NO_CACHE)
def evaluate_model(
    config: FlowConfig, ref: dataset.DatasetRef, version: str, context: RunContext, log_prefix: str | None = None
) -> Evaluation:
    """Metrics, plots and gate verdict of one version on ``evaluate.split``, logged to MLflow."""
    logger = get_run_logger()
    settings = context.settings
    bundle = fetch_bundle(settings.central_storage_url, config.model.name, version, settings.cache_dir)
    split = config.evaluate.split
    rows = dataset.select_split(dataset.read_manifest(ref.data_dir), split, config.dataset.limit_per_split, 0)
    started = time.perf_counter()
    predictions = predict_split(bundle.load_classifier(), ref.data_dir, rows, bundle.class_names, bundle.input_spec)
    metrics = classification_metrics(predictions)
    logger.info(
        "Version %s on %s (%d images, %.1f s): accuracy %.4f, macro AUC %.4f, ECE %.4f",
        version,
        split,
        len(rows),
        time.perf_counter() - started,
        metrics["accuracy"],
        metrics["macro_auc"],
        metrics["ece"],
    )
    client = tracking.configure_mlflow(settings)
    prefix = f"v{version}_" if log_prefix is None else log_prefix
    tracking.log_metrics(
        client, context.run_id, finite_metrics(metrics, prefix), step=0, timestamp=int(time.time() * 1000)
    )
    plots = _write_plots(predictions, ref.data_dir, context.workdir / f"plots_v{version}")
    for path in plots:
        client.log_artifact(context.run_id, str(path), f"evaluation/v{version}")
    _save_predictions(predictions, context.workdir / f"predictions_v{version}.parquet", client, context, version)
    for key in ("accuracy", "macro_auc", "macro_f1", "ece"):
        client.set_model_version_tag(config.model.name, version, f"eval.{split}.{key}", f"{metrics[key]:.6f}")
    client.set_model_version_tag(config.model.name, version, f"eval.{split}.dataset_commit", ref.commit)
    return Evaluation(version, split, len(rows), metrics)


def finite_metrics(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    """Metrics without NaN (MLflow and JSON take none), optionally named per version."""
    return {f"{prefix}{key}": value for key, value in metrics.items() if value == value}


def _write_plots(predictions, data_dir: Path, folder: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    return [
        plot_confusion_matrix(predictions, folder / "confusion_matrix.png"),
        plot_reliability(predictions, folder / "reliability_diagram.png"),
        plot_worst_misclassified(predictions, data_dir, folder / "worst_misclassified.png"),
    ]


def _save_predictions(predictions, path: Path, client, context: RunContext, version: str) -> None:  # type: ignore[no-untyped-def]
    frame = pd.DataFrame(predictions.probabilities, columns=[f"p_{n}" for n in predictions.class_names])
    frame.insert(0, "path", predictions.paths)
    frame.insert(1, "label", [predictions.class_names[i] for i in predictions.labels])
    frame.insert(2, "prediction", [predictions.class_names[i] for i in predictions.predicted])
    frame.to_parquet(path, index=False)
    client.log_artifact(context.run_id, str(path), f"evaluation/v{version}")
