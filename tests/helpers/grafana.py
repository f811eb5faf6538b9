"""The provisioned Grafana dashboards as data: their SQL with Grafana's macros expanded, their PromQL's
metric names. Grafana itself does not run here; what it would send to its data sources is checked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tasks.core.settings import REPO_ROOT

DASHBOARDS = REPO_ROOT / "deployments" / "grafana" / "dashboards"
TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]+)\)")
METRIC = re.compile(r"\b(dl_service_[a-z0-9_]+)\b")


def dashboard(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text())


def targets(board: dict[str, Any], datasource_uid: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query of the dashboard on that data source."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if (target.get("datasource") or panel["datasource"])["uid"] == datasource_uid:
                yield panel["title"], target


def expand_sql(sql: str, variables: dict[str, str]) -> str:
    """What Grafana's PostgreSQL data source sends: the time macro as a range, variables substituted."""
    sql = TIME_FILTER.sub(r"\1 BETWEEN '2000-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z'", sql)
    for name, value in variables.items():
        sql = sql.replace(f"${name}", value)
    assert "$" not in sql, f"an unexpanded Grafana macro or variable: {sql}"
    return sql


def metric_names(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def grouping_labels(expr: str) -> set[str]:
    """The labels of every `by (...)` clause."""
    return {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(",") if label}
