"""Prefect tasks of the deployment stage: judge the challenger, release it, tell services, record it in Prefect."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.variables import Variable

from configs.schema import FlowConfig
from tasks.core.pointer import ProductionPointer
from tasks.core.settings import get_settings
from tasks.core.tracking import TrackingRun
from tasks.data.tasks import resolve_dataset
from tasks.deployment.comparison import plot_champion_vs_challenger
from tasks.deployment.notify import notify_services
from tasks.deployment.prefect_deployments import apply_all
from tasks.deployment.promotion import PromotionDecision, already_champion, decide_promotion
from tasks.deployment.release import release_version
from tasks.evaluation.tasks import evaluate_model

# What the deploy flow keeps applied: the weekly monitor, and the full flow it may start on
# confirmed drift. Training has its own pool so its worker can run on another host.


def judge_challenger(
    config: FlowConfig,
    challenger: str,
    champion: str | None,
    challenger_metrics: dict[str, float] | None,
    run: TrackingRun,
) -> PromotionDecision:
    """Both versions on the same split (the challenger's metrics reused when given), then the verdict.

    "Already the champion" is settled before the dataset is resolved or anything evaluated.
    """
    if champion == challenger:
        return already_champion(challenger, challenger_metrics or {})
    ref = resolve_dataset(config.dataset, run)
    if challenger_metrics is None:
        challenger_metrics = evaluate_model(config, ref, challenger, run, "challenger_").metrics
    champion_metrics = evaluate_model(config, ref, champion, run, "champion_").metrics if champion else None
    return decide_promotion(
        challenger, champion, challenger_metrics, champion_metrics, config.evaluate.thresholds, config.deploy
    )


COMPARISON_FIGURE = "comparison/champion_vs_challenger.png"


@task(name="log_comparison", cache_policy=NO_CACHE)
def log_comparison(decision: PromotionDecision, run: TrackingRun) -> str | None:
    """The champion-versus-challenger figure in the deploy run, when there was a champion to compare with."""
    if decision.champion is None or decision.champion_metrics is None or decision.champion == decision.challenger:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(COMPARISON_FIGURE).name
        versions = (decision.challenger, decision.champion)
        plot_champion_vs_challenger(decision.challenger_metrics, decision.champion_metrics, versions, path)
        run.log_artifact(path, str(Path(COMPARISON_FIGURE).parent))
    return COMPARISON_FIGURE


@task(name="release_version", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def release(decision: PromotionDecision, name: str, run: TrackingRun) -> ProductionPointer:
    """Pointer and alias to the challenger, together."""
    storage = run.settings.central_storage_url
    return release_version(run.client, storage, name, decision.challenger, decision.reason, decision.challenger_metrics)


@task(name="notify_services", cache_policy=NO_CACHE)
def tell_services_to_reload(urls: list[str]) -> None:
    """POST to each service's reload URL with the admin token; never fails the deploy."""
    notify_services(urls, get_settings().service.admin_token or None)


def variable_name(model_name: str) -> str:
    """Prefect variable names allow lowercase letters, digits and underscores."""
    return "production_model_" + re.sub(r"[^a-z0-9_]", "_", model_name.lower())


def record_variable(pointer: ProductionPointer) -> str:
    """The Prefect variable naming the model in production (read by people and by other flows)."""
    name = variable_name(pointer.name)
    value = pointer.model_dump(include={"name", "version", "url", "deployed_at", "previous_version"})
    Variable.set(name, value, overwrite=True)
    return name


@task(name="record_current_model", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def record_current_model(pointer: ProductionPointer) -> None:
    name = record_variable(pointer)
    get_run_logger().info("Prefect variable %s = version %s", name, pointer.version)


@task(name="apply_deployments", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def apply_deployments(cron: str) -> None:
    """Create or update every deployment (the weekly monitor, retraining, each flow), via `prefect deploy`."""
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    for name, pool in apply_all(api_url, cron).items():
        get_run_logger().info("Deployment %s applied on work pool %s", name, pool)
    get_run_logger().info("monitor/monitor-weekly runs on the schedule %r", cron)


def apply_all_deployments(api_url: str | None, cron: str) -> dict[str, str]:
    """Every deployment, against ``api_url`` or, when None, the state folder's own Prefect database
    through one temporary server (each `prefect` command would otherwise start its own)."""
    if api_url:
        return apply_all(api_url, cron)
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=120)
    try:
        return apply_all(server.api_url, cron)
    finally:
        server.stop()
