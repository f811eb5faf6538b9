"""Prefect tasks of the deploy flow: release a version, tell services, record it in Prefect."""

from __future__ import annotations

import re
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable

from tasks import tracking
from tasks.notify import admin_token_from_environment, notify_services
from tasks.production import ProductionPointer
from tasks.release import release_version
from tasks.settings import PlatformSettings


@task(name="release_version", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def release(
    settings: PlatformSettings, name: str, version: str, reason: str, metrics: dict[str, float]
) -> ProductionPointer:
    client = tracking.configure_mlflow(settings)
    return release_version(client, settings.central_storage_url, name, version, reason, metrics)


@task(name="notify_services", cache_policy=NO_CACHE)
def tell_services_to_reload(urls: list[str]) -> dict[str, Any]:
    """POST to each service's reload URL with the admin token; never fails the deploy."""
    outcomes = notify_services(urls, admin_token_from_environment())
    return {o.url: o.ok for o in outcomes}


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
def record_current_model(pointer: ProductionPointer) -> str:
    name = record_variable(pointer)
    get_run_logger().info("Prefect variable %s = version %s", name, pointer.version)
    return name


# What the deploy flow keeps applied: the weekly monitor, and the full flow it may start on
# confirmed drift. Training has its own pool so its worker can run on another host.
DEPLOYMENT_POOLS = {"monitor/monitor-weekly": "monitor", "full/full-flow": "training"}


@task(name="apply_deployments", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def apply_deployments(cron: str) -> list[str]:
    """Create or update the weekly monitor and the retraining deployment, via `prefect deploy`."""
    from prefect.client.orchestration import get_client

    from tasks.prefect_deployments import apply_deployments as prefect_deploy
    from tasks.prefect_deployments import ensure_work_pool

    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    for pool in sorted(set(DEPLOYMENT_POOLS.values())):
        ensure_work_pool(pool, api_url)
    prefect_deploy([name.split("/")[1] for name in DEPLOYMENT_POOLS], api_url, cron)
    for name, pool in DEPLOYMENT_POOLS.items():
        get_run_logger().info("Deployment %s applied on work pool %s", name, pool)
    get_run_logger().info("monitor/monitor-weekly runs on the schedule %r", cron)
    return list(DEPLOYMENT_POOLS)
