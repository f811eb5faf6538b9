"""The full flow under a real Prefect API: gate, promotion, caching, rollback, on a tiny real dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
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
TINY = [LEARNED, "deploy.margin=1.0", "deploy.monitor_cron=15 4 * * 2"]
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
    assert str(registry().get_model_version_by_alias("fashion-cnn", "champion").version) == "1"
    assert Variable.get("production_model_fashion_cnn")["version"] == "1"
    with get_client(sync_client=True) as prefect:
        deployment = prefect.read_deployment_by_name("monitor/monitor-weekly")
        retraining = prefect.read_deployment_by_name("full/full-flow")  # what the monitor runs on drift
    assert (retraining.work_pool_name, retraining.schedules) == ("training", [])
    assert retraining.parameters == {"config_file": "configs/full_flow_config.yaml"}
    assert deployment.work_pool_name == "monitor"
    assert [s.schedule.cron for s in deployment.schedules] == ["15 4 * * 2"]
    assert deployment.parameters == {"config_file": "configs/monitor_config.yaml"}
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


def test_rollback_restores_alias_and_pointer(
    flow_state: Path, tiny_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.full_flow import full_flow
    from tasks.ops.cli import main as ops

    full_flow(config=full_config(tiny_repo), config_file="full.yaml")
    second = full_flow(config=full_config(tiny_repo, "train.seed=7"), config_file="full.yaml")
    assert second.deploy.promoted and second.deploy.champion_before == "1" and second.deploy.champion_after == "2"

    config_file = tmp_path / "ops.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "flow": "full",
                "model": {"name": "fashion-cnn"},
                "dataset": {"revision": "v2.0", "path": str(tiny_repo)},
            }
        )
    )
    assert ops(["--config", str(config_file), "rollback"]) == 0
    pointer = read_pointer(get_settings().central_storage_url, "fashion-cnn")
    assert pointer is not None and pointer.version == "1" and pointer.previous_version == "2"
    assert str(registry().get_model_version_by_alias("fashion-cnn", "champion").version) == "1"
    capsys.readouterr()
    assert ops(["--config", str(config_file), "status"]) == 0
    status = capsys.readouterr().out
    assert "version     1 (registry alias champion -> 1)" in status and "previous    2" in status
    assert "rollback by operator" in status and "v2.0" in status
    assert ops(["--config", str(config_file), "models"]) == 0
    models = capsys.readouterr().out.splitlines()
    assert models[1].split()[:3] == ["1", "champion", "yes"] and models[2].split()[:3] == ["2", "challenger", "yes"]
    assert ops(["--config", str(config_file), "promote", "9"]) == 2  # an unknown version changes nothing
    assert read_pointer(get_settings().central_storage_url, "fashion-cnn") == pointer
