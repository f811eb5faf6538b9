"""The markdown summary of a full-flow run and links to its MLflow runs, for the Prefect UI."""

from __future__ import annotations

import os
from typing import Any

from tasks import tracking
from tasks.settings import get_settings

SUMMARY_METRICS = ("accuracy", "macro_f1", "macro_auc", "ece")


def mlflow_run_url(run_id: str) -> str:
    """The run's page in the MLflow UI (``MLOPS_MLFLOW_UI_URL``, default the local ``mlflow ui``)."""
    base = os.environ.get("MLOPS_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")
    experiment = tracking.configure_mlflow(get_settings()).get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{experiment}/runs/{run_id}"


def summary_markdown(trained: Any, evaluation: Any | None, deployed: Any | None, gate_error: str | None) -> str:
    lines = [
        f"# {trained.model_name} version {trained.version}",
        "",
        f"- **data**: revision `{trained.dataset_revision}`, commit `{trained.dataset_commit[:10]}`",
        f"- **training run**: `{trained.run_id}`, test accuracy {trained.metrics.get('test_accuracy', 0.0):.4f}",
    ]
    if gate_error is not None or evaluation is None or deployed is None:
        lines += ["- **quality gate**: FAILED", "- **promoted**: no", "", "```", gate_error or "", "```"]
        return "\n".join(lines)
    lines += [
        f"- **quality gate**: passed on `{evaluation.split}` ({evaluation.rows} images)",
        f"- **promoted**: {'yes' if deployed.promoted else 'no'}: {deployed.reason}",
        f"- **champion**: before `{deployed.champion_before}`, after `{deployed.champion_after}`",
        "",
        "| metric | challenger | champion |",
        "|---|---|---|",
    ]
    for name in SUMMARY_METRICS:
        champion = (deployed.champion_metrics or {}).get(name)
        shown = f"{champion:.4f}" if champion is not None else "-"
        lines.append(f"| {name} | {evaluation.metrics[name]:.4f} | {shown} |")
    return "\n".join(lines)
