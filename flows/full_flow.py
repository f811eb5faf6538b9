"""Full flow: train -> evaluate -> deploy as subflows, with a summary a reviewer can read in Prefect.

Training is cached on (data content hash, model/dataset/train config, training code): re-running
with nothing changed reuses the trained version, which is then already the champion, so nothing
changes. ``force=True`` (``run_flow.py --force``) trains again.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from pydantic import BaseModel

from configs.schema import FlowConfig, resolve_config
from flows.deploy_flow import DeployResult, deploy_flow
from flows.eval_flow import EvalResult, eval_flow
from flows.train_flow import TrainResult, train_flow
from tasks.core.errors import QualityGateError
from tasks.core.settings import REPO_ROOT, get_settings
from tasks.core.tracking import run_url
from tasks.deployment.summary import summary_markdown
from tasks.evaluation.metrics import finite_metrics
from tasks.training.fingerprint import training_fingerprint


class FullResult(BaseModel):
    train: TrainResult
    evaluation: EvalResult
    deploy: DeployResult
    reused_training: bool


@task(
    name="train_or_reuse",
    cache_key_fn=lambda context, parameters: f"train-{parameters['fingerprint']}",
    persist_result=True,
)
def train_or_reuse(config: FlowConfig, config_file: str, fingerprint: str) -> TrainResult:
    """A cache hit returns the earlier run's result without calling the train flow."""
    return train_flow(config=config, config_file=config_file)


def pinned_to(config: FlowConfig, revision: str) -> FlowConfig:
    return config.model_copy(update={"dataset": config.dataset.model_copy(update={"revision": revision})})


@flow(name="full")
def full_flow(
    config: FlowConfig | None = None, config_file: str = "", overrides: list[str] | None = None, force: bool = False
) -> FullResult:
    config = resolve_config(config, config_file, REPO_ROOT, overrides)
    settings = get_settings()
    future = train_or_reuse.with_options(refresh_cache=force).submit(config, config_file, training_fingerprint(config))
    trained, reused = future.result(), future.state.name == "Cached"
    if reused:
        get_run_logger().info("Cache hit: data, config and training code unchanged since version %s", trained.version)
    create_link_artifact(
        run_url(settings, trained.run_id), link_text=f"MLflow training run of version {trained.version}"
    )
    config = pinned_to(config, trained.dataset_revision)  # "latest" means what training resolved, from here on
    try:
        evaluation = eval_flow(config=config, config_file=config_file, version=trained.version)
    except QualityGateError as error:
        create_markdown_artifact(summary_markdown(trained, None, None, str(error)), key="full-flow-summary")
        raise
    measured = finite_metrics(evaluation.metrics)
    deployed = deploy_flow(config=config, config_file=config_file, version=trained.version, challenger_metrics=measured)
    create_link_artifact(
        run_url(settings, evaluation.run_id), link_text=f"MLflow evaluation of version {trained.version}"
    )
    create_markdown_artifact(summary_markdown(trained, evaluation, deployed, None), key="full-flow-summary")
    return FullResult(train=trained, evaluation=evaluation, deploy=deployed, reused_training=reused)
