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
        f"- **model card**: `{trained.storage_uri}/model_card.html` (and `.md`)",
    ]
    if gate_error is not None or evaluation is None or deployed is None:
        lines += ["- **quality gate**: FAILED", "- **promoted**: no", "", "```", gate_error or "", "```"]
        return "\n".join(lines)
    lines += [
        f"- **quality gate**: passed on `{evaluation.split}` ({evaluation.rows} images)",
        f"- **promoted**: {'yes' if deployed.promoted else 'no'}: {deployed.reason}",
        f"- **champion**: before `{deployed.champion_before}`, after `{deployed.champion_after}`",
    ]
    if deployed.in_shadow:
        lines.append("- **shadow**: running beside the champion on live traffic; `mlops shadow report` compares them")
    if deployed.champion_metrics and deployed.champion_before != trained.version:
        lines += ["", f"Challenger v{trained.version} against champion v{deployed.champion_before}, same split:", ""]
        lines += comparison_markdown(evaluation.metrics, deployed.champion_metrics)
        if deployed.non_inferiority:
            lines += ["", *non_inferiority_markdown(deployed.non_inferiority)]
        if deployed.comparison_figure:
            lines += ["", f"Figure: `{deployed.comparison_figure}` in the MLflow deploy run `{deployed.run_id}`."]
        return "\n".join(lines)
    lines += ["", "| metric | challenger |", "|---|---|"]
    lines += [f"| {name} | {evaluation.metrics[name]:.4f} |" for name in HEADLINE_METRICS if name in evaluation.metrics]
    return "\n".join(lines)


def non_inferiority_markdown(evidence: dict[str, Any]) -> list[str]:
    """The paired test's overall row and every slice that was judged, worst lower bound first."""
    judged = [s for s in evidence["slices"] if s["judged"]]
    rows = [evidence["overall"], *sorted(judged, key=lambda s: s["lower_bound"] + s["margin"])]  # nearest failing first
    lines = [
        f"Paired non-inferiority ({rows[0]['confidence']:.0%} one-sided; slices Bonferroni-corrected):",
        "",
        "| scope | metric | rows | challenger | champion | difference | lower bound | margin | passed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['scope']} | {r['metric']} | {r['rows']} | {r['challenger']:.4f} | {r['champion']:.4f} | "
        f"{r['difference']:+.4f} | {r['lower_bound']:+.4f} | {r['margin']} | {'yes' if r['passed'] else '**no**'} |"
        for r in rows
    ]
    return lines
