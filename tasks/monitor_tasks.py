"""Prefect tasks of the monitor flow."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from configs.schema import MonitorConfig
from tasks import monitor_reports, monitoring
from tasks.errors import MlopsError
from tasks.model_bundle import REFERENCE_FILE, fetch_bundle
from tasks.production import read_pointer
from tasks.settings import PlatformSettings


@task(name="load_monitoring_data", cache_policy=NO_CACHE)
def load_monitoring_data(
    settings: PlatformSettings, database_url: str, name: str, config: MonitorConfig, workdir: Path
) -> tuple[str, list[str], Path, Path]:
    """The production version, its class names, and parquet files of its reference and of the window."""
    pointer = read_pointer(settings.central_storage_url, name)
    if pointer is None:
        raise MlopsError(f"{name} has no production version to monitor; run the deploy flow")
    bundle = fetch_bundle(settings.central_storage_url, name, pointer.version, settings.cache_dir)
    window = monitoring.expand_features(monitoring.load_window(database_url, name, pointer.version, config))
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
    return pointer.version, bundle.class_names, bundle.folder / REFERENCE_FILE, current


@task(name="detect_drift", cache_policy=NO_CACHE)
def detect_drift(
    reference_path: Path, current_path: Path, class_names: list[str], config: MonitorConfig
) -> monitoring.Verdict:
    verdict = monitoring.decide(pd.read_parquet(reference_path), pd.read_parquet(current_path), class_names, config)
    logger = get_run_logger()
    for test in verdict.tests[:4]:
        logger.info("%s: p = %.4g (%s)", test.name, test.p_value, test.method)
    logger.info(
        "Family-wise p = %.4g at alpha %s: %s", verdict.p_value, verdict.alpha, "DRIFT" if verdict.drift else "no drift"
    )
    return verdict


@task(name="publish_monitoring_report", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def publish_monitoring_report(
    settings: PlatformSettings,
    name: str,
    version: str,
    reference_path: Path,
    current_path: Path,
    class_names: list[str],
    verdict: monitoring.Verdict,
) -> dict[str, str]:
    """Evidently report as HTML and JSON in central storage and in the Evidently workspace."""
    snapshot = monitor_reports.evidently_snapshot(
        pd.read_parquet(reference_path), pd.read_parquet(current_path), class_names, verdict
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = f"{settings.central_storage_url.rstrip('/')}/monitoring/{name}/{version}/{stamp}"
    outputs = monitor_reports.save_outputs(snapshot, verdict, folder)
    outputs["evidently_project"] = monitor_reports.add_to_workspace(snapshot, settings.state_dir / "evidently", name)
    get_run_logger().info("Monitoring report: %s", outputs["report.html"])
    return outputs


@task(name="raise_alerts", cache_policy=NO_CACHE)
def raise_alerts(
    name: str, version: str, verdict: monitoring.Verdict, outputs: dict[str, str], config: MonitorConfig
) -> str:
    """Log, a Prefect markdown artifact and, when configured, a webhook; the artifact states the verdict."""
    markdown = verdict_markdown(name, version, verdict, outputs)
    create_markdown_artifact(markdown, key=f"monitor-{name}".lower(), description="Drift and live quality verdict")
    logger = get_run_logger()
    if verdict.alarm:
        logger.warning(
            "ALERT %s version %s: drift=%s, performance breach=%s",
            name,
            version,
            verdict.drift,
            verdict.performance_breach,
        )
    if config.webhook_url:
        payload = {"model": name, "version": version, **verdict.as_dict(), "report": outputs.get("report.html")}
        delivered = monitor_reports.send_webhook(config.webhook_url, payload)
        logger.info("Webhook %s", "delivered" if delivered else "NOT delivered (the record stands)")
    return markdown


def verdict_markdown(name: str, version: str, verdict: monitoring.Verdict, outputs: dict[str, str]) -> str:
    state = "DRIFT" if verdict.drift else "no drift"
    lines = [
        f"# Monitoring {name} version {version}: {state}"
        + (", PERFORMANCE BREACH" if verdict.performance_breach else ""),
        "",
        f"{verdict.window_rows} predictions, {verdict.labelled_rows} with feedback labels. "
        f"Family-wise p-value {verdict.p_value:.4g} (Bonferroni over the four families) at alpha {verdict.alpha}.",
        "",
        "| test | method | statistic | p-value |",
        "|---|---|---|---|",
        *(f"| {t.name} | {t.method} | {t.statistic:.4g} | {t.p_value:.4g} |" for t in verdict.tests),
    ]
    if verdict.performance:
        lines += [
            "",
            "| live metric | value |",
            "|---|---|",
            *(f"| {k} | {v:.4f} |" for k, v in sorted(verdict.performance.items())),
        ]
    if verdict.violations:
        lines += ["", *(f"- {v}" for v in verdict.violations)]
    lines += ["", f"Report: {outputs.get('report.html', '-')}"]
    return "\n".join(lines)
