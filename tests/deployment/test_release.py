"""Releasing a version records which key signed it; a malformed signature stops the release."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tasks.core.errors import IntegrityError
from tasks.core.pointer import read_pointer
from tasks.core.settings import get_settings, prepare_embedded_environment
from tasks.core.signing import generate_private_key, key_id
from tasks.core.storage import SIGNATURE, publish_version
from tasks.core.tracking import mlflow_client
from tasks.deployment.release import release_version


@pytest.fixture
def registry(state_dir: Path) -> MlflowClient:
    prepare_embedded_environment(get_settings())
    client = mlflow_client(get_settings())
    client.create_registered_model("demo")
    return client


def publish(storage: Path, version: str, signed: bool, tmp_path: Path, client: MlflowClient) -> str | None:
    """Publish and register a tiny version; returns the id of the key that signed it."""
    bundle = tmp_path / f"bundle-{version}"
    bundle.mkdir()
    for name in ("model.keras", "uae_encoder.keras", "metadata.yaml", "reference_features.parquet"):
        (bundle / name).write_text(f"{name} {version}\n")
    key = generate_private_key() if signed else None
    url = publish_version(bundle, str(storage), "demo", version, key)
    client.create_model_version("demo", url)
    return key_id(key.public_key()) if key else None


def test_release_records_the_signing_key_or_unsigned(registry: MlflowClient, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    signer = publish(storage, "1", True, tmp_path, registry)
    publish(storage, "2", False, tmp_path, registry)
    release_version(registry, str(storage), "demo", "1", "test", {})
    assert registry.get_model_version("demo", "1").tags["signing_key_id"] == signer
    release_version(registry, str(storage), "demo", "2", "test", {})
    assert registry.get_model_version("demo", "2").tags["signing_key_id"] == "unsigned"


def test_a_malformed_signature_stops_the_release_before_the_pointer_moves(
    registry: MlflowClient, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    for version in ("1", "2"):
        publish(storage, version, True, tmp_path, registry)
    release_version(registry, str(storage), "demo", "1", "test", {})
    (storage / "models" / "demo" / "2" / SIGNATURE).write_text("not a signature\n")
    with pytest.raises(IntegrityError, match="is malformed"):
        release_version(registry, str(storage), "demo", "2", "test", {})
    pointer = read_pointer(str(storage), "demo")
    assert pointer is not None and pointer.version == "1"
