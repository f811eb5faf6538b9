"""One run lifecycle: a flow's MLflow run ends FINISHED, or FAILED when anything inside it raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.schema import FlowConfig
from tasks.core.settings import REPO_ROOT, get_settings
from tasks.core.tracking import mlflow_client, tracking_run
from tests.helpers.data import tiny_config


@pytest.fixture
def config(state_dir: Path) -> FlowConfig:
    return tiny_config(REPO_ROOT / "datasets" / "absent", "train.experiment=lifecycle")


def test_run_that_completes_ends_finished_with_the_config_as_params(config: FlowConfig) -> None:
    with tracking_run(config, "train", "configs/train_config.yaml") as run:
        run.log_metrics({"accuracy": 0.5}, step=2)
        (run.workdir / "scratch.txt").write_text("only while the run lasts")
    assert not run.workdir.exists()  # everything that matters is in MLflow or central storage
    recorded = mlflow_client(get_settings()).get_run(run.run_id)
    assert recorded.info.status == "FINISHED"
    assert recorded.data.params["train.epochs"] == "3" and recorded.data.params["model.name"] == "fashion-cnn"
    assert recorded.data.tags["flow"] == "train" and recorded.data.tags["mlflow.runName"] == "train-fashion-cnn"
    assert recorded.data.tags["config_file"] == "configs/train_config.yaml"
    assert recorded.data.metrics["accuracy"] == 0.5


def test_run_that_raises_ends_failed_and_the_error_reaches_the_caller(config: FlowConfig) -> None:
    with pytest.raises(RuntimeError, match="disk full"), tracking_run(config, "evaluate") as run:
        (run.workdir / "partial.txt").write_text("what the failure left")
        raise RuntimeError("disk full")
    assert mlflow_client(get_settings()).get_run(run.run_id).info.status == "FAILED"
    assert (run.workdir / "partial.txt").exists()  # kept for whoever looks into the failure


def test_runs_of_one_experiment_share_it_with_an_absolute_artifact_location(config: FlowConfig) -> None:
    with tracking_run(config, "train") as first, tracking_run(config, "deploy") as second:
        assert first.experiment_id == second.experiment_id
    experiment = mlflow_client(get_settings()).get_experiment(first.experiment_id)
    assert experiment.name == "lifecycle" and experiment.artifact_location.startswith("file:///")
