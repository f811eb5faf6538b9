"""The evaluate and deploy flows run on their own, after a train flow, as an operator would run them."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tasks.core.audit import read_history, verify_chain
from tasks.core.errors import MlopsError, QualityGateError
from tasks.core.pointer import read_pointer
from tasks.core.settings import get_settings
from tasks.core.tracking import mlflow_client
from tests.helpers.data import tiny_config

pytestmark = pytest.mark.slow

GATE = "evaluate.thresholds={accuracy: [0.45, lower]}"


def registry() -> MlflowClient:
    return mlflow_client(get_settings())


def test_evaluate_and_deploy_flows_alone(flow_state: Path, tiny_repo: Path) -> None:
    from flows.deploy_flow import deploy_flow
    from flows.eval_flow import eval_flow
    from flows.train_flow import train_flow

    with pytest.raises(MlopsError, match="has no 'challenger' version; run the train flow"):
        eval_flow(config=tiny_config(tiny_repo, GATE, config="eval_config.yaml"))

    train_flow(config=tiny_config(tiny_repo, config="train_config.yaml"))
    evaluated = eval_flow(config=tiny_config(tiny_repo, GATE, config="eval_config.yaml"))
    assert evaluated.version == "1" and evaluated.rows == 100 and evaluated.metrics["accuracy"] > 0.45
    # The trust layer measured on the test split: coverage of the sets (overall and per class), OOD rate.
    assert {"set_coverage", "mean_set_size", "ece_uncalibrated", "ood_rate", "set_coverage/coat"} <= set(
        evaluated.metrics
    )
    assert 1 <= evaluated.metrics["mean_set_size"] <= 10
    deployed = deploy_flow(config=tiny_config(tiny_repo, GATE, config="deploy_config.yaml"))
    assert deployed.promoted and deployed.champion_before is None and deployed.champion_after == "1"
    assert deployed.challenger_metrics["accuracy"] == pytest.approx(evaluated.metrics["accuracy"])

    # A second model, trained without data validation, judged by deploy alone against the champion.
    second = train_flow(
        config=tiny_config(tiny_repo, "train.seed=7", "dataset.validation.enabled=false", config="train_config.yaml")
    )
    run = registry().get_run(second.run_id)
    assert run.data.tags["data_validation.enabled"] == "false"
    assert "data_validation" not in {a.path for a in registry().list_artifacts(second.run_id)}
    strict = tiny_config(
        tiny_repo,
        "evaluate.thresholds={accuracy: [0.99, lower], set_coverage: [1.0, lower]}",
        config="eval_config.yaml",
    )
    with pytest.raises(QualityGateError, match="version 2 failed the quality gate") as refused:
        eval_flow(config=strict)
    assert "set_coverage" in str(refused.value) or evaluated.metrics["set_coverage"] == 1.0
    failed = registry().search_runs(
        [run.info.experiment_id], "tags.flow = 'evaluate'", order_by=["attributes.start_time DESC"]
    )[0]
    assert failed.info.status == "FAILED"
    kept_out = deploy_flow(
        config=tiny_config(tiny_repo, "evaluate.thresholds={accuracy: [0.99, lower]}", config="deploy_config.yaml")
    )
    assert not kept_out.promoted and "failed the quality gate" in kept_out.reason
    assert kept_out.champion_metrics is not None and kept_out.champion_after == "1"
    # The reviewer's figure: champion next to challenger, in the deploy run.
    assert kept_out.comparison_figure == "comparison/champion_vs_challenger.png"
    logged = {a.path for a in registry().list_artifacts(kept_out.run_id, "comparison")}
    assert logged == {"comparison/champion_vs_challenger.png"}
    pointer = read_pointer(get_settings().central_storage_url, "fashion-cnn")
    assert pointer is not None and pointer.version == "1"

    # Past the gate, the shipped rule: a paired non-inferiority test on the same 100 images, overall and
    # per slice, every interval recorded. Slices of fewer than 30 rows (each class here) are not judged.
    judged = deploy_flow(config=tiny_config(tiny_repo, "evaluate.thresholds={}", config="deploy_config.yaml"))
    evidence = judged.non_inferiority
    assert evidence is not None and judged.promoted == evidence["passed"]
    overall = evidence["overall"]
    assert overall["rows"] == 100 and overall["lower_bound"] < overall["difference"] and overall["margin"] == 0.005
    slices = {s["scope"]: s for s in evidence["slices"]}
    assert not slices["class coat"]["judged"] and slices["brightness low third"]["judged"]
    assert slices["brightness low third"]["rows"] in (33, 34)
    assert ("non-inferior to version 1" if judged.promoted else "not shown non-inferior to version 1") in judged.reason
    logged = {a.path for a in registry().list_artifacts(judged.run_id, "gate")}
    assert logged == {"gate/non_inferiority.json"}

    # Every decision is in the audit trail: who (the deploy flow run), why, with the intervals.
    trail = read_history(get_settings().central_storage_url, "fashion-cnn")
    last = "promotion" if judged.promoted else "refused"
    assert [(e.event, e.version) for e in trail] == [("promotion", "1"), ("refused", "2"), (last, "2")]
    assert all(e.actor.startswith("flow run ") for e in trail) and "failed the quality gate" in trail[1].reason
    assert trail[2].evidence == evidence and trail[2].provenance["data_revision"] == "v2.0"
    assert verify_chain(get_settings().central_storage_url, "fashion-cnn") == []
