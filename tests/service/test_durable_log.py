"""The prediction log keeps every prediction a client received: across worker processes sharing one
spool folder, a database that goes away and comes back, a worker killed with SIGKILL, torn lines and
a full disk."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, text

from deployments.stack.servers import PostgresCluster, free_port
from services.dl_service.store import PredictionLog, new_prediction_id
from tasks.core.settings import REPO_ROOT
from tests.helpers.service import wait_until


def row(prediction_id: str) -> dict[str, object]:
    return {
        "id": prediction_id, "created_at": datetime.now(UTC), "model_name": "m", "model_version": "1",
        "predicted_label": "bag", "confidence": 0.9, "probabilities": [0.9, 0.1], "uae": [0.0],
        "sha256": "0" * 64, "latency_ms": 3.0,
    }  # fmt: skip


def spool_line(prediction_id: str) -> str:
    return json.dumps({**row(prediction_id), "created_at": datetime.now(UTC).isoformat()})


def stored_ids(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [r[0] for r in connection.execute("SELECT id FROM predictions")]


def unreachable_database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'no-such-folder' / 'predictions.db'}"


def test_sqlite_commits_are_fsynced_so_a_power_cut_keeps_what_was_answered(tmp_path: Path) -> None:
    """WAL (readers never block the writer) with an fsync per commit: SQLite's FULL, its value 2."""
    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}", tmp_path / "spool")
    log.start()
    try:
        log.write([row(new_prediction_id())])
        with log.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        log.close()


def test_an_open_segment_of_a_live_process_is_never_claimed(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    writer = PredictionLog(unreachable_database(tmp_path), spool)
    writer.start()
    try:
        writer.write([row("live-1")])  # database unreachable: into writer's own open segment
        (open_segment,) = spool.glob("*.open")
        database = tmp_path / "predictions.db"
        other = PredictionLog(f"sqlite:///{database}", spool)
        other.start()
        other.flush()
        assert open_segment.exists() and "live-1" in open_segment.read_text()  # not taken from a live writer
        writer.write([row("live-2")])  # still its own file, still appended to
        other.close()
        assert "live-2" in open_segment.read_text()
    finally:
        writer._stop.set()  # leave the segment as a process that stops without closing would


def test_a_failed_replay_hands_the_file_back_and_loses_nothing(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "a.2rows.jsonl").write_text(spool_line("one") + "\n" + spool_line("two") + "\n")
    log = PredictionLog(unreachable_database(tmp_path), spool)
    log.start()
    log.write([row("three")])
    log.close()  # replays fail: the database is unreachable
    files = list(spool.iterdir())
    assert all(path.suffix == ".jsonl" for path in files), files  # nothing left claimed or open
    contents = "".join(path.read_text() for path in files)
    assert all(f'"{name}"' in contents for name in ("one", "two", "three"))
    assert log.pending_spool_rows() == 3
    database = tmp_path / "predictions.db"
    later = PredictionLog(f"sqlite:///{database}", spool)
    later.start()
    later.close()
    assert sorted(stored_ids(database)) == ["one", "three", "two"] and not list(spool.glob("*.jsonl"))


def test_a_torn_line_is_set_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    whole = [spool_line(f"whole-{n}") for n in range(3)]
    (spool / "b.4rows.jsonl").write_text("\n".join(whole) + "\n" + spool_line("torn")[:40])
    database = tmp_path / "predictions.db"
    log = PredictionLog(f"sqlite:///{database}", spool)
    log.start()
    log.close()
    assert sorted(stored_ids(database)) == ["whole-0", "whole-1", "whole-2"]
    (kept,) = [json.loads(line) for line in (spool / "rejected.ndjson").read_text().splitlines()]
    assert kept["error"].startswith("torn line") and kept["row"] == spool_line("torn")[:40]
    assert log.rejected_rows() == 1 and log.pending_spool_rows() == 0


def test_a_segment_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    abandoned = spool / "dead.open"
    abandoned.write_text(spool_line("orphan") + "\n")
    database = tmp_path / "predictions.db"
    patient = PredictionLog(f"sqlite:///{database}", spool)  # default age: a recent segment may be live
    patient.start()
    patient.close()
    assert abandoned.exists() and stored_ids(database) == []
    log = PredictionLog(f"sqlite:///{database}", spool, stale_seconds=0)
    log.start()
    log.close()
    assert stored_ids(database) == ["orphan"] and not list(spool.iterdir())


def test_the_spool_is_counted_from_file_names(tmp_path: Path) -> None:
    """/metrics asks on every scrape: the count comes from a folder listing, not from reading the files."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "c.7rows.jsonl").write_text("")  # the name is what is read
    (spool / "d.5rows.jsonl.e1.replaying").write_text("")
    log = PredictionLog(unreachable_database(tmp_path), spool)
    assert log.pending_spool_rows() == 12


def test_a_full_disk_refuses_the_rows_it_cannot_keep(tmp_path: Path) -> None:
    """A real file-size limit (RLIMIT_FSIZE) stands in for a full disk: rows past it are refused with
    LogUnavailable (the requests get 503), counted, and the spool keeps only whole lines."""
    spool = tmp_path / "spool"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from datetime import UTC, datetime
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from services.dl_service.store import LogUnavailable, PredictionLog
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        log = PredictionLog({unreachable_database(tmp_path)!r}, __import__("pathlib").Path({str(spool)!r}))
        log.start()
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        row = dict(created_at=datetime.now(UTC), model_name="m", model_version="1", predicted_label="bag",
                   confidence=0.9, probabilities=[0.9, 0.1], uae=[0.0], sha256="0" * 64, latency_ms=3.0)
        kept, refused = [], 0
        for n in range(200):
            try:
                log.write([dict(row, id=f"row-{{n}}")])
                kept.append(f"row-{{n}}")
            except LogUnavailable:
                refused += 1
        print(len(kept), refused, log.unstorable)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    kept, refused, counted = map(int, result.stdout.split())
    assert kept > 0 and refused > 0 and counted == refused
    (segment,) = spool.glob("*.open")
    lines = segment.read_text().splitlines()
    assert len(lines) == kept and all(json.loads(line)["id"] for line in lines)  # no torn line left behind


# --- two gunicorn workers, PostgreSQL going away twice, one worker killed -----------------------------


@pytest.fixture
def gunicorn_service(service_env: dict[str, str], fresh_database: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The stack's gunicorn command with two workers on a loopback port; yields (URL, master pid)."""
    port = free_port()
    metrics = tmp_path / "prometheus"
    env = {
        **os.environ,
        **service_env,
        "MLOPS_PREDICTION_DB_URL": fresh_database,
        "MLOPS_SERVICE_BIND": f"127.0.0.1:{port}",
        "MLOPS_SERVICE_WORKERS": "2",
        "MLOPS_SERVICE_SPOOL_STALE_SECONDS": "3",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    command = [sys.executable, "-m", "gunicorn", "services.dl_service.app:create_app()"]
    command += ["--config", "deployments/gunicorn.conf.py"]
    with (tmp_path / "gunicorn.log").open("w") as log:
        master = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: len(worker_pids(master.pid)) == 2 and ready(url), "two ready workers", 180)
            yield url, master.pid
        finally:
            master.terminate()
            master.wait(timeout=60)


def worker_pids(master: int) -> list[int]:
    return [child.pid for child in psutil.Process(master).children()]


def ready(url: str) -> bool:
    try:
        return all(httpx.get(f"{url}/ready", timeout=2).status_code == 200 for _ in range(6))
    except httpx.HTTPError:
        return False


async def predictions_through_outages(
    url: str, image: bytes, total: int, events: dict[int, object], concurrency: int = 16
) -> tuple[list[str], list[object]]:
    """``total`` predictions; ``events[n]()`` runs once n requests have started. Returns the ids of
    the 200 answers, and every other outcome (statuses and connection errors)."""
    received: list[str] = []
    others: list[object] = []
    counter = iter(range(total))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for index in counter:
            if index in events:
                await asyncio.to_thread(events[index])  # type: ignore[arg-type]
            try:
                response = await client.post(f"{url}/predict", files={"file": ("x.png", image, "image/png")})
            except httpx.HTTPError as error:
                others.append(type(error).__name__)
                continue
            if response.status_code == 200:
                received.append(response.json()["prediction_id"])
            else:
                others.append(response.status_code)

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return received, others


def test_every_answered_prediction_is_logged_once_through_outages_and_a_killed_worker(
    gunicorn_service: tuple[str, int], postgres_server: PostgresCluster, fresh_database: str,
    sample_images: list[Path], service_env: dict[str, str],
) -> None:  # fmt: skip
    url, master = gunicorn_service
    killed: list[int] = []

    def kill_a_worker() -> None:
        victim = worker_pids(master)[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    events = {
        300: lambda: postgres_server.stop(),
        600: lambda: postgres_server.start(),
        900: lambda: postgres_server.stop(),
        1100: kill_a_worker,  # its acknowledged rows are in its open spool segment: another process takes it over
        1400: lambda: postgres_server.start(),
    }
    image = sample_images[0].read_bytes()
    received, others = asyncio.run(predictions_through_outages(url, image, 2000, events))
    assert killed and len(received) >= 1500, others
    engine = create_engine(fresh_database)

    def logged() -> list[str]:
        with engine.connect() as connection:
            return [r[0] for r in connection.execute(text("SELECT id FROM predictions"))]

    try:
        wait_until(lambda: set(received) <= set(logged()), "every answered prediction in the table", 90)
        ids = logged()
    finally:
        engine.dispose()
    assert len(ids) == len(set(ids))  # exactly once
    spool = Path(service_env["MLOPS_HOME"]) / "spool"
    wait_until(lambda: not [p for p in spool.iterdir() if p.suffix != ".ndjson"], "the spool drained", 30)
    assert not (spool / "rejected.ndjson").exists()


def test_prediction_ids_are_unguessable_uuids_that_sort_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(5):
        made += [new_prediction_id() for _ in range(2_000)]
        time.sleep(0.002)  # the next ones carry a later millisecond
    ids = [uuid.UUID(value) for value in made]
    assert {(i.version, i.variant) for i in ids} == {(7, uuid.RFC_4122)}
    assert len(set(made)) == len(made)
    milliseconds = [i.int >> 80 for i in ids]
    assert milliseconds == sorted(milliseconds) and abs(milliseconds[-1] - time.time() * 1000) < 5_000
    # Within one millisecond the order is random: 74 of the 128 bits are, so an id cannot be guessed.
    random_parts = {i.int & ((1 << 76) - 1) for i in ids}  # below the version: 12 + 62 random bits, the variant
    assert len(random_parts) == len(ids)
