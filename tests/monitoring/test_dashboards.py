"""The Grafana dashboards' queries against what the product really exports: the monitor dashboard's SQL
on a real PostgreSQL holding runs the monitor's writer recorded, the service dashboard's PromQL on the
metric and label names of a real service's /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from configs.schema import MonitorConfig
from deployments.stack.servers import PostgresCluster
from services.dl_service.app import create_app
from tasks.core.settings import Settings
from tasks.monitoring.history import record_run
from tasks.monitoring.verdict import decide
from tests.helpers.grafana import dashboard, expand_sql, grouping_labels, metric_names, targets
from tests.helpers.monitoring import CLASSES, window


@pytest.fixture
def history_database(postgres_server: PostgresCluster) -> Iterator[str]:
    engine = create_engine(postgres_server.url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS monitor_tests, monitor_runs"))
    engine.dispose()
    yield postgres_server.url


def query(url: str, sql: str) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [dict(row) for row in connection.execute(text(sql)).mappings()]
    finally:
        engine.dispose()


def test_monitor_dashboard_charts_the_runs_the_monitor_recorded(history_database: str) -> None:
    rng = np.random.default_rng(0)
    reference = window(rng, 300, 0.0, 300)  # labelled, as the published reference is
    config = MonitorConfig(min_labelled=10)
    quiet = decide(reference, window(rng, 150, 0.0, 60), CLASSES, config)
    drifted = decide(reference, window(rng, 150, 1.5, 0), CLASSES, config)
    assert not quiet.drift and drifted.drift
    record_run(history_database, "fashion-cnn", "3", quiet, window(rng, 150, 0.0, 60), "file:///r/1/report.html")
    record_run(history_database, "fashion-cnn", "3", drifted, window(rng, 150, 1.5, 0), "file:///r/2/report.html")

    board = dashboard("monitor.json")
    variable = board["templating"]["list"][0]
    assert [row["model_name"] for row in query(history_database, variable["query"])] == ["fashion-cnn"]
    answers: dict[str, list[list[dict[str, Any]]]] = {}
    for title, target in targets(board, "predictions"):
        rows = query(history_database, expand_sql(target["rawSql"], {"model": "fashion-cnn"}))
        assert rows, f"panel {title!r} has nothing to show"
        if target["format"] == "time_series":
            assert "time" in rows[0], f"panel {title!r} has no time column"
        answers.setdefault(title, []).append(rows)
    assert len(answers) == len(board["panels"])  # every panel answered

    p_values, alpha = answers["Drift: p-value of each test family (log scale; below alpha is drift)"]
    assert {row["metric"] for row in p_values} == {"UAE embedding", "BBSD softmax", "class mix", "image properties"}
    assert len(p_values) == 8 and [row["alpha"] for row in alpha] == [0.05, 0.05]
    (verdicts,) = answers["Verdict of each monitor run"]
    assert [row["drift"] for row in verdicts] == [0, 1]
    accuracy, estimated = answers["Accuracy: live on feedback labels, and estimated before labels"]
    assert [row["live accuracy"] for row in accuracy] == [1.0]  # the drifted window had no labels
    assert len(estimated) == 2 and all(r["estimated low"] <= r["estimated"] <= r["estimated high"] for r in estimated)
    freshness, share = answers["Label freshness: hours since the newest feedback label, and the labelled share"]
    assert len(freshness) == 1 and 0 <= freshness[0]["hours since newest label"] < 0.1
    assert [row["labelled share"] for row in share] == [0.4, 0.0]
    (table,) = answers["Monitor runs"]
    assert [row["report"] for row in table] == ["file:///r/2/report.html", "file:///r/1/report.html"]


def test_service_dashboard_asks_for_metrics_and_labels_the_service_exports(
    service_env: dict[str, str], sample_images: list[Path]
) -> None:
    with TestClient(create_app(Settings())) as client:
        response = client.post("/predict", files={"file": ("a.png", sample_images[0].read_bytes(), "image/png")})
        assert response.status_code == 200
        exposition = client.get("/metrics").text
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    board = dashboard("dl_service.json")
    titles = " ".join(panel["title"] for panel in board["panels"]).lower()
    for needed in ("requests", "latency", "error", "model version", "class mix"):
        assert needed in titles
    expressions = [(title, target["expr"]) for title, target in targets(board, "prometheus")]
    assert len(expressions) >= len(board["panels"])
    for title, expr in expressions:
        names = metric_names(expr)
        assert names, f"panel {title!r}: no dl_service metric in {expr}"
        for name in names:
            assert name in labels, f"panel {title!r} asks for {name}, which /metrics does not export"
            assert grouping_labels(expr) - {"le"} <= labels[name], f"panel {title!r} groups by a label {name} lacks"
