"""The training cache key: an edit to what training runs retrains; an edit anywhere else keeps the cache hit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.core.settings import REPO_ROOT
from tasks.training.fingerprint import code_fingerprint


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of this checkout's code, free to edit."""
    for folder in ("tasks", "flows", "services", "configs"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "requirements.lock", tmp_path / "requirements.lock")
    return tmp_path


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


@pytest.mark.parametrize(
    "relative",
    [
        "tasks/ops/cli.py",
        "tasks/monitoring/verdict.py",
        "tasks/deployment/promotion.py",
        "tasks/evaluation/metrics.py",
        "flows/monitor_flow.py",
        "flows/deploy_flow.py",
        "services/dl_service/api.py",
    ],
)
def test_edit_outside_training_keeps_the_key(checkout: Path, relative: str) -> None:
    before = code_fingerprint(checkout)
    edit(checkout / relative)
    assert code_fingerprint(checkout) == before


@pytest.mark.parametrize(
    "relative",
    [
        "tasks/training/fit.py",
        "tasks/data/pipeline.py",
        "tasks/core/preprocessing.py",
        "flows/train_flow.py",
        "requirements.lock",
    ],
)
def test_edit_to_what_training_runs_changes_the_key(checkout: Path, relative: str) -> None:
    before = code_fingerprint(checkout)
    edit(checkout / relative)
    assert code_fingerprint(checkout) != before


def test_a_new_training_module_changes_the_key(checkout: Path) -> None:
    before = code_fingerprint(checkout)
    (checkout / "tasks" / "training" / "schedules.py").write_text("WARMUP = 2\n")
    assert code_fingerprint(checkout) != before
