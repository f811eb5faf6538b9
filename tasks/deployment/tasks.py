"""Prefect tasks of the deployment stage: judge the challenger, release it, tell services, record it in Prefect."""

from __future__ import annotations

import re
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.variables import Variable

from configs.schema import FlowConfig
from tasks.core.audit import append_entry
from tasks.core.image_properties import file_properties
from tasks.core.pointer import ProductionPointer
from tasks.core.settings import get_settings
from tasks.core.shadow_pointer import read_shadow
from tasks.core.tracking import TrackingRun
from tasks.data.dataset import DatasetRef
from tasks.data.tasks import resolve_dataset
from tasks.deployment.comparison import plot_champion_vs_challenger
from tasks.deployment.noninferiority import NonInferiority, non_inferiority
from tasks.deployment.notify import notify_services
from tasks.deployment.prefect_deployments import apply_all
from tasks.deployment.promotion import PromotionDecision, already_champion, decide_promotion
from tasks.deployment.release import release_version
from tasks.deployment.shadow import describe_report, judge_shadow, shadow_report, start_shadow, stop_shadow
from tasks.evaluation.tasks import Evaluation, evaluate_model

# What the deploy flow keeps applied: the weekly monitor, and the full flow it may start on
# confirmed drift. Training has its own pool so its worker can run on another host.


def judge_challenger(
    config: FlowConfig,
    challenger: str,
    champion: str | None,
    challenger_metrics: dict[str, float] | None,
    run: TrackingRun,
) -> PromotionDecision:
    """Both versions on the same split, then the verdict: the quality gate, and against a champion the
    paired non-inferiority test on the images both predicted (``challenger_metrics`` from an evaluate
    flow spare measuring a first version twice; against a champion the rows are needed again).

    "Already the champion" is settled before the dataset is resolved or anything evaluated.
    """
    if champion == challenger:
        return already_champion(challenger, challenger_metrics or {})
    ref = resolve_dataset(config.dataset, run)
    thresholds = config.evaluate.thresholds
    if champion is None:
        if challenger_metrics is None:
            challenger_metrics = evaluate_model(config, ref, challenger, run, "challenger_").metrics
        return decide_promotion(challenger, None, challenger_metrics, None, thresholds, None)
    ours = evaluate_model(config, ref, challenger, run, "challenger_")
    theirs = evaluate_model(config, ref, champion, run, "champion_")
    comparison = compare_on_same_images(config, ref, ours, theirs, run)
    return decide_promotion(challenger, champion, ours.metrics, theirs.metrics, thresholds, comparison)


@task(name="compare_on_same_images", cache_policy=NO_CACHE)
def compare_on_same_images(
    config: FlowConfig, ref: DatasetRef, challenger: Evaluation, champion: Evaluation, run: TrackingRun
) -> NonInferiority:
    """The paired non-inferiority test of the two evaluations, logged with every interval."""
    rule = config.deploy
    ours, theirs = (pd.read_parquet(e.predictions) for e in (challenger, champion) if e.predictions is not None)
    theirs = theirs.set_index("path").loc[ours["path"]].reset_index()  # the same image on each row
    names = [c.removeprefix("p_") for c in ours.columns if c.startswith("p_")]
    labels = ours["label"].map({name: index for index, name in enumerate(names)}).to_numpy()
    properties = pd.DataFrame([file_properties(ref.data_dir / path) for path in ours["path"]])
    comparison = non_inferiority(
        labels,
        ours[[f"p_{n}" for n in names]].to_numpy(float),
        theirs[[f"p_{n}" for n in names]].to_numpy(float),
        names,
        rule.metric,
        rule.margin,
        rule.slice_margin,
        rule.confidence,
        rule.resamples,
        properties,
        rule.min_slice_rows,
        config.train.seed,
    )
    run.log_dict(comparison.as_dict(), "gate/non_inferiority.json")
    run.log_metrics(
        {
            "gate/difference": comparison.overall.difference,
            "gate/lower_bound": comparison.overall.lower_bound,
            "gate/slices_failed": float(len([s for s in comparison.slices if not s.passed])),
        }
    )
    logger = get_run_logger()
    logger.info("Non-inferiority %s", comparison.overall.describe())
    for failure in comparison.failures:
        logger.warning("Not non-inferior: %s", failure.describe())
    return comparison


COMPARISON_FIGURE = "comparison/champion_vs_challenger.png"


@task(name="log_comparison", cache_policy=NO_CACHE)
def log_comparison(decision: PromotionDecision, run: TrackingRun) -> str | None:
    """The champion-versus-challenger figure in the deploy run, when there was a champion to compare with."""
    if decision.champion is None or decision.champion_metrics is None or decision.champion == decision.challenger:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(COMPARISON_FIGURE).name
        versions = (decision.challenger, decision.champion)
        plot_champion_vs_challenger(decision.challenger_metrics, decision.champion_metrics, versions, path)
        run.log_artifact(path, str(Path(COMPARISON_FIGURE).parent))
    return COMPARISON_FIGURE


@task(name="release_version", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def release(decision: PromotionDecision, name: str, run: TrackingRun) -> ProductionPointer:
    """Pointer and alias to the challenger, together."""
    storage = run.settings.central_storage_url
    return release_version(
        run.client, storage, name, decision.challenger, decision.reason, decision.challenger_metrics, "promotion",
        decision.evidence(), flow_actor(),
    )  # fmt: skip


def carry_out(decision: PromotionDecision, config: FlowConfig, run: TrackingRun) -> None:
    """Act on the verdict: release (which ends a shadow of the released version), or record the refusal;
    tell the services when what they run changed; keep every deployment applied once there is a champion."""
    name = config.model.name
    if decision.promote:
        record_current_model(release(decision, name, run))
    elif not decision.in_shadow and decision.champion != decision.challenger:
        record_refusal(decision, name, run)
    if decision.promote or decision.shadow_started_or_stopped:
        tell_services_to_reload(config.deploy.reload_urls)
    if decision.champion_after is not None:
        apply_deployments(config.deploy.monitor_cron)


def flow_actor() -> str:
    """Who acts in the audit trail: this flow run."""
    return f"flow run {flow_run.name} ({flow_run.id})"


@task(name="record_refusal", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def record_refusal(decision: PromotionDecision, name: str, run: TrackingRun) -> None:
    """A challenger kept out is in the audit trail too, with the intervals that kept it out; a shadow of it
    that is still running (it failed offline on a later run) stops."""
    storage = run.settings.central_storage_url
    stop_shadow(storage, name, f"refused: {decision.reason}", flow_actor(), None, only_version=decision.challenger)
    append_entry(
        storage, name, "refused", decision.challenger, decision.reason, decision.champion, decision.evidence(),
        flow_actor(),
    )  # fmt: skip


@task(name="shadow_before_promotion", cache_policy=NO_CACHE)
def shadow_before_promotion(config: FlowConfig, decision: PromotionDecision, run: TrackingRun) -> PromotionDecision:
    """A challenger that passed offline runs in shadow first. The deploy run that finds it not yet in shadow
    starts the shadow; a later one judges what it said (``deploy.shadow``): promote when ready, refuse
    and stop the shadow when it failed, keep it running while the evidence is short."""
    storage, name, rule = run.settings.central_storage_url, config.model.name, config.deploy.shadow
    current = read_shadow(storage, name)
    logger = get_run_logger()
    if current is None or (current.version, current.champion) != (decision.challenger, decision.champion):
        reason = f"passed offline ({decision.reason}); in shadow beside version {decision.champion}"
        start_shadow(storage, name, decision.challenger, rule.sample, reason, flow_actor(), decision.evidence())
        logger.info("Version %s in shadow; a later deploy run promotes it once the shadow criteria hold",
                    decision.challenger)  # fmt: skip
        return replace(decision, promote=False, in_shadow=True, reason=f"{reason}; judged by a later deploy run")
    report = judge_shadow(
        shadow_report(run.settings.prediction_database_url, storage, current, config.deploy.confidence), rule
    )
    run.log_dict(report.as_dict(), "shadow/report.json")
    create_markdown_artifact(describe_report(report), key=f"shadow-{re.sub(r'[^a-z0-9-]', '-', name.lower())}",
                             description=f"Shadow of {name} version {decision.challenger}")  # fmt: skip
    logger.info("Shadow of version %s: %s (%s)", decision.challenger, report.status, "; ".join(report.reasons))
    judged = "; ".join(report.reasons)
    if report.status == "waiting":
        return replace(decision, promote=False, in_shadow=True, reason=f"in shadow: {judged}", shadow=report.as_dict())
    if report.status == "failed":
        stop_shadow(storage, name, f"failed in shadow: {judged}", flow_actor(), {"shadow": report.as_dict()})
        return replace(decision, promote=False, reason=f"failed in shadow: {judged}", shadow=report.as_dict())
    return replace(decision, reason=f"{decision.reason}; in shadow: {judged}", shadow=report.as_dict())


@task(name="notify_services", cache_policy=NO_CACHE)
def tell_services_to_reload(urls: list[str]) -> None:
    """POST to each service's reload URL with the admin token; never fails the deploy."""
    notify_services(urls, get_settings().service.admin_token or None)


def variable_name(model_name: str) -> str:
    """Prefect variable names allow lowercase letters, digits and underscores."""
    return "production_model_" + re.sub(r"[^a-z0-9_]", "_", model_name.lower())


def record_variable(pointer: ProductionPointer) -> str:
    """The Prefect variable naming the model in production (read by people and by other flows)."""
    name = variable_name(pointer.name)
    value = pointer.model_dump(include={"name", "version", "url", "deployed_at", "previous_version"})
    Variable.set(name, value, overwrite=True)
    return name


@task(name="record_current_model", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def record_current_model(pointer: ProductionPointer) -> None:
    name = record_variable(pointer)
    get_run_logger().info("Prefect variable %s = version %s", name, pointer.version)


@task(name="apply_deployments", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def apply_deployments(cron: str) -> None:
    """Create or update every deployment (the weekly monitor, retraining, each flow), via `prefect deploy`."""
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    for name, pool in apply_all(api_url, cron).items():
        get_run_logger().info("Deployment %s applied on work pool %s", name, pool)
    get_run_logger().info("monitor/monitor-weekly runs on the schedule %r", cron)


def apply_all_deployments(api_url: str | None, cron: str) -> dict[str, str]:
    """Every deployment, against ``api_url`` or, when None, the state folder's own Prefect database
    through one temporary server (each `prefect` command would otherwise start its own)."""
    if api_url:
        return apply_all(api_url, cron)
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=120)
    try:
        return apply_all(server.api_url, cron)
    finally:
        server.stop()
