"""`python -m tasks.ops` against a real MLflow registry, real central storage and a real Prefect API."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.pointer import read_pointer
from tasks.core.settings import get_settings
from tasks.core.tracking import mlflow_client
from tasks.ops.cli import main as ops
from tests.helpers.models import MODEL_NAME


@pytest.fixture
def registered(prefect_api: None, state_dir: Path, model_storage: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Versions 1 and 2 published and registered, production on version 1 with no earlier version."""
    monkeypatch.setenv("MLOPS_STORAGE_URL", str(model_storage))
    get_settings.cache_clear()
    client = mlflow_client(get_settings())
    client.create_registered_model(MODEL_NAME)
    for version in ("1", "2"):
        client.create_model_version(MODEL_NAME, str(model_storage / "models" / MODEL_NAME / version))
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")
    return model_storage


def champion() -> str:
    return str(mlflow_client(get_settings()).get_model_version_by_alias(MODEL_NAME, "champion").version)


def test_rollback_with_no_previous_version_says_what_to_do_and_changes_nothing(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = read_pointer(str(registered), MODEL_NAME)
    assert ops(["rollback"]) == 2
    assert "no previous production version to roll back to; use --to VERSION" in capsys.readouterr().err
    assert read_pointer(str(registered), MODEL_NAME) == before and champion() == "1"


def test_promote_then_rollback_moves_pointer_alias_and_variable_together(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.variables import Variable

    assert ops(["promote", "2"]) == 0
    pointer = read_pointer(str(registered), MODEL_NAME)
    assert pointer is not None and (pointer.version, pointer.previous_version) == ("2", "1")
    assert champion() == "2" and Variable.get("production_model_fashion_cnn")["version"] == "2"
    assert "promote by operator" in pointer.reason

    assert ops(["rollback"]) == 0
    pointer = read_pointer(str(registered), MODEL_NAME)
    assert pointer is not None and (pointer.version, pointer.previous_version) == ("1", "2")
    assert champion() == "1" and Variable.get("production_model_fashion_cnn")["version"] == "1"
    assert "fashion-cnn version 1 is in production (previous: 2)" in capsys.readouterr().out


def test_promoting_an_unregistered_version_fails_and_changes_nothing(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = read_pointer(str(registered), MODEL_NAME)
    assert ops(["promote", "9"]) == 2
    assert "version 9 is not registered" in capsys.readouterr().err
    assert read_pointer(str(registered), MODEL_NAME) == before and champion() == "1"
