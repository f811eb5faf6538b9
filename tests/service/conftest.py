"""Fixtures of the service tests: small real models, built and published the way the train flow does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import keras
import numpy as np
import pytest
import yaml

from configs.schema import REPO_ROOT, ModelConfig
from deployments.stack.servers import PostgresCluster, free_port
from tasks.core.bundle import METADATA_FILE, MODEL_FILE, REFERENCE_FILE, UAE_FILE
from tasks.core.image_properties import properties_table
from tasks.core.pointer import write_pointer
from tasks.core.preprocessing import InputSpec
from tasks.core.storage import publish_version
from tasks.data.dataset import class_names, read_manifest, select_split
from tasks.data.pipeline import evaluation_batches, image_dataset
from tasks.training.drift_reference import build_reference_features
from tasks.training.fit import compile_model
from tasks.training.models import build_classifier, build_uae

MODEL_NAME = "fashion-cnn"
SPEC = InputSpec(28, 28)


def build_bundle(folder: Path, data_dir: Path, seed: int) -> None:
    """A small classifier trained for one epoch on the tiny repository, with its UAE and metadata."""
    keras.utils.set_random_seed(seed)
    manifest = read_manifest(data_dir)
    names = class_names(manifest, "train")
    rows = select_split(manifest, "train", None, seed)
    model = build_classifier(ModelConfig(name=MODEL_NAME, filters=[8, 16], dense_units=32), len(names))
    compile_model(model, 1e-3)
    model.fit(evaluation_batches(image_dataset(data_dir, rows, names, SPEC), 32), epochs=1, verbose=0)
    folder.mkdir(parents=True)
    model.save(folder / MODEL_FILE)
    encoder = build_uae((28, 28), 8, seed)
    encoder.save(folder / UAE_FILE)
    held_out = select_split(manifest, "validation", None, seed)
    properties = properties_table(data_dir, held_out)
    features = build_reference_features(model, encoder, data_dir, held_out, properties, names, SPEC)
    features.to_parquet(folder / REFERENCE_FILE)
    metadata = {"name": MODEL_NAME, "class_names": names, "input": SPEC.as_dict(), "seed": seed}
    (folder / METADATA_FILE).write_text(yaml.safe_dump(metadata))


@pytest.fixture(scope="session")
def model_storage_template(tmp_path_factory: pytest.TempPathFactory, tiny_repo_template: tuple[Path, Path]) -> Path:
    """Central storage holding versions 1 and 2, production pointing at 1."""
    repo, _ = tiny_repo_template
    root = tmp_path_factory.mktemp("service-models")
    storage = root / "storage"
    for version, seed in (("1", 1), ("2", 2)):
        build_bundle(root / f"bundle-{version}", repo / "data", seed)
        publish_version(root / f"bundle-{version}", str(storage), MODEL_NAME, version)
    write_pointer(str(storage), MODEL_NAME, "1", "test fixture", {})
    return storage


@pytest.fixture
def model_storage(model_storage_template: Path, tmp_path: Path) -> Path:
    """A private copy of the storage, free to change."""
    storage = tmp_path / "storage"
    shutil.copytree(model_storage_template, storage)
    return storage


@pytest.fixture
def sample_images(tiny_repo_template: tuple[Path, Path]) -> list[Path]:
    repo, _ = tiny_repo_template
    manifest = read_manifest(repo / "data")
    return [repo / "data" / p for p in manifest.loc[manifest["split"] == "test", "path"].head(8)]


@pytest.fixture
def service_env(model_storage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment of a service that serves ``model_storage`` and logs to a private SQLite file."""
    from services.dl_service.settings import get_service_settings

    from tasks.core.settings import get_settings

    env = {
        "MLOPS_HOME": str(tmp_path / "state"),
        "MLOPS_STORAGE_URL": str(model_storage),
        "MLOPS_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'predictions.db'}",
        "MLOPS_SERVICE_ADMIN_TOKEN": "test-token-1234",
        "MLOPS_SERVICE_POINTER_POLL_SECONDS": "0.5",
        "MLOPS_SERVICE_LOG_FLUSH_SECONDS": "0.05",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    get_service_settings.cache_clear()
    yield env
    get_settings.cache_clear()
    get_service_settings.cache_clear()


def in_process_probabilities(storage: Path, version: str, image: Path) -> np.ndarray:
    """What the published model says about an image, without the service."""
    from tasks.core.preprocessing import preprocess_image

    model = keras.models.load_model(storage / "models" / MODEL_NAME / version / MODEL_FILE)
    pixels = preprocess_image(image.read_bytes(), SPEC).numpy()[None].astype(np.float32)
    return np.asarray(model(pixels, training=False))[0]


@contextmanager
def running_service(env: dict[str, str], log_path: Path, workers: int = 1) -> Iterator[str]:
    """uvicorn serving dl_service on a free loopback port; yields the base URL once ready."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "services.dl_service.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            ready_in_a_row = 0
            while ready_in_a_row < 2 * workers:  # with several workers, each must answer
                assert process.poll() is None, log_path.read_text()
                try:
                    ready_in_a_row = (
                        ready_in_a_row + 1 if httpx.get(f"{url}/ready", timeout=2).status_code == 200 else 0
                    )
                except httpx.HTTPError:
                    ready_in_a_row = 0
                assert time.monotonic() < deadline, "the service did not become ready"
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def wait_until(condition: Callable[[], object], what: str, seconds: float = 60) -> None:
    """Poll until ``condition()`` is true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def server(service_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with running_service(service_env, tmp_path / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster]:
    """One cluster per session, in a folder the postgres user can reach (pytest's are private to root)."""
    server = PostgresCluster(Path(tempfile.mkdtemp(prefix="pg-")), free_port())
    server.init()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.folder, ignore_errors=True)
