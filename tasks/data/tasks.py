"""Prefect tasks of the data stage: resolve the pinned dataset, measure it, validate it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import cast
from uuid import UUID

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from configs.schema import DatasetConfig
from tasks.core.progress import progress
from tasks.core.review_queue import ReviewQueue
from tasks.core.tracking import TrackingRun
from tasks.data import validation
from tasks.data.dataset import (
    DatasetRef,
    cached_properties,
    manifest_hash,
    properties_cache,
    read_manifest,
    reviewed_rows,
    select_split,
)
from tasks.data.dataset import resolve_dataset as resolve_dataset_revision
from tasks.data.from_reviews import NewRevision, add_reviews


@task(name="resolve_dataset", cache_policy=NO_CACHE)
def resolve_dataset(config: DatasetConfig, run: TrackingRun) -> DatasetRef:
    """The dataset at the pinned revision, checked out or refused per the config."""
    ref = resolve_dataset_revision(config)
    run.set_tags(
        {
            "dataset.revision": ref.revision,
            "dataset.commit": ref.commit,
            "dataset.content_hash": ref.content_hash,
            "dataset.modified": str(ref.modified).lower(),
        }
    )
    get_run_logger().info(
        "Dataset %s at %s = commit %s, content %s", ref.repo.name, ref.revision, ref.commit[:10], ref.content_hash
    )
    return ref


@task(name="build_property_table", cache_policy=NO_CACHE)
def build_property_table(ref: DatasetRef, config: DatasetConfig, seed: int, run: TrackingRun) -> Path:
    """Per-image properties of exactly the rows used, cached by the hash of those rows."""
    manifest = read_manifest(ref.data_dir)
    splits = (config.train_split, config.validation_split, config.test_split)
    used = pd.concat(
        [select_split(manifest, s, config.limit_per_split, seed) for s in splits] + [reviewed_rows(manifest, config)]
    )
    cached = properties_cache(run.settings.cache_dir, used)
    if not cached.exists():
        started = time.perf_counter()
        report = progress_artifact("property-table", f"Image properties of {len(used):,} images")
        with progress(len(used), "Measuring image properties", report=report) as advance:
            cached_properties(ref.data_dir, used, run.settings.cache_dir, advance)
        get_run_logger().info("Measured %d images in %.1f s", len(used), time.perf_counter() - started)
    run.set_tags({"dataset.rows_hash": manifest_hash(used)})
    run.log_params({f"dataset.rows.{s}": str((used["split"] == s).sum()) for s in splits})
    run.log_params({"dataset.rows.reviewed": str(used["path"].str.startswith(config.reviews.split + "/").sum())})
    return cached


@task(name="validate_dataset", cache_policy=NO_CACHE)
def validate_dataset(table_path: Path, config: DatasetConfig, seed: int, run: TrackingRun) -> None:
    """Deepchecks integrity and train/test suites; reports go to MLflow; failures stop the run."""
    logger = get_run_logger()
    if not config.validation.enabled:
        logger.warning("Data validation is disabled (dataset.validation.enabled: false)")
        run.set_tags({"data_validation.enabled": "false"})
        return
    table = pd.read_parquet(table_path)
    train, test = (table[table["split"] == s] for s in (config.train_split, config.test_split))
    outcome = validation.validate_dataset(train, test, config.validation, run.workdir / "data_validation", seed)
    for path in outcome.report_files:
        run.log_artifact(path, "data_validation")
    run.set_tags({"data_validation.failures": str(len(outcome.failures))})
    for failure in outcome.failures:
        logger.warning("Data validation: %s", failure)
    if config.validation.stop_on_failure:
        validation.raise_on_failures(outcome)
    logger.info("Data validation: %d checks, %d failed conditions", outcome.checks_run, len(outcome.failures))


def progress_artifact(key: str, description: str) -> Callable[[float], None]:
    """A progress artifact on the current Prefect run (the UI shows its bar); returns the updater.

    Later stages use it too: this is the first stage, and only a stage's tasks.py imports Prefect.
    """
    artifact_id = cast("UUID", create_progress_artifact(progress=0.0, key=key, description=description))

    def report(fraction: float) -> None:
        update_progress_artifact(artifact_id, progress=round(100 * fraction, 1))

    return report


@task(name="add_reviews_to_dataset", cache_policy=NO_CACHE)
def add_reviews_to_dataset(config: DatasetConfig, database_url: str, run: TrackingRun) -> NewRevision:
    """Agreed reviews -> a new tagged revision (tasks/data/from_reviews.py). The doubted labels' thumbnails,
    the validation reports and the provenance go to MLflow, also when the revision is refused."""
    workdir = run.workdir
    try:
        made = add_reviews(config, ReviewQueue.at(database_url), run.settings.cache_dir, workdir, 0)
    finally:
        for folder in ("label_screening", "data_validation"):
            for path in sorted((workdir / folder).glob("*")) if (workdir / folder).is_dir() else []:
                run.log_artifact(path, folder)
    run.log_artifact(config.path / made.provenance_file, "provenance")
    run.set_tags(
        {"dataset.revision": made.tag, "dataset.commit": made.commit, "dataset.base_revision": made.base_revision}
    )
    run.log_metrics({"images_added": made.added, "images_relabelled": made.relabelled, "sent_back": made.sent_back})
    create_markdown_artifact(
        key="dataset-revision",
        markdown=(
            f"# Dataset revision `{made.tag}`\n\n- from `{made.base_revision}`, commit `{made.commit[:10]}`\n"
            f"- {made.added} reviewed images added, {made.relabelled} training images relabelled\n"
            f"- {made.sent_back} labels sent back for a second review by label screening\n"
            f"- provenance: `{made.provenance_file}` in the dataset repository\n"
        ),
        description=f"{made.tag}: {made.added} reviewed images",
    )
    get_run_logger().info("Dataset revision %s from %s: %d images added", made.tag, made.base_revision, made.added)
    return made
