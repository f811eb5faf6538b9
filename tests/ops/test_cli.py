"""`mlops` (tasks/ops/cli.py) against a real MLflow registry, real central storage and a real Prefect API,
and the installed command as a user runs it, from another folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tasks.deployment.tasks  # noqa: F401  (see below)
from tasks.core.pointer import read_pointer
from tasks.core.settings import get_settings
from tasks.core.tracking import mlflow_client
from tasks.ops.cli import main as ops
from tests.helpers.models import MODEL_NAME

# The commands import Prefect's task modules lazily; Prefect binds its console log handler to the
# stderr of the moment, so they are imported here, at collection, not under a test's captured stderr.


@pytest.fixture
def registered(prefect_api: None, state_dir: Path, model_storage: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Versions 1 and 2 published and registered, production on version 1 with no earlier version."""
    monkeypatch.setenv("MLOPS_STORAGE_URL", str(model_storage))
    get_settings.cache_clear()
    client = mlflow_client(get_settings())
    client.create_registered_model(MODEL_NAME)
    for version in ("1", "2"):
        client.create_model_version(MODEL_NAME, str(model_storage / "models" / MODEL_NAME / version))
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")
    return model_storage


def champion() -> str:
    return str(mlflow_client(get_settings()).get_model_version_by_alias(MODEL_NAME, "champion").version)


def test_rollback_with_no_previous_version_says_what_to_do_and_changes_nothing(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = read_pointer(str(registered), MODEL_NAME)
    assert ops(["rollback"]) == 2
    assert "no previous production version to roll back to; use --to VERSION" in capsys.readouterr().err
    assert read_pointer(str(registered), MODEL_NAME) == before and champion() == "1"


def test_promote_then_rollback_moves_pointer_alias_and_variable_together(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.variables import Variable

    assert ops(["promote", "2", "--yes"]) == 0
    pointer = read_pointer(str(registered), MODEL_NAME)
    assert pointer is not None and (pointer.version, pointer.previous_version) == ("2", "1")
    assert champion() == "2" and Variable.get("production_model_fashion_cnn")["version"] == "2"
    assert "promote by operator" in pointer.reason

    assert ops(["rollback", "--yes"]) == 0
    pointer = read_pointer(str(registered), MODEL_NAME)
    assert pointer is not None and (pointer.version, pointer.previous_version) == ("1", "2")
    assert champion() == "1" and Variable.get("production_model_fashion_cnn")["version"] == "1"
    assert "fashion-cnn version 1 is in production (previous: 2)" in capsys.readouterr().out

    # Both moves are in the audit trail, with who made them; tampering with one is found.
    assert ops(["history", "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    moves = [(e["event"], e["version"], e["previous_version"], e["reason"]) for e in history["entries"]]
    assert moves == [("promotion", "2", "1", "promote by operator"), ("rollback", "1", "2", "rollback by operator")]
    assert history["intact"] and all("@" in e["actor"] for e in history["entries"])
    first = registered / "models" / MODEL_NAME / "audit" / "00000001.json"
    first.write_text(first.read_text().replace("promote by operator", "promote by the board"))
    assert ops(["history"]) == 1
    assert "THE AUDIT TRAIL IS NOT INTACT" in capsys.readouterr().out


def test_promoting_the_version_in_shadow_ends_its_shadow(registered: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tasks.core.shadow_pointer import read_shadow

    assert ops(["shadow", "start", "2", "--sample", "0.5", "--yes"]) == 0
    assert "fashion-cnn version 2 in shadow beside version 1 (50%)" in capsys.readouterr().out
    assert ops(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shadow"]["sample"] == 0.5
    assert ops(["promote", "2", "--yes"]) == 0
    assert "fashion-cnn version 2 is in production" in capsys.readouterr().out
    assert read_shadow(str(registered), MODEL_NAME) is None
    assert ops(["history", "--json"]) == 0
    events = [(e["event"], e["version"]) for e in json.loads(capsys.readouterr().out)["entries"]]
    assert events == [("shadow_start", "2"), ("promotion", "2"), ("shadow_stop", "2")]
    assert ops(["shadow", "stop", "--yes"]) == 1
    assert "has no version in shadow" in capsys.readouterr().err


def test_promoting_an_unregistered_version_fails_and_changes_nothing(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = read_pointer(str(registered), MODEL_NAME)
    assert ops(["promote", "9", "--yes"]) == 2
    assert "version 9 is not registered" in capsys.readouterr().err
    assert read_pointer(str(registered), MODEL_NAME) == before and champion() == "1"


def test_promote_asks_first_and_a_script_must_say_yes(registered: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = read_pointer(str(registered), MODEL_NAME)
    assert ops(["promote", "2"]) == 2  # stdin is not a terminal under pytest
    assert "Confirm with --yes when not at a terminal" in capsys.readouterr().err
    assert read_pointer(str(registered), MODEL_NAME) == before and champion() == "1"


def test_models_and_status_print_json_a_script_can_read(registered: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ops(["promote", "2", "--yes"]) == 0
    capsys.readouterr()
    assert ops(["models", "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["aliases"], v["published"]) for v in versions] == [
        ("1", [], True),
        ("2", ["champion"], True),
    ]
    assert ops(["status", "--json"]) == 0
    production = json.loads(capsys.readouterr().out)["production"]
    assert (production["version"], production["previous_version"], production["registry_champion"]) == ("2", "1", "2")


MLOPS = Path(sys.executable).parent / "mlops"


def mlops(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed command, from a folder outside the repository, with its own state folder."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLOPS_", "PREFECT_"))}
    env |= {"MLOPS_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    return subprocess.run([str(MLOPS), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_command_lists_its_commands_and_answers_json_from_any_folder(tmp_path: Path) -> None:
    helped = mlops(tmp_path, "--help")
    assert helped.returncode == 0
    for command in ("run", "status", "models", "promote", "rollback", "history", "trace", "monitor", "serve", "ui"):
        assert f" {command} " in helped.stdout
    status = mlops(tmp_path, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {"model": "fashion-cnn", "production": None}


def test_bad_input_exits_2_naming_what_to_fix(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "extends: "
        + str(Path(__file__).resolve().parents[2] / "configs" / "full_flow_config.yaml")
        + "\ntrain: {epocs: 3}\n"
    )
    misspelt = mlops(tmp_path, "run", "--config", str(config))
    assert misspelt.returncode == 2 and "epocs" in misspelt.stderr and str(config) in misspelt.stderr
    monitor = str(Path(__file__).resolve().parents[2] / "configs" / "monitor_config.yaml")
    forced = mlops(tmp_path, "run", "--config", monitor, "--force")
    assert forced.returncode == 2 and "the monitor flow has no training cache to bypass (only full)" in forced.stderr
    assert "Traceback" not in forced.stderr


def test_ui_serves_the_three_consoles_over_the_state_folder_and_stops_them_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import time

    import httpx

    from deployments.stack.servers import free_port

    ports = {"prefect": free_port(), "mlflow": free_port(), "evidently": free_port()}
    command = [str(MLOPS), "ui", *(f"--{name}-port={port}" for name, port in ports.items())]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLOPS_", "PREFECT_"))}
    env |= {"MLOPS_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    ui = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        paths = {"prefect": "/api/health", "mlflow": "/health", "evidently": "/"}
        waiting, deadline = dict(paths), time.monotonic() + 180
        while waiting and time.monotonic() < deadline:
            for name, path in list(waiting.items()):
                try:
                    if httpx.get(f"http://127.0.0.1:{ports[name]}{path}", timeout=2).status_code == 200:
                        del waiting[name]
                except httpx.HTTPError:
                    pass
            time.sleep(1)
        assert not waiting, f"not answering: {sorted(waiting)}"
    finally:
        ui.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = ui.communicate(timeout=60)
    assert f"Prefect   http://127.0.0.1:{ports['prefect']}" in out
    for port in ports.values():
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_serve_answers_predictions_on_the_port_asked_and_stops_on_ctrl_c(
    service_env: dict[str, str], sample_images: list[Path], tmp_path: Path
) -> None:
    import signal
    import time

    import httpx

    from deployments.stack.servers import free_port

    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLOPS_", "PREFECT_"))}
    env |= service_env | {"HOME": str(tmp_path)}
    served = subprocess.Popen(
        [str(MLOPS), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        image = sample_images[0].read_bytes()
        answer = httpx.post(f"{url}/predict", files={"file": ("a.png", image, "image/png")}, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
        assert answer.headers["X-Model-Version"] == "1"
    finally:
        served.send_signal(signal.SIGINT)  # Ctrl-C
        output, _ = served.communicate(timeout=60)
    assert served.returncode == 0, output.decode()[-2000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)
    # The answer the client received is in the log, and traces back to its model version.
    prediction = answer.json()["prediction_id"]
    traced = subprocess.run([str(MLOPS), "trace", prediction, "--json"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert traced.returncode == 0, traced.stderr[-2000:]
    found = json.loads(traced.stdout)
    assert found["prediction"]["id"] == prediction and found["version"] == "1"
    assert found["prediction"]["label"] == answer.json()["label"] and "sha256sums_digest" in found["provenance"]
    missing = subprocess.run([str(MLOPS), "trace", "no-such-id"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert missing.returncode == 1 and "no prediction 'no-such-id' in the prediction log" in missing.stderr


def test_add_reviews_without_enough_labels_says_how_many_and_leaves_the_dataset(
    state_dir: Path, tiny_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tasks.data.repository import list_tags

    config = tmp_path / "add_reviews.yaml"
    config.write_text(
        f"extends: {Path(__file__).parents[2] / 'configs' / 'add_reviews_config.yaml'}\ndataset:\n  path: {tiny_repo}\n"
    )
    assert ops(["review", "status", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "open": 0,
        "agreed": 0,
        "added": 0,
        "unreadable": 0,
        "disagreements": 0,
    }
    assert ops(["dataset", "add-reviews", "--config", str(config), "--min-labels", "5"]) == 1
    error = capsys.readouterr().err
    assert "only 0 agreed new label(s) since v2.0; dataset.reviews.min_new_labels is 5" in error
    assert "Review more at /review" in error and list_tags(tiny_repo) == ["v1.0", "v2.0"]
