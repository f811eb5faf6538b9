"""Deploy flow: promote the challenger only if it passed the gate and holds up against the champion."""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel

from configs.schema import FlowConfig, resolve_config
from tasks.deploy_tasks import apply_deployments, record_current_model, release, tell_services_to_reload
from tasks.errors import MlopsError
from tasks.eval_tasks import evaluate_model, resolve_model_version
from tasks.evaluation import gate_violations
from tasks.promotion import PromotionDecision, decide_promotion
from tasks.settings import get_settings
from tasks.tracking import CHALLENGER_ALIAS, CHAMPION_ALIAS
from tasks.train_tasks import finish_tracking_run, resolve_dataset, start_tracking_run


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


@flow(name="deploy")
def deploy_flow(
    config: FlowConfig | None = None,
    config_file: str = "",
    version: str | None = None,
    challenger_metrics: dict[str, float] | None = None,
) -> DeployResult:
    """Compare ``version`` (default: ``challenger``) with the champion on the same split; release it or not.

    ``challenger_metrics`` from an evaluate flow on the same config skip measuring the challenger twice.
    """
    config = resolve_config(config, config_file)
    logger = get_run_logger()
    settings, name, deploy = get_settings(), config.model.name, config.deploy
    context = start_tracking_run(config, settings, config_file, flow="deploy")
    try:
        challenger = resolve_model_version(name, version, CHALLENGER_ALIAS, context)
        if challenger is None:
            raise MlopsError(f"model {name!r} has no {CHALLENGER_ALIAS!r} version; run the train flow")
        champion = resolve_model_version(name, None, CHAMPION_ALIAS, context)
        champion_metrics = None
        if champion == challenger:  # decided before the dataset is resolved or anything evaluated
            decision = PromotionDecision(False, f"version {challenger} is already the champion; nothing to do")
            challenger_metrics = challenger_metrics or {}
        else:
            ref = resolve_dataset(config.dataset, context)
            if challenger_metrics is None:
                challenger_metrics = evaluate_model(config, ref, challenger, context, "challenger_").metrics
            violations = gate_violations(challenger_metrics, config.evaluate.thresholds)
            if champion is not None:
                champion_metrics = evaluate_model(config, ref, champion, context, "champion_").metrics
            decision = decide_promotion(challenger_metrics, champion_metrics, violations, deploy.metric, deploy.margin)
        decision_promote, reason = decision.promote, decision.reason
        champion_after = champion
        if decision_promote:
            pointer = release(settings, name, challenger, reason, challenger_metrics)
            tell_services_to_reload(deploy.reload_urls)
            record_current_model(pointer)
            champion_after = challenger
        if champion_after is not None:
            apply_deployments(deploy.monitor_cron)
    except BaseException:
        finish_tracking_run(context, "FAILED")
        raise
    finish_tracking_run(context, "FINISHED")
    logger.info("%s version %s %s: %s", name, challenger, "promoted" if decision_promote else "not promoted", reason)
    return DeployResult(
        model_name=name,
        challenger=challenger,
        champion_before=champion,
        champion_after=champion_after,
        promoted=decision_promote,
        reason=reason,
        run_id=context.run_id,
        challenger_metrics=challenger_metrics,
        champion_metrics=champion_metrics,
    )
