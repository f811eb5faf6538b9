"""The monitor's results over time, in the prediction database beside the log they were computed from:
one row per monitor run and one per drift test. Grafana's monitor dashboard charts them
(deployments/grafana/dashboards/monitor.json); its SQL is checked against these tables by the tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
)

from tasks.monitoring.verdict import FAMILY_COUNT, Verdict

metadata = MetaData()

monitor_runs = Table(
    "monitor_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(50), nullable=False),
    Column("drift", Boolean, nullable=False),
    Column("performance_breach", Boolean, nullable=False),
    Column("p_value", Float, nullable=False),  # family-wise (Bonferroni over the families)
    Column("alpha", Float, nullable=False),
    Column("window_rows", Integer, nullable=False),
    Column("labelled_rows", Integer, nullable=False),
    Column("live_accuracy", Float),  # null when no prediction of the window has a feedback label
    Column("estimated_accuracy", Float),  # before labels (monitor.accuracy_estimator)
    Column("estimated_accuracy_low", Float),
    Column("estimated_accuracy_high", Float),
    Column("set_coverage", Float),  # share of labelled rows whose prediction set held the label
    Column("label_age_hours", Float),  # freshness: age of the newest label in the window; null without one
    Column("report_url", String(1000)),
)

monitor_tests = Table(
    "monitor_tests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("monitor_runs.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("family", Boolean, nullable=False),  # one of the families the verdict combines, or a member test
    Column("method", String(200), nullable=False),
    Column("statistic", Float),
    Column("p_value", Float, nullable=False),
)


def label_age_hours(window: pd.DataFrame, now: datetime) -> float | None:
    """Hours since the newest feedback label among the window's predictions."""
    stamps = pd.to_datetime(window.get("label_created_at", pd.Series(dtype=object)), utc=True).dropna()
    if stamps.empty:
        return None
    return max(0.0, (now - stamps.max().to_pydatetime()).total_seconds() / 3600)


def record_run(
    database_url: str, model_name: str, version: str, verdict: Verdict, window: pd.DataFrame, report_url: str
) -> int:
    """Append one monitor run and its tests; the run's id."""
    now = datetime.now(UTC)
    engine = create_engine(database_url)
    try:
        metadata.create_all(engine, checkfirst=True)
        with engine.begin() as connection:
            key = connection.execute(
                monitor_runs.insert().values(
                    created_at=now,
                    model_name=model_name,
                    model_version=version,
                    drift=verdict.drift,
                    performance_breach=verdict.performance_breach,
                    p_value=verdict.p_value,
                    alpha=verdict.alpha,
                    window_rows=verdict.window_rows,
                    labelled_rows=verdict.labelled_rows,
                    live_accuracy=verdict.performance.get("accuracy"),
                    estimated_accuracy=verdict.estimate.value if verdict.estimate else None,
                    estimated_accuracy_low=verdict.estimate.interval[0] if verdict.estimate else None,
                    estimated_accuracy_high=verdict.estimate.interval[1] if verdict.estimate else None,
                    set_coverage=verdict.set_coverage,
                    label_age_hours=label_age_hours(window, now),
                    report_url=report_url,
                )
            ).inserted_primary_key
            assert key is not None  # an INSERT of one row always returns its primary key
            run_id = int(key[0])
            connection.execute(
                monitor_tests.insert(),
                [
                    {
                        "run_id": run_id,
                        "name": test.name,
                        "family": index < FAMILY_COUNT,
                        "method": test.method,
                        "statistic": test.statistic,
                        "p_value": test.p_value,
                    }
                    for index, test in enumerate(verdict.tests)
                ],
            )
    finally:
        engine.dispose()
    return run_id
