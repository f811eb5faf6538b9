"""Evaluate flow: a published model version on the held-out split, with plots and a quality gate."""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel

from configs.schema import FlowConfig, resolve_config
from tasks.errors import MlopsError
from tasks.eval_tasks import evaluate_model, resolve_model_version
from tasks.evaluation import enforce_gate
from tasks.settings import get_settings
from tasks.tracking import CHALLENGER_ALIAS
from tasks.train_tasks import finish_tracking_run, resolve_dataset, start_tracking_run


class EvalResult(BaseModel):
    model_name: str
    version: str
    split: str
    rows: int
    run_id: str
    passed: bool
    violations: list[str]
    metrics: dict[str, float]


@flow(name="evaluate")
def eval_flow(config: FlowConfig | None = None, config_file: str = "", version: str | None = None) -> EvalResult:
    """Evaluate ``version`` (default: the ``challenger`` alias); raise QualityGateError on violations."""
    config = resolve_config(config, config_file)
    settings = get_settings()
    context = start_tracking_run(config, settings, config_file, flow="evaluate")
    try:
        resolved = resolve_model_version(config.model.name, version, CHALLENGER_ALIAS, context)
        if resolved is None:
            raise MlopsError(f"model {config.model.name!r} has no {CHALLENGER_ALIAS!r} version; run the train flow")
        ref = resolve_dataset(config.dataset, context)
        evaluation = evaluate_model(config, ref, resolved, context, log_prefix="")
        enforce_gate(evaluation.metrics, config.evaluate.thresholds, f"{config.model.name} version {resolved}")
    except BaseException:
        finish_tracking_run(context, "FAILED")
        raise
    finish_tracking_run(context, "FINISHED")
    get_run_logger().info("Version %s passed the quality gate", resolved)
    return EvalResult(
        model_name=config.model.name,
        version=resolved,
        split=evaluation.split,
        rows=evaluation.rows,
        run_id=context.run_id,
        passed=True,
        violations=[],
        metrics=evaluation.metrics,
    )
