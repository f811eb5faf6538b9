"""Prefect tasks of the deploy flow: release a version, tell services, record it in Prefect."""

from __future__ import annotations

import os
import re
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable

from tasks import tracking
from tasks.notify import notify_services
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
    outcomes = notify_services(urls, os.environ.get("MLOPS_ADMIN_TOKEN"))
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


MONITOR_POOL = "monitor"
MONITOR_DEPLOYMENT = "monitor-weekly"


@task(name="schedule_monitoring", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def schedule_monitoring(cron: str) -> str:
    """Create or update the weekly monitor deployment on the monitor work pool, via `prefect deploy`."""
    from prefect.client.orchestration import get_client

    from tasks.prefect_deployments import apply_deployment, ensure_work_pool

    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    ensure_work_pool(MONITOR_POOL, api_url)
    apply_deployment(MONITOR_DEPLOYMENT, api_url, cron)
    get_run_logger().info("Deployment monitor/%s scheduled %r on work pool %s", MONITOR_DEPLOYMENT, cron, MONITOR_POOL)
    return f"monitor/{MONITOR_DEPLOYMENT}"
