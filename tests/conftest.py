"""Shared fixtures: a private state folder per test, and a tiny real Fashion-MNIST repository.

The tiny repository is built once per session from Debian's real package, in a temporary
folder, by the same builder users run; nothing depends on state left by an earlier run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.core.settings import get_settings
from tasks.data.demo import SplitSizes, build_dataset_repository, fetch_debian_package

TINY_SIZES = SplitSizes(train_v1=100, train_v2=200, validation=60, test=100)
# Settings that make a real flow run take seconds on the tiny repository.
TINY_TRAINING = [
    "train.epochs=1",
    "train.batch_size=32",
    "train.drift.reference_rows=40",
    "train.drift.uae_dim=8",
    "dataset.validation.max_property_drift=0.5",
    "dataset.validation.max_label_drift=0.5",
]


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
    clone = tmp_path / "fashion-mnist"
    run_git(tmp_path, "clone", "--quiet", str(template), str(clone))
    run_dvc(clone, "pull", "--quiet")
    return clone


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes 15-20 s to start)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
