"""The Evidently project's dashboard, as its UI shows it: the panels the monitor adds, each asking the
real `evidently ui` server for series that the monitor's runs really contain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from configs.schema import MonitorConfig
from deployments.stack.servers import free_port
from tasks.monitoring import reports
from tasks.monitoring.verdict import decide
from tests.helpers.monitoring import CLASSES, window
from tests.helpers.service import wait_until


def series_of(base: str, project: str, panel: dict[str, Any]) -> list[dict[str, Any]]:
    """What the UI plots for a panel: the data series its values select."""
    filters = [
        {"tags": v["tags"], "metadata": v["metadata"], "metric": v["metric"], "metric_labels": v["metric_labels"]}
        for v in panel["values"]
    ]
    response = httpx.post(f"{base}/api/v2/snapshots/{project}/data_series_batch", json={"series_filter": filters})
    response.raise_for_status()
    return list(response.json()["series"])


def test_monitor_runs_fill_the_projects_dashboard_panels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    reference = window(rng, 300, 0.0, 300)  # labelled, as the published reference is
    workspace = tmp_path / "evidently"
    for shift in (0.0, 1.5):  # a quiet week, then a week of brighter images
        current = window(rng, 150, shift, 0)
        verdict = decide(reference, current, CLASSES, MonitorConfig())
        snapshot = reports.evidently_snapshot(reference, current, CLASSES, verdict)
        project = reports.add_to_workspace(snapshot, workspace, "m")

    port = free_port()
    evidently = Path(sys.executable).parent / "evidently"
    command = [str(evidently), "ui", "--workspace", str(workspace), "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/api/version"), "the Evidently UI", seconds=90)
        dashboard = httpx.get(f"{base}/api/v2/dashboards/{project}").json()
        panels = {panel["title"]: panel for panel in dashboard["panels"]}
        (tab,) = dashboard["tabs"]
        assert tab["panels"] == [panel["id"] for panel in dashboard["panels"]]  # each panel once
        plotted = {title: series_of(base, project, panel) for title, panel in panels.items()}
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert set(plotted) == {
        "Drifted columns in the latest run",
        "Share of drifted columns",
        "Image properties: K-S p-value of each run",
        "Predicted class mix: chi-square p-value of each run",
    }
    for title, series in plotted.items():
        assert series and all(len(s["values"]) == 2 for s in series), f"panel {title!r} plots {series}"
    (share,) = plotted["Share of drifted columns"]
    assert 0 <= share["values"][0] < share["values"][1] <= 1
    properties = {s["params"]["column"]: s["values"] for s in plotted["Image properties: K-S p-value of each run"]}
    assert set(properties) == set(reports.CHARTED_PROPERTIES)
    assert all(values[1] < 1e-6 for values in properties.values())  # the brighter week


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
