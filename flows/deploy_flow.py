"""Deploy flow: promote the challenger only if it passed the gate and is shown non-inferior to the champion."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel

from configs.schema import FlowConfig, resolve_config
from tasks.core.settings import REPO_ROOT
from tasks.core.tracking import CHAMPION_ALIAS, tracking_run
from tasks.deployment.tasks import carry_out, judge_challenger, log_comparison, shadow_before_promotion
from tasks.evaluation.tasks import require_challenger, resolve_model_version


class DeployResult(BaseModel):
    model_name: str
    challenger: str
    champion_before: str | None
    champion_after: str | None
    promoted: bool
    reason: str
    run_id: str
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    comparison_figure: str | None = None  # artifact path in the deploy run (run_id)
    non_inferiority: dict[str, Any] | None = None  # every interval the decision rests on (gate/non_inferiority.json)
    in_shadow: bool = False  # running beside the champion on live traffic; a later deploy run judges it
    shadow: dict[str, Any] | None = None  # the judged shadow report (shadow/report.json)


@flow(name="deploy")
def deploy_flow(
    config: FlowConfig | None = None,
    config_file: str = "",
    overrides: list[str] | None = None,
    version: str | None = None,
    challenger_metrics: dict[str, float] | None = None,
) -> DeployResult:
    """Compare ``version`` (default: ``challenger``) with the champion on the same split; release it or not.

    ``challenger_metrics`` from an evaluate flow on the same config skip measuring the challenger twice.
    """
    config = resolve_config(config, config_file, REPO_ROOT, overrides)
    name = config.model.name
    with tracking_run(config, "deploy", config_file) as run:
        challenger = require_challenger(name, version, run)
        champion = resolve_model_version(name, None, CHAMPION_ALIAS, run)
        decision = judge_challenger(config, challenger, champion, challenger_metrics, run)
        if decision.promote and config.deploy.shadow.enabled and decision.champion is not None:
            decision = shadow_before_promotion(config, decision, run)
        comparison = log_comparison(decision, run)
        carry_out(decision, config, run)
    outcome = "promoted" if decision.promote else "in shadow" if decision.in_shadow else "not promoted"
    get_run_logger().info("%s version %s %s: %s", name, challenger, outcome, decision.reason)
    return DeployResult(
        model_name=name,
        challenger=challenger,
        champion_before=champion,
        champion_after=decision.champion_after,
        promoted=decision.promote,
        reason=decision.reason,
        run_id=run.run_id,
        challenger_metrics=decision.challenger_metrics,
        champion_metrics=decision.champion_metrics,
        comparison_figure=comparison,
        non_inferiority=decision.comparison.as_dict() if decision.comparison else None,
        in_shadow=decision.in_shadow,
        shadow=decision.shadow,
    )
