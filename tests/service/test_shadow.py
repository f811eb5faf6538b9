"""Shadow mode against the real service over a socket: a second version predicts the same images off the
response path, its output is logged beside the answered one, and `mlops shadow report --json` compares them."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from services.dl_service.shadow import FLUSH_SECONDS
from tasks.core.audit import read_history
from tasks.core.shadow_pointer import read_shadow
from tasks.deployment.shadow import start_shadow, stop_shadow
from tasks.ops.cli import main as ops
from tests.helpers.models import MODEL_NAME
from tests.helpers.service import running_service, wait_until

ADMIN = {"Authorization": "Bearer test-token-1234"}
JOINED = """
SELECT p.id, p.model_version, p.predicted_label, p.probabilities, s.model_version, s.champion_version,
       s.predicted_label, s.probabilities, s.prediction_set
FROM predictions p JOIN shadow_predictions s ON s.prediction_id = p.id
"""


def rows(env: dict[str, str], query: str) -> list[tuple]:
    with sqlite3.connect(env["MLOPS_PREDICTION_DB_URL"].removeprefix("sqlite:///")) as connection:
        try:
            return connection.execute(query).fetchall()
        except sqlite3.OperationalError:  # the service has not created the table yet
            return []


def predict(url: str, image: Path) -> httpx.Response:
    response = httpx.post(f"{url}/predict", files={"file": ("x.png", image.read_bytes(), "image/png")}, timeout=30)
    assert response.status_code == 200, response.text
    return response


def test_a_shadow_version_predicts_the_served_images_and_the_report_compares_them(
    service_env: dict[str, str],
    model_storage: Path,
    sample_images: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    storage = str(model_storage)
    with running_service(service_env, tmp_path / "server.log") as url:
        start_shadow(storage, MODEL_NAME, "2", 1.0, "compare on live traffic", "tester@host", None)
        reloaded = httpx.post(f"{url}/admin/reload", headers=ADMIN, timeout=60).json()
        assert reloaded["version"] == "1" and reloaded["shadow_version"] == "2"
        assert httpx.get(f"{url}/ready").json()["shadow_version"] == "2"

        answers = [predict(url, image) for image in sample_images * 3]
        # Clients only ever get the production version's answer.
        assert {a.headers["X-Model-Version"] for a in answers} == {"1"}
        assert {a.json()["model_version"] for a in answers} == {"1"}
        labelled = dict(zip([a.json()["prediction_id"] for a in answers[:6]], sample_images[:6], strict=True))
        for prediction_id, image in labelled.items():
            feedback = httpx.post(f"{url}/feedback/{prediction_id}", json={"label": image.parent.name})
            assert feedback.status_code == 201
        wait_until(lambda: len(rows(service_env, JOINED)) == len(answers), "a shadow row per answered prediction")

        # Each logged prediction carries both versions' outputs, on the same image.
        joined = {row[0]: row for row in rows(service_env, JOINED)}
        for answer in answers:
            row = joined[answer.json()["prediction_id"]]
            assert row[1] == "1" and row[4] == "2" and row[5] == "1"
            assert row[2] == answer.json()["label"]
            assert len(json.loads(row[7])) == len(json.loads(row[3])) == len(answer.json()["probabilities"])
            assert row[6] in json.loads(row[8])  # the shadow's set holds its own answer
        metrics = httpx.get(f"{url}/metrics").text
        assert f'dl_service_shadow_predictions_total{{model_version="2"}} {len(answers)}.0' in metrics

        assert ops(["shadow", "report", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["shadow_version"], report["champion_version"]) == ("2", "1")
        assert report["predictions"] == len(answers) and report["labelled"] == len(labelled)
        matrix = report["disagreement_matrix"]
        assert sum(map(sum, matrix)) == len(answers)
        agreed = sum(joined[a.json()["prediction_id"]][2] == joined[a.json()["prediction_id"]][6] for a in answers)
        assert report["agreement"] == pytest.approx(agreed / len(answers))
        assert sum(matrix[i][i] for i in range(len(matrix))) == agreed
        assert report["accuracy"]["rows"] == len(labelled)
        # 24 predictions are below the default 1,000 wanted: the report waits for more.
        assert report["status"] == "waiting" and "24 of 1000 shadow predictions" in report["reasons"][0]

        stop_shadow(storage, MODEL_NAME, "enough seen", "tester@host", None)
        assert httpx.post(f"{url}/admin/reload", headers=ADMIN, timeout=60).json()["shadow_version"] is None
        predict(url, sample_images[0])
        wait_until(lambda: len(rows(service_env, "SELECT id FROM predictions")) == len(answers) + 1, "logged")
        time.sleep(3 * FLUSH_SECONDS)  # the shadow's rows would be written by now
        assert len(rows(service_env, JOINED)) == len(answers)  # no shadow after the stop
        assert f'shadow_predictions_total{{model_version="2"}} {len(answers)}.0' in httpx.get(f"{url}/metrics").text

    assert read_shadow(storage, MODEL_NAME) is None
    events = [(e.event, e.version, e.previous_version, e.actor) for e in read_history(storage, MODEL_NAME)]
    assert events == [("shadow_start", "2", "1", "tester@host"), ("shadow_stop", "2", "1", "tester@host")]
    assert ops(["shadow", "report"]) == 1
    assert "has no version in shadow" in capsys.readouterr().err


def test_a_shadow_that_fails_its_checks_is_dropped_and_production_keeps_serving(
    service_env: dict[str, str], model_storage: Path, sample_images: list[Path], tmp_path: Path
) -> None:
    storage = str(model_storage)
    start_shadow(storage, MODEL_NAME, "2", 1.0, "compare", "tester@host", None)
    weights = next((model_storage / "models" / MODEL_NAME / "2").glob("*.keras"))
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")  # changed after publishing
    with running_service(service_env, tmp_path / "server.log") as url:
        assert httpx.get(f"{url}/ready").json()["shadow_version"] is None
        assert predict(url, sample_images[0]).headers["X-Model-Version"] == "1"
    assert "No shadow for fashion-cnn" in (tmp_path / "server.log").read_text()
