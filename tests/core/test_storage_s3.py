"""Central storage on an S3 API (a real server over HTTP): publishing, verification, the production
pointer and the service's cached copy, on a store that has no rename."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3fs
from fastapi.testclient import TestClient

from services.dl_service.app import create_app
from tasks.core.bundle import fetch_bundle
from tasks.core.errors import IntegrityError, PublishError
from tasks.core.pointer import read_pointer, write_pointer
from tasks.core.settings import Settings
from tasks.core.storage import CHECKSUMS, list_versions, publish_version, verify_version
from tests.helpers.models import MODEL_NAME
from tests.helpers.s3 import CREDENTIALS, s3_server


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_server(tmp_path_factory.mktemp("s3") / "server.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3_storage(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the storage URL inside it. botocore reads the endpoint from the environment."""
    for key, value in {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    bucket = f"central-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(bucket)
    return f"s3://{bucket}/storage"


def test_a_version_published_to_s3_verifies_and_is_immutable(bundle: Path, s3_storage: str) -> None:
    url = publish_version(bundle, s3_storage, "demo", "1")
    assert url == f"{s3_storage}/models/demo/1"
    assert list_versions(s3_storage, "demo") == ["1"]
    assert set(verify_version(s3_storage, "demo", "1").files) == {p.name for p in bundle.iterdir()}
    with pytest.raises(PublishError, match="already exists; versions are immutable"):
        publish_version(bundle, s3_storage, "demo", "1")
    fs = s3fs.S3FileSystem()
    assert not fs.exists(f"{s3_storage.removeprefix('s3://')}/models/demo/.staging/") or not fs.ls(
        f"{s3_storage.removeprefix('s3://')}/models/demo/.staging/"
    )


def test_a_version_whose_publisher_stopped_midway_is_never_used(bundle: Path, s3_storage: str) -> None:
    """With no rename, files land one by one and SHA256SUMS last: until it is there the version does not exist."""
    publish_version(bundle, s3_storage, "demo", "1")
    fs = s3fs.S3FileSystem()
    root = s3_storage.removeprefix("s3://") + "/models/demo"
    for path in fs.find(f"{root}/1"):
        if not path.endswith(f"/{CHECKSUMS}"):
            fs.copy(path, path.replace(f"{root}/1/", f"{root}/2/"))  # everything but the checksum list
    assert list_versions(s3_storage, "demo") == ["1"]
    with pytest.raises(IntegrityError):
        verify_version(s3_storage, "demo", "2")
    with pytest.raises(IntegrityError):
        write_pointer(s3_storage, "demo", "2", "must refuse", {})


def test_readers_see_the_old_pointer_or_the_new_one_never_a_mix(bundle: Path, s3_storage: str) -> None:
    for version in ("1", "2"):
        publish_version(bundle, s3_storage, "demo", version)
    write_pointer(s3_storage, "demo", "1", "first", {})
    seen: list[str] = []
    stop = threading.Event()

    def read_continuously() -> None:
        while not stop.is_set():
            pointer = read_pointer(s3_storage, "demo")
            assert pointer is not None
            seen.append(pointer.version)

    thread = threading.Thread(target=read_continuously)
    thread.start()
    try:
        for n in range(20):
            write_pointer(s3_storage, "demo", "2" if n % 2 == 0 else "1", "x" * (n * 50), {"accuracy": 0.9})
    finally:
        stop.set()
        thread.join(timeout=30)
    assert seen and set(seen) <= {"1", "2"}  # every read parsed and validated whole
    final = read_pointer(s3_storage, "demo")
    assert final is not None and final.version == "1" and final.previous_version == "2"


def test_a_pointer_another_process_wrote_is_read_as_it_is_now(bundle: Path, s3_storage: str) -> None:
    """The service's client caches listings and sizes; the deploy flow writes from another container."""
    for version in ("1", "2"):
        publish_version(bundle, s3_storage, "demo", version)
    write_pointer(s3_storage, "demo", "1", "short", {})
    ours = s3fs.S3FileSystem()
    ours.ls(s3_storage.removeprefix("s3://") + "/models/demo")  # the listing, sizes included, is now cached
    assert read_pointer(s3_storage, "demo").version == "1"  # type: ignore[union-attr]
    elsewhere = s3fs.S3FileSystem(skip_instance_cache=True)  # another process's client
    longer = {"version": "2", "reason": "a much longer reason " * 20}
    root = s3_storage.removeprefix("s3://") + "/models/demo"
    written = {**json.loads(ours.cat_file(f"{root}/production.json")), **longer, "previous_version": "1"}
    written["sums_sha256"] = hashlib.sha256(ours.cat_file(f"{root}/2/{CHECKSUMS}")).hexdigest()
    elsewhere.pipe(f"{root}/production.json", json.dumps(written).encode())
    pointer = read_pointer(s3_storage, "demo")
    assert pointer is not None and pointer.version == "2" and pointer.reason == longer["reason"]


def test_a_bundle_from_s3_is_verified_cached_and_a_tampered_one_refused(
    bundle: Path, s3_storage: str, tmp_path: Path
) -> None:
    publish_version(bundle, s3_storage, "demo", "1")
    cache = tmp_path / "cache"
    first = fetch_bundle(s3_storage, "demo", "1", cache)
    cached = first.folder / "model.keras"
    assert cached.is_relative_to(cache) and cached.read_bytes() == b"weights" * 1000
    cached.write_bytes(b"modified in the cache")
    assert (fetch_bundle(s3_storage, "demo", "1", cache).folder / "model.keras").read_bytes() == b"weights" * 1000
    s3fs.S3FileSystem().pipe(f"{s3_storage.removeprefix('s3://')}/models/demo/1/model.keras", b"tampered in storage")
    shutil.rmtree(cache)
    with pytest.raises(IntegrityError, match=r"model\.keras"):
        fetch_bundle(s3_storage, "demo", "1", cache)


def test_the_service_serves_and_reloads_from_s3(
    model_storage_template: Path, s3_storage: str, service_env: dict[str, str], sample_images: list[Path]
) -> None:
    fs = s3fs.S3FileSystem()
    fs.put(str(model_storage_template), s3_storage.removeprefix("s3://"), recursive=True)
    settings = Settings(storage_url=s3_storage)
    with TestClient(create_app(settings)) as client:
        image = sample_images[0].read_bytes()
        response = client.post("/predict", files={"file": ("x.png", image, "image/png")})
        assert response.status_code == 200 and response.json()["model_version"] == "1"
        write_pointer(s3_storage, MODEL_NAME, "2", "deploy", {})
        client.app.state.manager.refresh()  # type: ignore[attr-defined]
        response = client.post("/predict", files={"file": ("x.png", image, "image/png")})
        assert response.json()["model_version"] == "2"
