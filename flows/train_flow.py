"""Train flow: pinned data -> validated -> trained -> registered as challenger -> published."""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel

from configs.schema import FlowConfig, resolve_config
from tasks.core.settings import REPO_ROOT
from tasks.core.tracking import tracking_run
from tasks.data.tasks import build_property_table, resolve_dataset, validate_dataset
from tasks.evaluation.tasks import write_model_card
from tasks.training.tasks import (
    build_drift_detectors,
    calibrate_model,
    publish_model,
    register_model,
    screen_labels,
    train_model,
)


class TrainResult(BaseModel):
    """What the train flow hands to evaluation and deployment: references, not payloads."""

    model_name: str
    version: str
    registry_uri: str
    storage_uri: str
    run_id: str
    dataset_revision: str
    dataset_commit: str
    metrics: dict[str, float]


@flow(name="train", log_prints=False)
def train_flow(
    config: FlowConfig | None = None, config_file: str = "", overrides: list[str] | None = None
) -> TrainResult:
    config = resolve_config(config, config_file, REPO_ROOT, overrides)
    name, seed = config.model.name, config.train.seed
    with tracking_run(config, "train", config_file) as run:
        ref = resolve_dataset(config.dataset, run)
        table = build_property_table(ref, config.dataset, seed, run)
        validate_dataset(table, config.dataset, seed, run)
        trained = train_model(config, ref, table, run)
        screen_labels(config, ref, table, trained, run)
        calibrate_model(config, ref, table, trained, run)
        build_drift_detectors(config, ref, table, trained)
        version = register_model(config, ref, table, trained, run)
        write_model_card(config, ref, table, trained, run)
        storage_uri = publish_model(trained, name, version, run)
    get_run_logger().info("Model %s version %s: test accuracy %.4f", name, version, trained.metrics["test_accuracy"])
    return TrainResult(
        model_name=name,
        version=version,
        registry_uri=f"models:/{name}/{version}",
        storage_uri=storage_uri,
        run_id=run.run_id,
        dataset_revision=ref.revision,
        dataset_commit=ref.commit,
        metrics=trained.metrics,
    )
