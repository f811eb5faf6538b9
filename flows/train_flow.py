"""Train flow: pinned data -> validated -> trained -> registered as challenger -> published."""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel

from configs.schema import FlowConfig, resolve_config
from tasks.model_tasks import build_drift_detectors, discard_workdir, register_model, train_model
from tasks.settings import get_settings
from tasks.train_tasks import (
    build_property_table,
    finish_tracking_run,
    publish_model,
    resolve_dataset,
    start_tracking_run,
    validate_dataset,
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
def train_flow(config: FlowConfig | None = None, config_file: str = "") -> TrainResult:
    config = resolve_config(config, config_file)
    logger = get_run_logger()
    settings = get_settings()
    context = start_tracking_run(config, settings, config_file)
    try:
        ref = resolve_dataset(config.dataset, context)
        table = build_property_table(ref, config.dataset, config.train.seed, context)
        validate_dataset(table, config.dataset, config.train.seed, context)
        trained = train_model(config, ref, table, context)
        trained = build_drift_detectors(config, ref, table, trained, context)
        version, _ = register_model(config, ref, table, trained, context)
        storage_uri = publish_model(trained.model_path.parent, settings.central_storage_url, config.model.name, version)
    except BaseException:
        finish_tracking_run(context, "FAILED")
        raise
    finish_tracking_run(context, "FINISHED")
    discard_workdir(context)
    logger.info(
        "Model %s version %s: test accuracy %.4f",
        config.model.name,
        version,
        trained.metrics["test_accuracy"],
    )
    return TrainResult(
        model_name=config.model.name,
        version=version,
        registry_uri=f"models:/{config.model.name}/{version}",
        storage_uri=storage_uri,
        run_id=context.run_id,
        dataset_revision=ref.revision,
        dataset_commit=ref.commit,
        metrics=trained.metrics,
    )
