"""What the service says about how far to trust each answer, from the version's trust layer: the
conformal prediction set, the out-of-distribution score and flag, abstention with a reason; all of it
in the prediction log, which an older database gains the columns for."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from services.dl_service.app import create_app
from tasks.core.settings import Settings
from tasks.data.dataset import read_manifest
from tests.helpers.images import digit_pngs


def predict(client: TestClient, content: bytes) -> dict:
    response = client.post("/predict", files={"file": ("x.png", content, "image/png")})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_answers_carry_a_set_and_an_ood_flag_and_digits_are_flagged_more_than_clothes(
    service_env: dict[str, str], tiny_repo_template: tuple[Path, Path]
) -> None:
    repo, _ = tiny_repo_template
    manifest = read_manifest(repo / "data")
    clothes = [(repo / "data" / path).read_bytes() for path in manifest[manifest["split"] == "test"]["path"][:60]]
    with TestClient(create_app(Settings())) as client:
        worn = [predict(client, content) for content in clothes]
        digits = [predict(client, content) for content in digit_pngs(60)]
        batch = client.post("/predict/batch", files=[("files", ("a.png", clothes[0], "image/png"))]).json()
        client.app.state.service.log.flush()  # type: ignore[attr-defined]

    for answer in worn + digits + batch["predictions"]:
        assert answer["prediction_set"][0] == answer["label"]  # most likely first, and always there
        assert set(answer["prediction_set"]) <= set(answer["probabilities"])
        assert isinstance(answer["ood"], bool) and isinstance(answer["ood_score"], float)
        assert answer["abstain"] == (answer["abstain_reason"] is not None)
        if answer["ood"]:
            assert answer["abstain"] and "out of distribution" in answer["abstain_reason"]
    flagged_clothes = np.mean([a["ood"] for a in worn])
    flagged_digits = np.mean([a["ood"] for a in digits])
    # A model trained on 200 images separates them only roughly; `make bench` measures the real one.
    assert flagged_clothes <= 0.3 and flagged_digits > flagged_clothes
    assert np.mean([a["ood_score"] for a in digits]) > np.mean([a["ood_score"] for a in worn])

    database = service_env["MLOPS_PREDICTION_DB_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT id, prediction_set, ood, abstain, abstain_reason FROM predictions").fetchall()
    logged = {row[0]: row for row in rows}
    for answer in worn + digits:
        _, prediction_set, ood, abstain, reason = logged[answer["prediction_id"]]
        assert (bool(ood), bool(abstain), reason) == (answer["ood"], answer["abstain"], answer["abstain_reason"])
        assert prediction_set.startswith(f'["{answer["label"]}"')


def test_a_log_written_before_the_trust_layer_gains_its_columns(
    service_env: dict[str, str], sample_images: list[Path]
) -> None:
    database = service_env["MLOPS_PREDICTION_DB_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:  # the table as the previous release created it
        connection.execute(
            "CREATE TABLE predictions (id VARCHAR(36) PRIMARY KEY, created_at DATETIME NOT NULL, "
            "model_name VARCHAR(200) NOT NULL, model_version VARCHAR(50) NOT NULL, predicted_label VARCHAR(200) "
            "NOT NULL, confidence FLOAT NOT NULL, probabilities JSON NOT NULL, uae JSON NOT NULL, brightness FLOAT, "
            "contrast FLOAT, sharpness FLOAT, width FLOAT, height FLOAT, channels FLOAT, sha256 VARCHAR(64) NOT NULL, "
            "latency_ms FLOAT NOT NULL, request_id VARCHAR(100), image_uri VARCHAR(1000))"
        )
        connection.execute(
            "INSERT INTO predictions VALUES ('old-1', '2026-11-01 10:00:00', 'fashion-cnn', '1', 'bag', 0.9, '[]', "
            "'[]', 0.5, 0.1, 0.1, 28, 28, 1, 'abc', 3.0, NULL, NULL)"
        )
    with TestClient(create_app(Settings())) as client:
        answer = predict(client, sample_images[0].read_bytes())
        client.app.state.service.log.flush()  # type: ignore[attr-defined]
    with sqlite3.connect(database) as connection:
        rows = dict(connection.execute("SELECT id, ood FROM predictions").fetchall())
    assert rows == {"old-1": None, answer["prediction_id"]: int(answer["ood"])}
