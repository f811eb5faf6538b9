"""The train flow under a real Prefect API, on a tiny real dataset, with a real MLflow store."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from tasks.core.errors import DataValidationError
from tasks.core.settings import get_settings
from tasks.core.storage import verify_version
from tasks.core.tracking import mlflow_client
from tests.helpers.data import tiny_config

pytestmark = [pytest.mark.flow, pytest.mark.slow]


def test_train_flow_records_registers_and_publishes(prefect_api: None, state_dir: Path, tiny_repo: Path) -> None:
    from flows.train_flow import train_flow

    result = train_flow(
        config=tiny_config(tiny_repo, config="train_config.yaml"), config_file="configs/train_config.yaml"
    )
    settings = get_settings()

    client = mlflow_client(settings)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "3" and run.data.params["dataset.revision"] == "v2.0"
    assert run.data.tags["dataset.commit"] == result.dataset_commit
    assert [m.step for m in client.get_metric_history(result.run_id, "val_accuracy")] == [0, 1, 2]
    losses = [m.value for m in sorted(client.get_metric_history(result.run_id, "loss"), key=lambda m: m.step)]
    assert losses[-1] < 0.8 * losses[0], f"training loss did not fall: {losses}"
    assert run.data.metrics["test_accuracy"] > 0.45  # ten classes: chance is 0.10
    assert progress_artifacts()["property-table"] == 100.0  # the bar the Prefect UI shows
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"data_validation", "plots", "drift", "metadata.yaml"} <= artifacts
    reports = {a.path for a in client.list_artifacts(result.run_id, "data_validation")}
    assert "data_validation/train_test_validation.html" in reports

    version = client.get_model_version_by_alias("fashion-cnn", "challenger")
    assert str(version.version) == result.version == "1"
    loaded = mlflow.keras.load_model("models:/fashion-cnn@challenger")
    assert loaded.output_shape == (None, 10)

    verified = verify_version(settings.central_storage_url, "fashion-cnn", result.version)
    assert set(verified.files) == {
        "model.keras",
        "uae_encoder.keras",
        "reference_features.parquet",
        "metadata.yaml",
        "trust.npz",
        "shift_regression.npz",
        "model_card.md",
        "model_card.html",
    }
    folder = Path(result.storage_uri)
    metadata = yaml.safe_load((folder / "metadata.yaml").read_text())
    assert metadata["dataset"]["revision"] == "v2.0" and metadata["dataset"]["commit"] == result.dataset_commit
    assert metadata["version"] == "1" and len(metadata["class_names"]) == 10 and metadata["input"]["channels"] == 3
    assert len(metadata["code"]["commit"]) == 40 and "tensorflow-cpu" in metadata["packages"]
    # Calibrated on a share of the validation split that early stopping did not see.
    assert metadata["trust"]["alpha"] == 0.05 and result.metrics["calibration/rows"] > 0
    assert 0.05 < result.metrics["calibration/temperature"] < 20
    # The monitor's accuracy estimator, fitted on the calibration rows under synthetic shifts.
    assert result.metrics["estimator/windows"] == 60 and 0 < result.metrics["estimator/residual_95"] < 1
    # The model card, published with the version and in the MLflow run.
    card = (folder / "model_card.md").read_text()
    assert card.startswith("# Model card: fashion-cnn version 1") and "## Intended use" in card
    assert "revision `v2.0`" in card and "| brightness, low third |" in card and "## Quality gate" in card
    accuracy = re.search(r"accuracy (0\.\d{4}) \((0\.\d{4}) to (0\.\d{4})\)", card)
    assert accuracy is not None and float(accuracy[2]) < float(accuracy[1]) < float(accuracy[3])
    page = (folder / "model_card.html").read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page and "<table>" in page
    assert {a.path for a in client.list_artifacts(result.run_id, "model_card")} == {
        "model_card/model_card.md",
        "model_card/model_card.html",
    }
    reference = pd.read_parquet(folder / "reference_features.parquet")
    assert len(reference) == 40 and {"label", "prediction", "bbsd_9", "uae_7", "brightness", "sha256"} <= set(reference)
    assert reference[[f"bbsd_{i}" for i in range(10)]].sum(axis=1).round(4).eq(1.0).all()


def test_train_flow_stops_on_failed_validation_and_marks_run_failed(
    prefect_api: None, state_dir: Path, tiny_repo: Path
) -> None:
    from flows.train_flow import train_flow

    config = tiny_config(tiny_repo, "dataset.validation.min_samples_per_class=1000", config="train_config.yaml")
    with pytest.raises(DataValidationError, match="fewer than 1000"):
        train_flow(config=config, config_file="strict.yaml")
    client = mlflow_client(get_settings())
    runs = client.search_runs([client.get_experiment_by_name("image-classification").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not (state_dir / "storage" / "models").exists()


def progress_artifacts() -> dict[str, float]:
    """Key -> last progress (percent) of the Prefect progress artifacts."""
    from prefect import get_client

    with get_client(sync_client=True) as prefect:
        return {a.key: float(a.data) for a in prefect.read_latest_artifacts() if a.type == "progress" and a.key}
