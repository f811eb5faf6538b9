"""Monitoring outputs: the Evidently report (HTML, JSON, workspace), the verdict file, the webhook."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
import pandas as pd

from tasks.core.http import post_with_retries
from tasks.core.image_properties import PROPERTY_COLUMNS
from tasks.core.prediction_log import bbsd_columns
from tasks.monitoring.verdict import Verdict

logger = logging.getLogger(__name__)


def evidently_snapshot(reference: pd.DataFrame, current: pd.DataFrame, class_names: list[str], verdict: Verdict):  # type: ignore[no-untyped-def]
    """Evidently's drift view of the window: image properties, softmax outputs and the class mix.

    The verdict itself comes from the calibrated tests; it travels with the snapshot as tags and metadata.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numerical = [*PROPERTY_COLUMNS, *bbsd_columns(len(class_names))]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=["prediction"])
    columns = [*numerical, "prediction"]
    report = Report([DataDriftPreset(columns=columns)])
    tags = ["drift" if verdict.drift else "no-drift", "breach" if verdict.performance_breach else "ok"]
    metadata = {"family_p_value": f"{verdict.p_value:.6f}", "alpha": str(verdict.alpha)}
    if verdict.estimate is not None:  # before labels: the window's accuracy, estimated
        low, high = verdict.estimate.interval
        metadata["estimated_accuracy"] = f"{verdict.estimate.value:.4f}"
        metadata["estimated_accuracy_interval"] = f"{low:.4f}..{high:.4f}"
        metadata["accuracy_estimator"] = verdict.estimate.estimator
        metadata["estimate_reliable"] = str(verdict.estimate_reliable).lower()
    return report.run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
        tags=tags,
        metadata=metadata,
    )


def save_outputs(snapshot, verdict: Verdict, folder_url: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """report.html, report.json and verdict.json under ``folder_url`` (any fsspec URL)."""
    fs, root = fsspec.core.url_to_fs(folder_url)
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root}/report.html", "w") as handle:
        handle.write(snapshot.get_html_str(as_iframe=False))
    with fs.open(f"{root}/report.json", "w") as handle:
        handle.write(snapshot.json())
    with fs.open(f"{root}/verdict.json", "w") as handle:
        json.dump(verdict.as_dict(), handle, indent=1)
    return {name: f"{folder_url}/{name}" for name in ("report.html", "report.json", "verdict.json")}


def add_to_workspace(snapshot, workspace_dir: Path, project_name: str) -> str:  # type: ignore[no-untyped-def]
    """Add the run to the Evidently workspace (one project per model), for ``evidently ui``."""
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(workspace_dir))
    found = workspace.search_project(project_name)
    project = found[0] if found else workspace.create_project(project_name, description="Drift and live quality")
    add_dashboard_panels(workspace, project)
    workspace.add_run(project.id, snapshot)
    return str(project.id)


# Property columns worth a line each: width, height and channels rarely vary for one scanner.
CHARTED_PROPERTIES = ("brightness", "contrast", "sharpness")


def dashboard_panels() -> list[Any]:
    """The project's dashboard: what Evidently measured in each run, over time."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    drifted = "DriftedColumnsCount"
    return [
        counter_panel(
            "Drifted columns in the latest run",
            [PanelMetric(metric=drifted, legend="columns")],
            description="Evidently's per-column tests; the verdict (tags drift / no-drift) comes from the "
            "monitor's calibrated family tests",
            size="half",
        ),
        line_plot_panel(
            "Share of drifted columns",
            [PanelMetric(metric=drifted, metric_labels={"value_type": "share"}, legend="share")],
            size="half",
        ),
        line_plot_panel(
            "Image properties: K-S p-value of each run",
            [PanelMetric(metric="ValueDrift", metric_labels={"column": c}, legend=c) for c in CHARTED_PROPERTIES],
            size="half",
        ),
        line_plot_panel(
            "Predicted class mix: chi-square p-value of each run",
            [PanelMetric(metric="ValueDrift", metric_labels={"column": "prediction"}, legend="class mix")],
            size="half",
        ),
    ]


def add_dashboard_panels(workspace, project) -> None:  # type: ignore[no-untyped-def]
    """The panels once per project: a dashboard someone edited in the UI is left as it is."""
    from evidently.sdk.models import DashboardTabModel

    dashboard = project.dashboard.model()
    if dashboard.panels:
        return
    # Saved as one model: ProjectDashboard.add_panel(tab=...) lists a panel twice in an existing tab.
    dashboard.panels = dashboard_panels()
    dashboard.tabs = [DashboardTabModel(title="Monitor", panels=[panel.id for panel in dashboard.panels])]
    workspace.save_dashboard(project.id, dashboard)


def send_webhook(url: str, payload: dict[str, Any], attempts: int = 3) -> bool:
    """POST the verdict; failures are logged (the host only: the URL often carries a token) and never
    fail the monitoring record."""
    ok, detail = post_with_retries(url, json=payload, attempts=attempts)
    if not ok:
        parts = urlsplit(url)
        logger.warning("Webhook to %s://%s failed: %s", parts.scheme, parts.hostname, detail.replace(url, "<webhook>"))
    return ok


EXTRAPOLATES = "The window's shift lies outside the synthetic shifts the estimator learned from: it extrapolates."
DRIFTED = "The window drifted: the estimate assumes calibration holds and may be optimistic."


def verdict_markdown(name: str, version: str, verdict: Verdict, outputs: dict[str, str]) -> str:
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
    if verdict.estimate is not None:
        low, high = verdict.estimate.interval
        others = ", ".join(
            f"{k} {v:.4f}" for k, v in verdict.estimate.by_estimator.items() if k != verdict.estimate.estimator
        )
        lines += [
            "",
            f"Estimated accuracy before labels ({verdict.estimate.estimator}): **{verdict.estimate.value:.4f}** "
            f"(95% interval {low:.4f} to {high:.4f}; {others}).",
        ]
        if not verdict.estimate_reliable:
            lines[-1] += " " + (EXTRAPOLATES if verdict.estimate.estimator == "shift_regression" else DRIFTED)
    if verdict.set_coverage is not None:
        lines += ["", f"Prediction sets held the feedback label in {verdict.set_coverage:.1%} of labelled rows."]
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
