"""run_flow.py's command line, in process under a real Prefect API: --flow, --set and --force reach the flows.

The flows are imported here, at collection: Prefect sets up its log handlers on first import, and
under a test's ``capsys`` they would keep that test's captured stream, which is closed after it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import flows.full_flow  # noqa: F401
from run_flow import main
from tasks.core.settings import REPO_ROOT
from tasks.ops.cli import main as ops
from tests.helpers.data import TINY_TRAINING

EXPERIMENT = str(REPO_ROOT / "configs" / "full_flow_config.yaml")


def command_line(repo: Path, *extra: str) -> list[str]:
    sets = [
        f"dataset.path={repo}",
        *TINY_TRAINING,
        "evaluate.thresholds={accuracy: [0.45, lower]}",
        "deploy.margin=1.0",
        "deploy.slice_margin=1.0",
    ]
    return ["--config", EXPERIMENT, *(arg for value in sets for arg in ("--set", value)), *extra]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out[out.index("{") :]) if code == 0 else {}


@pytest.mark.slow
def test_flow_set_and_force_from_the_command_line_then_operate_the_model(
    flow_state: Path, tiny_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, full = run(command_line(tiny_repo), capsys)
    assert code == 0 and not full["reused_training"] and full["train"]["version"] == "1"
    assert full["deploy"]["promoted"] and full["evaluation"]["metrics"]["accuracy"] > 0.45

    code, evaluated = run(command_line(tiny_repo, "--flow", "evaluate"), capsys)
    assert code == 0 and evaluated["version"] == "1" and "train" not in evaluated  # the evaluate flow alone

    code, forced = run(command_line(tiny_repo, "--force"), capsys)  # same config: a cache hit without --force
    assert code == 0 and not forced["reused_training"] and forced["train"]["version"] == "2"
    assert forced["deploy"]["promoted"] and forced["deploy"]["champion_before"] == "1"

    # The operator's view of the same state folder: status, models, rollback.
    assert ops(["rollback", "--yes"]) == 0
    capsys.readouterr()
    assert ops(["status"]) == 0
    status = capsys.readouterr().out
    assert "version     1 (registry alias champion -> 1)" in status and "previous    2" in status
    assert "rollback by operator" in status and "v2.0" in status
    assert ops(["models"]) == 0
    models = capsys.readouterr().out.splitlines()
    assert models[1].split()[:3] == ["1", "champion", "yes"] and models[2].split()[:3] == ["2", "challenger", "yes"]


def test_config_error_from_the_command_line_names_the_override(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", EXPERIMENT, "--set", "train.epochz=1"]) == 2
    error = capsys.readouterr().err
    assert "train.epochz (set in --set train.epochz=1): unknown key" in error
    assert not state_dir.exists()  # refused before anything was created
