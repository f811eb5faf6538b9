"""Evaluate flow: a published model version on the held-out split, with plots and a quality gate."""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel

from configs.schema import FlowConfig, resolve_config
from tasks.core.settings import REPO_ROOT
from tasks.core.tracking import tracking_run
from tasks.data.tasks import resolve_dataset
from tasks.evaluation.gate import enforce_gate
from tasks.evaluation.tasks import evaluate_model, require_challenger


class EvalResult(BaseModel):
    """A version that passed the gate (one that did not raises QualityGateError listing every violation)."""

    model_name: str
    version: str
    split: str
    rows: int
    run_id: str
    metrics: dict[str, float]


@flow(name="evaluate")
def eval_flow(
    config: FlowConfig | None = None,
    config_file: str = "",
    overrides: list[str] | None = None,
    version: str | None = None,
) -> EvalResult:
    """Evaluate ``version`` (default: the ``challenger`` alias); raise QualityGateError on violations."""
    config = resolve_config(config, config_file, REPO_ROOT, overrides)
    name = config.model.name
    with tracking_run(config, "evaluate", config_file) as run:
        version = require_challenger(name, version, run)
        ref = resolve_dataset(config.dataset, run)
        evaluation = evaluate_model(config, ref, version, run)
        enforce_gate(evaluation.metrics, config.evaluate.thresholds, f"{name} version {version}")
    get_run_logger().info("Version %s passed the quality gate", version)
    return EvalResult(
        model_name=name,
        version=version,
        split=evaluation.split,
        rows=evaluation.rows,
        run_id=run.run_id,
        metrics=evaluation.metrics,
    )
