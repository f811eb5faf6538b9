"""run_flow.py's command line, in process under a real Prefect API: --flow, --set and --force reach the flows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from run_flow import main
from tasks.core.settings import REPO_ROOT
from tests.helpers.data import TINY_TRAINING

EXPERIMENT = str(REPO_ROOT / "configs" / "full_flow_config.yaml")


def command_line(repo: Path, *extra: str) -> list[str]:
    sets = [f"dataset.path={repo}", *TINY_TRAINING, "evaluate.thresholds={accuracy: [0.45, lower]}"]
    return ["--config", EXPERIMENT, *(arg for value in sets for arg in ("--set", value)), *extra]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out[out.index("{") :]) if code == 0 else {}


@pytest.mark.slow
def test_flow_set_and_force_from_the_command_line(
    flow_state: Path, tiny_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, trained = run(command_line(tiny_repo, "--flow", "train", "--set", "train.seed=3"), capsys)
    assert code == 0 and trained["version"] == "1"  # the train flow alone: a TrainResult
    assert "evaluation" not in trained

    code, full = run(command_line(tiny_repo), capsys)
    assert code == 0 and not full["reused_training"] and full["train"]["version"] == "2"
    assert full["deploy"]["promoted"]

    code, forced = run(command_line(tiny_repo, "--force"), capsys)
    assert code == 0 and not forced["reused_training"] and forced["train"]["version"] == "3"


def test_config_error_from_the_command_line_names_the_override(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", EXPERIMENT, "--set", "train.epochz=1"]) == 2
    error = capsys.readouterr().err
    assert "train.epochz (set in --set train.epochz=1): unknown key" in error
    assert not state_dir.exists()  # refused before anything was created
