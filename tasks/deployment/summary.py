"""The markdown summary of a full-flow run and links to its MLflow runs, for the Prefect UI."""

from __future__ import annotations

from typing import Any

from tasks.deployment.comparison import comparison_markdown
from tasks.evaluation.metrics import HEADLINE_METRICS


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
    ]
    if deployed.champion_metrics and deployed.champion_before != trained.version:
        lines += ["", f"Challenger v{trained.version} against champion v{deployed.champion_before}, same split:", ""]
        lines += comparison_markdown(evaluation.metrics, deployed.champion_metrics)
        if deployed.comparison_figure:
            lines += ["", f"Figure: `{deployed.comparison_figure}` in the MLflow deploy run `{deployed.run_id}`."]
        return "\n".join(lines)
    lines += ["", "| metric | challenger |", "|---|---|"]
    lines += [f"| {name} | {evaluation.metrics[name]:.4f} |" for name in HEADLINE_METRICS if name in evaluation.metrics]
    return "\n".join(lines)
