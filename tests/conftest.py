"""Shared fixtures: a private state folder per test, a tiny real Fashion-MNIST repository, small real
models in central storage, a service environment, a Prefect test API and a PostgreSQL server.

The tiny repository is built once per session from Debian's real package, in a temporary
folder, by the same builder users run; nothing depends on state left by an earlier run.
A test is marked by what it needs, from the fixtures it uses (``apt``, ``postgres``, ``flow``),
so ``make test-fast`` can leave out everything that needs a package, a server or a browser.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from deployments.stack.servers import PostgresCluster, free_port
from tasks.core.pointer import write_pointer
from tasks.core.settings import get_settings
from tasks.core.storage import publish_version
from tasks.data.dataset import read_manifest
from tasks.data.demo import build_dataset_repository, fetch_debian_package
from tests.helpers.data import TINY_SIZES
from tests.helpers.models import MODEL_NAME, build_bundle

# What a fixture needs from the machine, as the marker that lets a run leave it out.
FIXTURE_MARKERS = {"fashion_source": "apt", "postgres_server": "postgres", "prefect_api": "flow"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh MLOPS_HOME for one test; environment changes made by the code under test are undone."""
    saved = dict(os.environ)
    home = tmp_path / "state"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def fashion_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The idx files of Debian's dataset-fashion-mnist package, fetched once per session."""
    return fetch_debian_package(tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="session")
def tiny_repo_template(tmp_path_factory: pytest.TempPathFactory, fashion_source: Path) -> tuple[Path, Path]:
    """A tiny dataset repository (v1.0: 100 train images, v2.0: 200) and its DVC remote."""
    root = tmp_path_factory.mktemp("tiny")
    repo, remote = root / "fashion-mnist", root / "dvc-remote"
    build_dataset_repository(repo, remote, fashion_source, TINY_SIZES)
    return repo, remote


@pytest.fixture
def tiny_repo(tiny_repo_template: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private clone of the tiny repository (git clone + dvc pull), free to modify."""
    from tasks.data.repository import run_dvc, run_git

    template, _ = tiny_repo_template
    clone, registry = tmp_path / "fashion-mnist", tmp_path / "dataset-registry.git"
    run_git(tmp_path, "clone", "--quiet", str(template), str(clone))
    run_dvc(clone, "pull", "--quiet")
    # Its own registry to push new revisions to: the template stays as every other test finds it.
    run_git(tmp_path, "clone", "--quiet", "--bare", str(template), str(registry))
    run_git(clone, "remote", "set-url", "origin", str(registry))
    return clone


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes 15-20 s to start)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


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
    """Environment of a service that serves ``model_storage`` and logs to a private SQLite file.

    The pointer poll is an hour, so only a test's own reload request changes the served version;
    a test of the watcher sets a short poll itself.
    """
    env = {
        "MLOPS_HOME": str(tmp_path / "state"),
        "MLOPS_STORAGE_URL": str(model_storage),
        "MLOPS_PREDICTION_DB_URL": f"sqlite:///{tmp_path / 'predictions.db'}",
        "MLOPS_SERVICE_ADMIN_TOKEN": "test-token-1234",
        "MLOPS_SERVICE_POINTER_POLL_SECONDS": "3600",
        "MLOPS_SERVICE_LOG_FLUSH_SECONDS": "0.05",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster]:
    """One cluster per session, in a folder the postgres user can reach (pytest's are private to root)."""
    server = PostgresCluster(Path(tempfile.mkdtemp(prefix="pg-")), free_port())
    server.init()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def fresh_database(postgres_server: PostgresCluster) -> str:
    """The session's PostgreSQL without the prediction log's tables: the service creates them anew."""
    engine = create_engine(postgres_server.url)
    with engine.begin() as connection:
        connection.execute(
            text("DROP TABLE IF EXISTS reviews, review_items, feedback, shadow_predictions, predictions")
        )
    engine.dispose()
    return postgres_server.url
