"""Prefect tasks of the evaluation stage: measure a published version on a held-out split, log it all."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import pandas as pd
import yaml
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from configs.schema import FlowConfig
from tasks.core import tracking
from tasks.core.bundle import METADATA_FILE, MODEL_FILE, TRUST_FILE, fetch_bundle
from tasks.core.errors import MlopsError
from tasks.core.progress import progress
from tasks.core.tracking import TrackingRun
from tasks.core.trust import TrustModel
from tasks.data.dataset import DatasetRef, read_manifest, select_split
from tasks.data.tasks import progress_artifact
from tasks.evaluation.metrics import (
    HEADLINE_METRICS,
    Predictions,
    classification_metrics,
    finite_metrics,
    predict_split,
)
from tasks.evaluation.model_card import CARD_HTML, CARD_MARKDOWN, card_sections, render_html, render_markdown
from tasks.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_worst_misclassified
from tasks.training.metadata import TrainedModel, input_spec


@dataclass(frozen=True)
class Evaluation:
    split: str
    rows: int
    metrics: dict[str, float]
    predictions: Path | None = None  # per image: path, label, prediction, probabilities (parquet)


@task(name="resolve_model_version", cache_policy=NO_CACHE)
def resolve_model_version(name: str, version: str | None, alias: str, run: TrackingRun) -> str | None:
    """An explicit version, or the one ``alias`` points at (None when the alias is not set)."""
    return version if version is not None else tracking.alias_version(run.client, name, alias)


def require_challenger(name: str, version: str | None, run: TrackingRun) -> str:
    """The version to judge: the one given, or the ``challenger`` alias; an error says to train first."""
    resolved = resolve_model_version(name, version, tracking.CHALLENGER_ALIAS, run)
    if resolved is None:
        raise MlopsError(f"model {name!r} has no {tracking.CHALLENGER_ALIAS!r} version; run the train flow")
    return resolved


@task(name="evaluate_model", cache_policy=NO_CACHE)
def evaluate_model(
    config: FlowConfig, ref: DatasetRef, version: str, run: TrackingRun, log_prefix: str = ""
) -> Evaluation:
    """Metrics and plots of one version on ``evaluate.split``, logged to MLflow and tagged on the version.

    With ``dataset.limit_per_split`` the rows are sampled with the training seed: the same ones
    training held out.
    """
    bundle = fetch_bundle(run.settings.central_storage_url, config.model.name, version, run.settings.cache_dir)
    split = config.evaluate.split
    manifest = read_manifest(ref.data_dir)
    rows = select_split(manifest, split, config.dataset.limit_per_split, config.train.seed)
    started = time.perf_counter()
    report = progress_artifact("evaluation", f"Version {version} on {len(rows):,} {split} images")
    with progress(len(rows), f"Evaluating version {version}", report=report) as advance:
        classifier = bundle.load_classifier()
        trust = bundle.load_trust()
        predictions = predict_split(
            classifier, ref.data_dir, rows, bundle.class_names, bundle.input_spec, advance, trust
        )
    metrics = classification_metrics(predictions)
    get_run_logger().info(
        "Version %s on %s (%d images, %.1f s): accuracy %.4f, macro AUC %.4f, ECE %.4f",
        version,
        split,
        len(rows),
        time.perf_counter() - started,
        metrics["accuracy"],
        metrics["macro_auc"],
        metrics["ece"],
    )
    run.log_metrics(finite_metrics(metrics, log_prefix))
    saved = _log_plots_and_predictions(predictions, ref.data_dir, run, version)
    for key in HEADLINE_METRICS:
        run.client.set_model_version_tag(config.model.name, version, f"eval.{split}.{key}", f"{metrics[key]:.6f}")
    run.client.set_model_version_tag(config.model.name, version, f"eval.{split}.dataset_commit", ref.commit)
    return Evaluation(split, len(rows), metrics, saved)


def _log_plots_and_predictions(predictions: Predictions, data_dir: Path, run: TrackingRun, version: str) -> Path:
    """The plots and the per-image predictions in MLflow; the predictions' local file."""
    folder = run.workdir / f"evaluation_v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        plot_confusion_matrix(predictions, folder / "confusion_matrix.png"),
        plot_reliability(predictions, folder / "reliability_diagram.png"),
        plot_worst_misclassified(predictions, data_dir, folder / "worst_misclassified.png"),
        _save_predictions(predictions, folder / "predictions.parquet"),
    ]
    for path in files:
        run.log_artifact(path, f"evaluation/v{version}")
    return files[-1]


def _save_predictions(predictions: Predictions, path: Path) -> Path:
    frame = pd.DataFrame(predictions.probabilities, columns=[f"p_{n}" for n in predictions.class_names])
    frame.insert(0, "path", predictions.paths)
    frame.insert(1, "label", [predictions.class_names[i] for i in predictions.labels])
    frame.insert(2, "prediction", [predictions.class_names[i] for i in predictions.predicted])
    frame.to_parquet(path, index=False)
    return path


@task(name="write_model_card", cache_policy=NO_CACHE)
def write_model_card(
    config: FlowConfig, ref: DatasetRef, table_path: Path, trained: TrainedModel, run: TrackingRun
) -> None:
    """The model card (markdown and HTML) into the bundle before it is published, and into the MLflow run."""
    bundle = trained.bundle_dir
    metadata = yaml.safe_load((bundle / METADATA_FILE).read_text())
    table = pd.read_parquet(table_path)
    split = config.evaluate.split
    rows = select_split(read_manifest(ref.data_dir), split, config.dataset.limit_per_split, config.train.seed)
    trust_path = bundle / TRUST_FILE
    predictions = predict_split(
        keras.models.load_model(bundle / MODEL_FILE),
        ref.data_dir,
        rows,
        trained.class_names,
        input_spec(config),
        trust=TrustModel.load(trust_path) if trust_path.exists() else None,
    )
    properties = table.drop_duplicates("path").set_index("path").loc[predictions.paths].reset_index()
    sections = card_sections(config, metadata, predictions, properties, table, trained.metrics)
    title = f"Model card: {config.model.name} version {metadata.get('version', '?')}"
    (bundle / CARD_MARKDOWN).write_text(render_markdown(title, sections), encoding="utf-8")
    (bundle / CARD_HTML).write_text(render_html(title, sections), encoding="utf-8")
    for name in (CARD_MARKDOWN, CARD_HTML):
        run.log_artifact(bundle / name, "model_card")
