"""MLflow: one tracking store and registry for every flow, with absolute artifact locations."""

from __future__ import annotations

import logging
from typing import Any

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tasks.settings import PlatformSettings

logger = logging.getLogger(__name__)

CHALLENGER_ALIAS = "challenger"


def configure_mlflow(settings: PlatformSettings) -> MlflowClient:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri or settings.mlflow_tracking_uri)
    return MlflowClient()


def ensure_experiment(client: MlflowClient, name: str, settings: PlatformSettings) -> str:
    """The experiment's id, creating it with an absolute artifact location when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    artifact_location = None if settings.tracking_uri else f"{settings.mlflow_artifact_root}/{name}"
    return str(client.create_experiment(name, artifact_location=artifact_location))


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config sections as dotted MLflow params (``train.batch_size``)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run_id, params=items[start : start + 100])


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int, timestamp: int) -> None:
    client.log_batch(run_id, metrics=[Metric(k, float(v), timestamp, step) for k, v in metrics.items()])


def register_version(client: MlflowClient, name: str, model_uri: str, alias: str) -> str:
    """Register a logged model as a new version of ``name`` and point ``alias`` at it."""
    version = mlflow.register_model(model_uri, name)
    client.set_registered_model_alias(name, alias, version.version)
    logger.info("Registered %s version %s with alias %s", name, version.version, alias)
    return str(version.version)


CHAMPION_ALIAS = "champion"


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the model or the alias does not exist."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None
