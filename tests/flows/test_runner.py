"""``flows.run`` as a notebook calls it: in a kernel where a cell imported Prefect first, off the main
thread. The state folder still receives everything, and nothing is written to ``~/.prefect``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.settings import REPO_ROOT
from tests.helpers.data import TINY_TRAINING

pytestmark = [pytest.mark.flow, pytest.mark.slow]

SCRIPT = """
import threading
import flows.train_flow  # a cell imported a flow (and so Prefect) before anything else

from flows import run

results = {{}}
def work():  # not the main thread: run() installs no signal handler
    results["train"] = run("configs/train_config.yaml", overrides={overrides!r})
worker = threading.Thread(target=work)
worker.start()
worker.join()
print("VERSION", results["train"].version)
"""


def test_run_after_prefect_was_imported_keeps_every_state_in_the_state_folder(tiny_repo: Path, tmp_path: Path) -> None:
    home, state = tmp_path / "home", tmp_path / "state"
    home.mkdir()
    overrides = [f"dataset.path={tiny_repo}", *TINY_TRAINING, "train.epochs=1"]
    env = {"HOME": str(home), "MLOPS_HOME": str(state), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(overrides=overrides)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "VERSION 1" in result.stdout
    assert (state / "prefect" / "prefect.db").is_file()
    assert not (home / ".prefect" / "prefect.db").exists()
    # Prefect makes its default home folder when imported; nothing may be written into it
    assert not [path for path in (home / ".prefect").rglob("*")], list((home / ".prefect").rglob("*"))
    assert any((state / "storage").rglob("SHA256SUMS"))
