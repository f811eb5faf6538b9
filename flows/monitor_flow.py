"""Monitor flow (weekly, and on demand): is the production model still seeing the world it was trained on?"""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import BaseModel

from configs.schema import FlowConfig, resolve_config
from tasks.monitor_tasks import detect_drift, load_monitoring_data, publish_monitoring_report, raise_alerts
from tasks.settings import get_settings


class MonitorResult(BaseModel):
    model_name: str
    version: str
    drift: bool
    performance_breach: bool
    p_value: float
    window_rows: int
    labelled_rows: int
    reports: dict[str, str]
    retraining_triggered: bool


@flow(name="monitor")
def monitor_flow(config: FlowConfig | None = None, config_file: str = "") -> MonitorResult:
    config = resolve_config(config, config_file)
    from services.dl_service.settings import ServiceSettings

    logger = get_run_logger()
    settings, name, monitor = get_settings(), config.model.name, config.monitor
    database_url = ServiceSettings().resolved_database_url  # the log the service writes
    with tempfile.TemporaryDirectory(prefix="monitor-") as folder:
        version, classes, reference, current = load_monitoring_data(settings, database_url, name, monitor, Path(folder))
        verdict = detect_drift(reference, current, classes, monitor)
        outputs = publish_monitoring_report(settings, name, version, reference, current, classes, verdict)
    raise_alerts(name, version, verdict, outputs, monitor)
    retrain = bool(verdict.alarm and monitor.retrain_on_drift)
    if retrain:
        from prefect.deployments import run_deployment

        run = run_deployment(monitor.retrain_deployment, timeout=0)  # sync in a sync flow: a FlowRun
        logger.warning(
            "Retraining requested: deployment %s, flow run %s", monitor.retrain_deployment, getattr(run, "id", "?")
        )
    return MonitorResult(
        model_name=name,
        version=version,
        drift=verdict.drift,
        performance_breach=verdict.performance_breach,
        p_value=verdict.p_value,
        window_rows=verdict.window_rows,
        labelled_rows=verdict.labelled_rows,
        reports=outputs,
        retraining_triggered=retrain,
    )
