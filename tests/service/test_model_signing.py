"""The service loads only versions signed by its key: a reload to an unsigned or wrongly signed version is
refused with 409 while the current model keeps serving, in production mode and in development with a key."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from services.dl_service.app import create_app
from tasks.core.pointer import write_pointer
from tasks.core.settings import Settings
from tasks.core.signing import generate_private_key, public_key_text, sign_checksums
from tasks.core.storage import CHECKSUMS, SIGNATURE, publish_version
from tests.helpers.models import MODEL_NAME

TOKEN = "x7Qk2-Lm9pZr4VtB8nWc3YfH6sJd1GaE0uKo"  # production refuses the short token of service_env
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def signing_key() -> Ed25519PrivateKey:
    return generate_private_key()


def version_folder(storage: Path, version: str) -> Path:
    return storage / "models" / MODEL_NAME / version


def sign_in_place(folder: Path, key: Ed25519PrivateKey) -> None:
    """The signature publishing with this key would have written."""
    (folder / SIGNATURE).write_text(sign_checksums(key, (folder / CHECKSUMS).read_bytes()))


@pytest.fixture
def signed_storage(model_storage: Path, signing_key: Ed25519PrivateKey) -> Path:
    """``model_storage`` with versions 1 (in production) and 2 signed by ``signing_key``."""
    for version in ("1", "2"):
        sign_in_place(version_folder(model_storage, version), signing_key)
    return model_storage


def verifying_app(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, key: Ed25519PrivateKey, mode: str
) -> TestClient:
    monkeypatch.setenv("MLOPS_SERVICE_MODE", mode)
    monkeypatch.setenv("MLOPS_SERVICE_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("MLOPS_SERVICE_MODEL_VERIFY_KEY", public_key_text(key.public_key()))
    return TestClient(create_app(Settings()))


@pytest.fixture
def production(
    service_env: dict[str, str], signed_storage: Path, signing_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    with verifying_app(service_env, monkeypatch, signing_key, "production") as client:
        yield client


def publish_copy_of_version_2(storage: Path, tmp_path: Path, key: Ed25519PrivateKey | None) -> None:
    """Version 3: version 2's files, published as the train flow does (signed with ``key``, if given)."""
    bundle = tmp_path / "bundle-3"
    shutil.copytree(version_folder(storage, "2"), bundle, ignore=shutil.ignore_patterns(CHECKSUMS, SIGNATURE))
    publish_version(bundle, str(storage), MODEL_NAME, "3", key)
    write_pointer(str(storage), MODEL_NAME, "3", "test", {})


def rewritten_by_hand(storage: Path, tmp_path: Path) -> None:
    """Someone who can write storage but holds no key: a new model in version 2, SHA256SUMS and pointer to match."""
    folder = version_folder(storage, "2")
    (folder / "model.keras").write_bytes((folder / "uae_encoder.keras").read_bytes())
    digest = hashlib.sha256((folder / "model.keras").read_bytes()).hexdigest()
    sums = re.sub(r"^[0-9a-f]{64}(?=  model\.keras$)", digest, (folder / CHECKSUMS).read_text(), flags=re.M)
    (folder / CHECKSUMS).write_text(sums)
    pointer_path = storage / "models" / MODEL_NAME / "production.json"
    pointer = json.loads(pointer_path.read_text())
    pointer_path.write_text(json.dumps({**pointer, "version": "2", "sums_sha256": None}))  # no released digest


REFUSED: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "unsigned": (lambda storage, tmp: publish_copy_of_version_2(storage, tmp, None), "the version is unsigned"),
    "another-key": (
        lambda storage, tmp: publish_copy_of_version_2(storage, tmp, generate_private_key()),
        "not by the configured key",
    ),
    "rewritten-by-hand": (rewritten_by_hand, "bad signature"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_production_refuses_a_version_not_signed_by_its_key_and_keeps_serving(
    production: TestClient,
    signed_storage: Path,
    tmp_path: Path,
    sample_images: list[Path],
    case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    change, reason = REFUSED[case]
    change(signed_storage, tmp_path)
    response = production.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 409 and reason in response.json()["detail"], response.json()
    assert production.get("/ready").json()["model_version"] == "1"
    predicted = production.post("/predict", files={"file": ("x.png", sample_images[0].read_bytes(), "image/png")})
    assert predicted.status_code == 200 and predicted.json()["model_version"] == "1"
    assert any(reason in record.getMessage() for record in caplog.records)  # and the operator is told


def test_production_loads_a_version_signed_by_its_key(production: TestClient, signed_storage: Path) -> None:
    assert production.get("/ready").json()["model_version"] == "1"
    write_pointer(str(signed_storage), MODEL_NAME, "2", "test", {})
    response = production.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200 and response.json()["version"] == "2", response.json()
    assert production.get("/ready").json()["model_version"] == "2"


def test_production_serves_nothing_from_unsigned_storage(
    service_env: dict[str, str], model_storage: Path, signing_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    with verifying_app(service_env, monkeypatch, signing_key, "production") as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "the version is unsigned" in ready.json()["detail"], ready.json()


def test_development_with_a_key_verifies_like_production(
    service_env: dict[str, str],
    signed_storage: Path,
    signing_key: Ed25519PrivateKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with verifying_app(service_env, monkeypatch, signing_key, "development") as client:
        assert client.get("/ready").json()["model_version"] == "1"
        publish_copy_of_version_2(signed_storage, tmp_path, None)
        response = client.post("/admin/reload", headers=ADMIN)
        assert response.status_code == 409 and "the version is unsigned" in response.json()["detail"]
        assert client.get("/ready").json()["model_version"] == "1"


def test_development_without_a_key_loads_unsigned_versions_with_a_warning(
    service_env: dict[str, str], model_storage: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(Settings())) as client:
        assert client.get("/ready").json()["model_version"] == "1"
    assert any("without checking its signature" in record.getMessage() for record in caplog.records)
