"""MLflow: one tracking store and registry for every flow, and one run lifecycle.

``with tracking_run(...) as run:`` configures MLflow once, opens the run every task of the flow
reports to, and ends it FINISHED or FAILED by itself, as MLflow's own ``ActiveRun`` does, so no
flow writes that try/except. Tasks take the ``TrackingRun`` and log through it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import mlflow
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.core.provenance import code_version, config_hash
from tasks.core.settings import Settings, get_settings

logger = logging.getLogger(__name__)

CHALLENGER_ALIAS = "challenger"
CHAMPION_ALIAS = "champion"


class TrackedConfig(Protocol):
    """What a run reads of a flow's config: the whole of it as params, its experiment and model name."""

    @property
    def experiment(self) -> str: ...

    @property
    def model_name(self) -> str: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrackingRun:
    """The MLflow run a flow reports to, and the folder where it keeps its scratch files."""

    run_id: str
    experiment_id: str
    workdir: Path
    settings: Settings
    client: MlflowClient = field(repr=False, compare=False)

    def log_params(self, params: dict[str, str]) -> None:
        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        stamp = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()])

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)


def mlflow_client(settings: Settings) -> MlflowClient:
    """A client bound to the configured store and registry, touching no global state."""
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_registry_uri)


@contextmanager
def tracking_run(config: TrackedConfig, flow: str, config_file: str = "") -> Iterator[TrackingRun]:
    """Open a run whose params are the whole validated config; end it FINISHED, or FAILED on any exception.

    MLflow's global URIs are set here, once per run, for the fluent calls that need them (logging a model).
    The run's work folder holds scratch files only (what matters is logged or published), so a finished
    run removes it; a failed one keeps it for whoever looks into the failure.
    """
    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_registry_uri)
    client = mlflow_client(settings)
    experiment_id = ensure_experiment(client, config.experiment, settings)
    code, values = code_version(), config.model_dump(mode="json")
    tags = {
        "config_file": config_file,
        "git_commit": code.commit,
        "git_dirty": str(code.dirty).lower(),
        "config_hash": config_hash(values),
        "flow": flow,
        "mlflow.runName": f"{flow}-{config.model_name}",
    }
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    workdir = settings.state_dir / "runs" / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    run = TrackingRun(run_id, experiment_id, workdir, settings, client)
    run.log_params(flatten(values))
    logger.info("MLflow run %s (experiment %s)", run_id, config.experiment)
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    shutil.rmtree(workdir, ignore_errors=True)


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
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


def register_version(client: MlflowClient, name: str, model_uri: str, alias: str) -> str:
    """Register a logged model as a new version of ``name`` and point ``alias`` at it (inside ``tracking_run``)."""
    version = mlflow.register_model(model_uri, name)
    client.set_registered_model_alias(name, alias, version.version)
    logger.info("Registered %s version %s with alias %s", name, version.version, alias)
    return str(version.version)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the model or the alias does not exist."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def run_url(settings: Settings, run_id: str) -> str:
    """The run's page in the MLflow UI (``MLOPS_MLFLOW_UI_URL``, default the local ``mlflow ui``)."""
    experiment = mlflow_client(settings).get_run(run_id).info.experiment_id
    return f"{settings.mlflow_ui_url.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
