"""The prediction log on a real PostgreSQL server: the stack's path, including the server going away."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from deployments.stack.servers import PostgresCluster
from services.dl_service.app import create_app
from tasks.core.settings import Settings
from tests.helpers.service import wait_until


def count(url: str, table: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        value = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return int(value)


def test_predictions_and_feedback_land_in_postgres(
    service_env: dict[str, str], fresh_database: str, sample_images: list[Path]
) -> None:
    with TestClient(create_app(Settings(prediction_db_url=fresh_database))) as client:
        prediction = client.post("/predict", files={"file": ("a.png", sample_images[0].read_bytes(), "image/png")})
        prediction_id = prediction.json()["prediction_id"]
        response = client.post(f"/feedback/{prediction_id}", json={"label": prediction.json()["label"]})
        assert response.status_code == 201
    assert count(fresh_database, "predictions") == 1 and count(fresh_database, "feedback") == 1


def test_no_prediction_is_lost_while_postgres_is_down(
    service_env: dict[str, str], fresh_database: str, postgres_server: PostgresCluster, sample_images: list[Path]
) -> None:
    with TestClient(create_app(Settings(prediction_db_url=fresh_database))) as client:
        log = client.app.state.service.log  # type: ignore[attr-defined]

        def predict_all() -> None:
            for image in sample_images:
                response = client.post("/predict", files={"file": (image.name, image.read_bytes(), "image/png")})
                assert response.status_code == 200

        predict_all()
        wait_until(lambda: log.written == len(sample_images), "rows written before the outage")
        postgres_server.stop()
        try:
            predict_all()  # served while the database is down
            wait_until(lambda: log.pending_spool_rows() == len(sample_images), "rows spooled during the outage")
            feedback = client.post("/feedback/anything", json={"label": "bag"})
            detail = feedback.json()["detail"]
            assert feedback.status_code == 503 and "unreachable" in detail
            leaks = ("127.0.0.1", str(postgres_server.port), "postgres", "SELECT", "connection")
            assert not [word for word in leaks if word in detail], detail  # hosts, roles and SQL stay in the log
        finally:
            postgres_server.start()
        wait_until(lambda: log.pending_spool_rows() == 0, "spooled rows written after the outage")
    assert count(fresh_database, "predictions") == 2 * len(sample_images)
