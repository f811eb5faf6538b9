"""The markdown summary of a full-flow run and links to its MLflow runs, for the Prefect UI."""

from __future__ import annotations

from typing import Any

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
        "",
        "| metric | challenger | champion |",
        "|---|---|---|",
    ]
    for name in HEADLINE_METRICS:
        champion = (deployed.champion_metrics or {}).get(name)
        shown = f"{champion:.4f}" if champion is not None else "-"
        lines.append(f"| {name} | {evaluation.metrics[name]:.4f} | {shown} |")
    return "\n".join(lines)
