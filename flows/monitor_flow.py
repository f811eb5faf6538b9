"""Monitor flow (weekly, and on demand): is the production model still seeing the world it was trained on?"""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow
from pydantic import BaseModel

from configs.schema import FlowConfig, resolve_config
from tasks.core.settings import REPO_ROOT
from tasks.monitoring.tasks import (
    detect_drift,
    load_monitoring_data,
    publish_monitoring_report,
    raise_alerts,
    record_monitoring_history,
    request_retraining,
)


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
    estimated_accuracy: float | None = None  # estimated before labels (monitor.accuracy_estimator)
    estimated_accuracy_interval: tuple[float, float] | None = None
    set_coverage: float | None = None  # of the labelled rows, the share whose prediction set held the label


@flow(name="monitor")
def monitor_flow(
    config: FlowConfig | None = None, config_file: str = "", overrides: list[str] | None = None
) -> MonitorResult:
    config = resolve_config(config, config_file, REPO_ROOT, overrides)
    monitor = config.monitor
    with tempfile.TemporaryDirectory(prefix="monitor-") as folder:
        data = load_monitoring_data(config.model.name, monitor, Path(folder))
        verdict = detect_drift(data, monitor)
        outputs = publish_monitoring_report(data, verdict)
        record_monitoring_history(data, verdict, outputs)
    raise_alerts(data, verdict, outputs, monitor)
    retraining = request_retraining(verdict, monitor)
    return MonitorResult(
        model_name=data.name,
        version=data.version,
        drift=verdict.drift,
        performance_breach=verdict.performance_breach,
        p_value=verdict.p_value,
        window_rows=verdict.window_rows,
        labelled_rows=verdict.labelled_rows,
        reports=outputs,
        retraining_triggered=retraining,
        estimated_accuracy=verdict.estimate.value if verdict.estimate else None,
        estimated_accuracy_interval=verdict.estimate.interval if verdict.estimate else None,
        set_coverage=verdict.set_coverage,
    )
