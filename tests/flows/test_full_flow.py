"""The full flow under a real Prefect API: gate, promotion, caching, rollback, on a tiny real dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from configs.schema import FlowConfig
from tasks.core.errors import QualityGateError
from tasks.core.pointer import read_pointer
from tasks.core.settings import get_settings
from tasks.core.tracking import mlflow_client
from tests.helpers.data import tiny_config

pytestmark = [pytest.mark.flow, pytest.mark.slow]

# A gate a model that learned clears (three epochs on the tiny data reach 0.56-0.66 accuracy) and an
# untrained one does not (0.10-0.20).
LEARNED = "evaluate.thresholds={accuracy: [0.45, lower], ece: [0.9, upper]}"
TINY = [LEARNED, "deploy.margin=1.0", "deploy.slice_margin=1.0", "deploy.monitor_cron=15 4 * * 2"]
UNTRAINED = "train.learning_rate=1e-9"


def full_config(repo: Path, *overrides: str) -> FlowConfig:
    return tiny_config(repo, *TINY, *overrides)


def registry() -> MlflowClient:
    return mlflow_client(get_settings())


def test_full_flow_promotes_reuses_cache_and_gate_refuses_weak_model(flow_state: Path, tiny_repo: Path) -> None:
    from prefect import get_client
    from prefect.variables import Variable

    from flows.full_flow import full_flow

    first = full_flow(config=full_config(tiny_repo), config_file="full.yaml")
    assert first.deploy.promoted and first.deploy.champion_after == "1" and not first.reused_training
    pointer = read_pointer(get_settings().central_storage_url, "fashion-cnn")
    assert pointer is not None and pointer.version == "1"
    released = registry().get_model_version("fashion-cnn", "1").tags["sha256sums_digest"]
    assert released == pointer.sums_sha256 and len(released) == 64  # the registry and the pointer agree
    assert str(registry().get_model_version_by_alias("fashion-cnn", "champion").version) == "1"
    assert Variable.get("production_model_fashion_cnn")["version"] == "1"
    with get_client(sync_client=True) as prefect:
        deployment = prefect.read_deployment_by_name("monitor/monitor-weekly")
        retraining = prefect.read_deployment_by_name("full/full-flow")  # what the monitor runs on drift
    assert (retraining.work_pool_name, retraining.schedules) == ("training", [])
    assert retraining.parameters == {"config_file": "configs/full_flow_config.yaml", "overrides": []}
    assert deployment.work_pool_name == "monitor"
    assert [s.schedule.cron for s in deployment.schedules] == ["15 4 * * 2"]
    assert deployment.parameters == {"config_file": "configs/monitor_config.yaml", "overrides": []}
    plots = {a.path for a in registry().list_artifacts(first.evaluation.run_id, "evaluation/v1")}
    assert {
        f"evaluation/v1/{n}.png" for n in ("confusion_matrix", "reliability_diagram", "worst_misclassified")
    } <= plots
    assert {"accuracy", "macro_auc", "ece", "recall/coat", "precision/bag"} <= set(first.evaluation.metrics)

    second = full_flow(config=full_config(tiny_repo), config_file="full.yaml")
    assert second.reused_training and second.train.version == "1"
    assert not second.deploy.promoted and "already the champion" in second.deploy.reason
    assert len(registry().search_model_versions("name='fashion-cnn'")) == 1
    assert read_pointer(get_settings().central_storage_url, "fashion-cnn") == pointer  # untouched

    untrained = full_config(
        tiny_repo, UNTRAINED, "evaluate.thresholds={accuracy: [0.45, lower], recall/coat: [0.5, lower]}"
    )
    with pytest.raises(QualityGateError) as refused:
        full_flow(config=untrained, config_file="untrained.yaml")
    assert "below the lower bound 0.45" in str(refused.value) and "recall/coat = " in str(refused.value)
    assert str(registry().get_model_version_by_alias("fashion-cnn", "champion").version) == "1"
    assert read_pointer(get_settings().central_storage_url, "fashion-cnn") == pointer

    async def summary() -> str:
        async with get_client() as client:
            artifact = await client.read_latest_artifacts()
            return " ".join(str(a.data) for a in artifact if a.key == "full-flow-summary")

    import asyncio

    assert "quality gate**: FAILED" in asyncio.run(summary())
