"""The prediction log: predictions and feedback in SQL (SQLite by default, PostgreSQL in the stack).

Writes leave the request path: rows queue in memory and a writer thread inserts them in batches.
When the database is unreachable, rows are appended (and fsynced) to a spool file and inserted
once it returns, oldest first; a re-inserted row is ignored by its primary key, so a crash between
insert and spool clean-up cannot duplicate it. Nothing is lost.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, ProgrammingError

from tasks.core.errors import MlopsError
from tasks.core.prediction_log import feedback, metadata, predictions

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, DBAPIError, OSError)
# The database is up but refuses what a row holds (a constraint, a value it cannot store).
REFUSED_ROW_ERRORS = (IntegrityError, DataError)


class StoreUnavailable(MlopsError):
    """The database cannot be reached right now."""


class UnknownPrediction(MlopsError):
    """Feedback names a prediction id that was never logged."""


def new_prediction_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


class PredictionLog:
    """Batched, durable writes of prediction rows; synchronous feedback writes."""

    def __init__(
        self, database_url: str, spool_dir: Path, flush_seconds: float = 0.2, stale_claim_seconds: float = 300
    ) -> None:
        self.engine: Engine = create_engine(database_url, pool_pre_ping=True)
        self.spool_dir, self.flush_seconds = spool_dir, flush_seconds
        self.stale_claim_seconds = stale_claim_seconds
        self._spool = spool_dir / f"pending-{os.getpid()}-{uuid.uuid4().hex[:6]}.jsonl"
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.written = 0
        self._tables_ready = False

    def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._ensure_tables()
        except DATABASE_ERRORS as error:
            logger.warning("Prediction database unreachable at start-up (%s); spooling until it returns", error)
        self._thread = threading.Thread(target=self._writer, name="prediction-log", daemon=True)
        self._thread.start()

    def _ensure_tables(self) -> None:
        """Create the tables once; raises the database error while it is unreachable."""
        if self._tables_ready:
            return
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                self._tables_ready = True
                return
            except (IntegrityError, ProgrammingError):
                # Another worker process created the same tables at the same moment (PostgreSQL
                # reports the race as a duplicate type); the next check-first pass sees them.
                time.sleep(0.2 * (attempt + 1))
        metadata.create_all(self.engine)
        self._tables_ready = True

    def record(self, row: dict[str, Any]) -> None:
        """Queue one prediction row; returns at once."""
        self._queue.put(row)

    def flush(self) -> None:
        """Write everything queued and spooled now (the writer thread does this every flush_seconds)."""
        with self._write_lock:
            rows = self._drain()
            if self._replay_spool():
                self._insert_or_spool(rows)
            else:
                self._append_to_spool(rows)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
        self.engine.dispose()

    def add_feedback(self, prediction_id: str, label: str) -> dict[str, Any]:
        """Store the true label of a logged prediction; the prediction must exist."""
        for first_try in (True, False):
            try:
                self._ensure_tables()
                with self.engine.begin() as connection:
                    query = select(predictions.c.id).where(predictions.c.id == prediction_id)
                    if connection.execute(query).first() is not None:
                        row = {"prediction_id": prediction_id, "label": label, "created_at": utc_now()}
                        connection.execute(insert(feedback), row)
                        return row
            except DATABASE_ERRORS as error:
                # The driver's text names hosts, roles and SQL: for the log, never for a client.
                logger.warning("Prediction database unreachable for feedback: %s", error)
                raise StoreUnavailable("the prediction database is unreachable; try again shortly") from None
            if first_try:
                self.flush()  # not found: it may still be queued or spooled
        raise UnknownPrediction(f"no prediction with id {prediction_id}")

    def pending_spool_rows(self) -> int:
        return sum(_count_lines(path) for path in self.spool_dir.glob("*.jsonl"))

    def rejected_rows(self) -> int:
        rejected = self.spool_dir / "rejected.ndjson"
        return _count_lines(rejected) if rejected.exists() else 0

    def _writer(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:
                logger.exception("Prediction log writer failed; rows stay queued or spooled")

    def _drain(self) -> list[dict[str, Any]]:
        rows = []
        while True:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                return rows

    def _insert_or_spool(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            self._insert_sorting_out_rejected(rows)
        except DATABASE_ERRORS as error:
            logger.warning("Prediction database unreachable (%s); spooling %d rows", type(error).__name__, len(rows))
            self._append_to_spool(rows)

    def _insert_sorting_out_rejected(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows; if the database refuses the batch for what is in it (not for being away),
        insert them one at a time and set the refused ones aside, so one bad row never blocks the log.

        Raises the database error when it is unreachable: the caller keeps the rows.
        """
        try:
            self._insert(rows)
            self.written += len(rows)
            return
        except REFUSED_ROW_ERRORS:
            pass
        for row in rows:
            try:
                self._insert([row])
                self.written += 1
            except REFUSED_ROW_ERRORS as error:
                self._set_aside(row, error)

    def _set_aside(self, row: dict[str, Any], error: Exception) -> None:
        """Keep a row the database refused, with the reason, for an operator to look at."""
        rejected = self.spool_dir / "rejected.ndjson"  # not *.jsonl: never replayed (see rejected_rows)
        record = {"error": str(getattr(error, "orig", error)), "row": row}
        with rejected.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=_json_default) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        logger.error("Prediction %s refused by the database (%s); kept in %s", row.get("id"), record["error"], rejected)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        self._ensure_tables()  # the database may have been down at start-up
        with self.engine.begin() as connection:
            connection.execute(_insert_ignoring_duplicates(self.engine.dialect.name), rows)

    def _append_to_spool(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self._spool.open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, default=_json_default) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _replay_spool(self) -> bool:
        """Insert spooled rows, oldest file first; True when the spool is empty afterwards."""
        self._adopt_abandoned_claims()
        for path in sorted(self.spool_dir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
            claimed = path.with_suffix(f".{os.getpid()}.replaying")
            try:
                path.rename(claimed)  # one process replays a file, even with several workers
            except FileNotFoundError:
                continue
            rows = [_decode_row(line) for line in claimed.read_text(encoding="utf-8").splitlines() if line]
            try:
                self._insert_sorting_out_rejected(rows)
            except DATABASE_ERRORS:
                claimed.rename(path)
                return False
            claimed.unlink()
            logger.info("Replayed %d spooled prediction rows", len(rows))
        return True

    def _adopt_abandoned_claims(self) -> None:
        """Put back files a process claimed for replay and never finished (it died mid-replay).

        A replay takes well under a second, so a claim older than ``stale_claim_seconds`` is
        abandoned. Age, not process ids, decides: replicas in other containers share the spool
        folder but not the pid namespace. Replaying twice is harmless (duplicates are ignored).
        """
        now = time.time()
        for claimed in self.spool_dir.glob("*.replaying"):
            try:
                if now - claimed.stat().st_ctime < self.stale_claim_seconds:  # rename sets ctime: the claim's age
                    continue
                claimed.rename(claimed.with_name(claimed.name.split(".", 1)[0] + ".jsonl"))
                logger.warning("Took over %s, abandoned mid-replay", claimed.name)
            except FileNotFoundError:
                continue  # another process took it first


def _insert_ignoring_duplicates(dialect: str):  # type: ignore[no-untyped-def]
    if dialect == "postgresql":
        return postgresql.insert(predictions).on_conflict_do_nothing(index_elements=["id"])
    if dialect == "sqlite":
        return sqlite.insert(predictions).on_conflict_do_nothing(index_elements=["id"])
    return insert(predictions)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot spool {type(value).__name__}")


def _decode_row(line: str) -> dict[str, Any]:
    row = json.loads(line)
    row["created_at"] = datetime.fromisoformat(row["created_at"])
    return row


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)
