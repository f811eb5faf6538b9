"""The real service over a socket (uvicorn in a subprocess): reloads under load, and a database outage."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from services.dl_service.app import create_app
from services.dl_service.metrics import served_versions_by_pid
from tasks.core.pointer import write_pointer
from tasks.core.settings import Settings
from tests.helpers.models import MODEL_NAME

ADMIN = {"Authorization": "Bearer test-token-1234"}


async def load_with_reload(url: str, image: bytes, storage: Path, total: int, concurrency: int) -> list[tuple]:
    """``total`` predictions from ``concurrency`` clients; version 2 is deployed a third of the way in."""
    results: list[tuple] = []
    counter = iter(range(total))
    reloaded_at: list[float] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        for index in counter:
            if index == total // 3:
                write_pointer(str(storage), MODEL_NAME, "2", "load test", {})
                response = await client.post(f"{url}/admin/reload", headers=ADMIN)
                assert response.status_code == 200
                reloaded_at.append(time.monotonic())
            started = time.monotonic()
            response = await client.post(f"{url}/predict", files={"file": ("x.png", image, "image/png")})
            version = response.json().get("model_version") if response.status_code == 200 else None
            results.append((started, response.status_code, version))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return [(*r, bool(reloaded_at) and r[0] > reloaded_at[0]) for r in results]


def test_reload_under_concurrent_load_fails_no_request(
    server: str, model_storage: Path, sample_images: list[Path]
) -> None:
    results = asyncio.run(load_with_reload(server, sample_images[0].read_bytes(), model_storage, 300, 16))
    statuses = [status for _, status, _, _ in results]
    assert statuses.count(200) == 300, f"failed requests: {[s for s in statuses if s != 200]}"
    assert {version for _, _, version, _ in results} == {"1", "2"}
    after = [version for _, _, version, started_after_reload in results if started_after_reload]
    assert after and set(after) == {"2"}


def test_predictions_survive_a_database_outage(service_env: dict[str, str], sample_images: list[Path]) -> None:
    """The database stays locked for a while (another writer holds it): rows are spooled, then written."""
    database = service_env["MLOPS_PREDICTION_DB_URL"].removeprefix("sqlite:///")
    with TestClient(create_app(Settings())) as client:
        log = client.app.state.service.log  # type: ignore[attr-defined]
        client.post("/predict", files={"file": ("a.png", sample_images[0].read_bytes(), "image/png")})
        log.flush()
        blocker = sqlite3.connect(database, timeout=0, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        ids = []
        for image in sample_images * 3:
            response = client.post("/predict", files={"file": (image.name, image.read_bytes(), "image/png")})
            assert response.status_code == 200  # serving never waits for the database
            ids.append(response.json()["prediction_id"])
        deadline = time.monotonic() + 30
        while log.pending_spool_rows() < len(ids):
            assert time.monotonic() < deadline, "rows were not spooled while the database was locked"
            time.sleep(0.2)
        blocker.execute("COMMIT")
        blocker.close()
        deadline = time.monotonic() + 30
        while log.pending_spool_rows():
            assert time.monotonic() < deadline, "spooled rows were not written back"
            time.sleep(0.2)
    with sqlite3.connect(database) as connection:
        stored = {row[0] for row in connection.execute("SELECT id FROM predictions")}
    assert set(ids) <= stored and len(stored) == len(ids) + 1


def test_two_worker_processes_share_metrics_and_converge_on_a_deploy(
    service_env: dict[str, str], model_storage: Path, sample_images: list[Path], tmp_path: Path
) -> None:
    from tests.helpers.service import running_service

    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {**service_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "MLOPS_SERVICE_POINTER_POLL_SECONDS": "0.5"}
    with running_service(env, tmp_path / "workers.log", workers=2) as url:
        image = sample_images[0].read_bytes()
        with httpx.Client(timeout=30) as client:
            for _ in range(30):
                response = client.post(f"{url}/predict", files={"file": ("x.png", image, "image/png")})
                assert response.status_code == 200
            text = client.get(f"{url}/metrics").text
            assert 'dl_service_requests_total{endpoint="predict",status="200"} 30.0' in text  # both workers summed
            write_pointer(str(model_storage), MODEL_NAME, "2", "deploy", {})
            deadline = time.monotonic() + 30
            while set(served_versions_by_pid(client.get(f"{url}/metrics").text).values()) != {"2"}:
                assert time.monotonic() < deadline, "the workers did not all load version 2"
                time.sleep(0.3)
            served = served_versions_by_pid(client.get(f"{url}/metrics").text)
            assert len(served) == 2 and set(served.values()) == {"2"}  # each worker says so itself


def test_deploy_notification_reloads_a_running_service(
    service_env: dict[str, str], model_storage: Path, tmp_path: Path
) -> None:
    """The deploy flow's reload request, against the real service (the hour-long poll leaves it to the request)."""
    from tasks.deployment.notify import notify_services
    from tests.helpers.service import running_service

    with running_service(service_env, tmp_path / "notify.log") as url:
        write_pointer(str(model_storage), MODEL_NAME, "2", "deploy", {})
        without_token = notify_services([f"{url}/admin/reload"], None)[0]
        assert not without_token.ok and "401" in without_token.detail
        assert httpx.get(f"{url}/ready").json()["model_version"] == "1"
        with_token = notify_services([f"{url}/admin/reload"], "test-token-1234")[0]
        assert with_token.ok and httpx.get(f"{url}/ready").json()["model_version"] == "2"
        unreachable = notify_services(["http://127.0.0.1:9/admin/reload"], "test-token-1234")[0]
        assert not unreachable.ok and "ConnectError" in unreachable.detail


def test_rows_of_a_process_that_died_mid_replay_are_written(tmp_path: Path) -> None:
    """A worker claimed a spool file for replay and died: another process writes its rows."""
    from services.dl_service.store import PredictionLog

    spool = tmp_path / "spool"
    spool.mkdir()
    row = spooled_row()
    rows = [{**row, "id": f"lost-{i}"} for i in range(3)]
    claimed = spool / "pending-4242-abcdef.4242.replaying"
    claimed.write_text("".join(json.dumps(row) + "\n" for row in rows))
    database = tmp_path / "predictions.db"
    log = PredictionLog(f"sqlite:///{database}", spool, stale_seconds=0)
    log.start()
    log.close()  # the final flush replays
    with sqlite3.connect(database) as connection:
        written = {row[0] for row in connection.execute("SELECT id FROM predictions")}
    assert written == {"lost-0", "lost-1", "lost-2"} and not list(spool.iterdir())

    fresh = PredictionLog(f"sqlite:///{tmp_path / 'other.db'}", spool)  # default: a recent claim is left alone
    claimed.write_text(json.dumps(rows[0]) + "\n")
    fresh.start()
    fresh.close()
    assert claimed.exists()


def test_a_row_the_database_refuses_is_set_aside_and_blocks_nothing(tmp_path: Path) -> None:
    """One spooled row violates a constraint: the others are written, it is kept with the reason,
    and the log goes on writing (before, the spool never drained and every new row joined it)."""
    from services.dl_service.store import PredictionLog

    spool = tmp_path / "spool"
    spool.mkdir()
    row = spooled_row()
    bad = {**row, "id": "bad", "predicted_label": None}  # NOT NULL
    lines = [{**row, "id": "good-1"}, bad, {**row, "id": "good-2"}]
    (spool / "pending-1-abcdef.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    database = tmp_path / "predictions.db"
    log = PredictionLog(f"sqlite:///{database}", spool)
    log.start()
    log.flush()
    log.write([{**row, "id": "after", "created_at": datetime.now(UTC)}])
    log.close()
    with sqlite3.connect(database) as connection:
        written = {r[0] for r in connection.execute("SELECT id FROM predictions")}
    assert written == {"good-1", "good-2", "after"} and log.pending_spool_rows() == 0
    kept = [json.loads(line) for line in (spool / "rejected.ndjson").read_text().splitlines()]
    assert [k["row"]["id"] for k in kept] == ["bad"] and "NOT NULL" in kept[0]["error"]
    assert log.rejected_rows() == 1  # what /metrics reports as dl_service_rejected_rows


def spooled_row() -> dict[str, object]:
    """A prediction row as the spool file holds it (JSON; time as ISO text)."""
    return {
        "created_at": datetime.now(UTC).isoformat(), "model_name": "m", "model_version": "1",
        "predicted_label": "bag", "confidence": 0.9, "probabilities": [0.9, 0.1], "uae": [0.0],
        "sha256": "0" * 64, "latency_ms": 3.0,
    }  # fmt: skip
