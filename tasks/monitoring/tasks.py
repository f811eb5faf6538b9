"""Prefect tasks of the monitoring stage: load the window, test it, report it, alert, ask for retraining."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from configs.schema import MonitorConfig
from tasks.core.bundle import REFERENCE_FILE, SHIFT_REGRESSION_FILE, fetch_bundle
from tasks.core.errors import MlopsError
from tasks.core.pointer import read_pointer
from tasks.core.settings import get_settings
from tasks.core.shift_regression import ShiftRegression
from tasks.monitoring import reports
from tasks.monitoring.history import record_run
from tasks.monitoring.verdict import FAMILY_COUNT, Verdict, decide
from tasks.monitoring.window import expand_features, load_window


@dataclass(frozen=True)
class MonitoringData:
    """The production version, its classes, and parquet files of its reference and of the window."""

    name: str
    version: str
    class_names: list[str]
    reference: Path
    current: Path
    shift_regression: Path | None = None  # the version's accuracy estimator, when it was fitted with one


@task(name="load_monitoring_data", cache_policy=NO_CACHE)
def load_monitoring_data(name: str, config: MonitorConfig, workdir: Path) -> MonitoringData:
    """The window of the version in production, from the prediction log the service writes."""
    settings = get_settings()
    pointer = read_pointer(settings.central_storage_url, name)
    if pointer is None:
        raise MlopsError(f"{name} has no production version to monitor; run the deploy flow")
    bundle = fetch_bundle(settings.central_storage_url, name, pointer.version, settings.cache_dir, pointer.sums_sha256)
    window = expand_features(load_window(settings.prediction_database_url, name, pointer.version, config))
    workdir.mkdir(parents=True, exist_ok=True)
    current = workdir / "current.parquet"
    window.to_parquet(current, index=False)
    get_run_logger().info(
        "Monitoring %s version %s: %d predictions from %s to %s",
        name,
        pointer.version,
        len(window),
        window["created_at"].min(),
        window["created_at"].max(),
    )
    regression = bundle.folder / SHIFT_REGRESSION_FILE
    return MonitoringData(
        name,
        pointer.version,
        bundle.class_names,
        bundle.folder / REFERENCE_FILE,
        current,
        regression if regression.exists() else None,
    )


@task(name="detect_drift", cache_policy=NO_CACHE)
def detect_drift(data: MonitoringData, config: MonitorConfig) -> Verdict:
    regression = ShiftRegression.load(data.shift_regression) if data.shift_regression else None
    verdict = decide(
        pd.read_parquet(data.reference),
        pd.read_parquet(data.current),
        data.class_names,
        config,
        regression=regression,
    )
    logger = get_run_logger()
    for test in verdict.tests[:FAMILY_COUNT]:
        logger.info("%s: p = %.4g (%s)", test.name, test.p_value, test.method)
    logger.info(
        "Family-wise p = %.4g at alpha %s: %s", verdict.p_value, verdict.alpha, "DRIFT" if verdict.drift else "no drift"
    )
    return verdict


@task(name="publish_monitoring_report", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def publish_monitoring_report(data: MonitoringData, verdict: Verdict) -> dict[str, str]:
    """Evidently report as HTML and JSON in central storage and in the Evidently workspace."""
    settings = get_settings()
    snapshot = reports.evidently_snapshot(
        pd.read_parquet(data.reference), pd.read_parquet(data.current), data.class_names, verdict
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = f"{settings.central_storage_url.rstrip('/')}/monitoring/{data.name}/{data.version}/{stamp}"
    outputs = reports.save_outputs(snapshot, verdict, folder)
    outputs["evidently_project"] = reports.add_to_workspace(snapshot, settings.state_dir / "evidently", data.name)
    get_run_logger().info("Monitoring report: %s", outputs["report.html"])
    return outputs


@task(name="record_monitoring_history", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def record_monitoring_history(data: MonitoringData, verdict: Verdict, outputs: dict[str, str]) -> int:
    """One row per run (and per test) in the prediction database, for the dashboards' time series."""
    run_id = record_run(
        get_settings().prediction_database_url,
        data.name,
        data.version,
        verdict,
        pd.read_parquet(data.current, columns=["label_created_at"]),
        outputs["report.html"],
    )
    get_run_logger().info("Monitor history: run %d recorded", run_id)
    return run_id


@task(name="raise_alerts", cache_policy=NO_CACHE)
def raise_alerts(data: MonitoringData, verdict: Verdict, outputs: dict[str, str], config: MonitorConfig) -> None:
    """Log, a Prefect markdown artifact and, when configured, a webhook; the artifact states the verdict."""
    markdown = reports.verdict_markdown(data.name, data.version, verdict, outputs)
    create_markdown_artifact(markdown, key=f"monitor-{data.name}".lower(), description="Drift and live quality verdict")
    logger = get_run_logger()
    if verdict.alarm:
        logger.warning(
            "ALERT %s version %s: drift=%s, performance breach=%s",
            data.name,
            data.version,
            verdict.drift,
            verdict.performance_breach,
        )
    if config.webhook_url:
        payload = {"model": data.name, "version": data.version, **verdict.as_dict(), "report": outputs["report.html"]}
        delivered = reports.send_webhook(config.webhook_url.get_secret_value(), payload)
        logger.info("Webhook %s", "delivered" if delivered else "NOT delivered (the record stands)")


@task(name="request_retraining", cache_policy=NO_CACHE)
def request_retraining(verdict: Verdict, config: MonitorConfig) -> bool:
    """On an alarm, with ``retrain_on_drift``, schedule one run of the retraining deployment."""
    if not (verdict.alarm and config.retrain_on_drift):
        return False
    # The newest dataset revision by default, so labels reviewed since the last training are learnt from.
    overrides = [f"dataset.revision={config.retrain_revision}"]
    run = run_deployment(
        config.retrain_deployment, parameters={"overrides": overrides}, timeout=0
    )  # a FlowRun, at once
    get_run_logger().warning(
        "Retraining requested: deployment %s, flow run %s, dataset revision %s",
        config.retrain_deployment,
        getattr(run, "id", "?"),
        config.retrain_revision,
    )
    return True
