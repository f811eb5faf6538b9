"""The prediction log: predictions and feedback in SQL (SQLite by default, PostgreSQL in the stack).

A prediction is durable before its client sees it: the predictions of one micro-batch are committed
together (``write``, called by the batcher), to the database, or, while it is unreachable, to an
fsynced spool file, and only then are their responses released. A process killed with SIGKILL
right after answering, or a machine losing power, has therefore logged everything it answered
(SQLite fsyncs each commit too). When neither the database nor the spool can take a row (a full
disk), the request fails with 503 instead of claiming a prediction it cannot keep.

The spool folder is shared by every worker process (and replica). Each process appends only to
its own ``<id>.open`` segment, closed (renamed to ``<id>.<n>rows.jsonl``) before each replay pass.
Only closed files are claimed, by renaming to a fresh ``.replaying`` name; a failed replay hands
the file back under another fresh name, so no rename ever lands on a path someone else made.
A torn line (a process killed mid-write) is set aside with its reason and the rest replayed.
Segments and claims untouched for ``stale_seconds`` belong to dead processes and are taken over.
Re-inserting a row is ignored by its primary key, so a replay repeated after a crash duplicates nothing.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, ProgrammingError

from tasks.core.errors import MlopsError
from tasks.core.prediction_log import add_missing_columns, feedback, metadata, predictions, shadow_predictions

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, DBAPIError, OSError)
# The database is up but refuses what a row holds (a constraint, a value it cannot store).
REFUSED_ROW_ERRORS = (IntegrityError, DataError)
OPEN, CLOSED, CLAIMED, REJECTED = ".open", ".jsonl", ".replaying", "rejected.ndjson"
CONNECT_TIMEOUT_SECONDS = 3

Row = dict[str, Any]


class StoreUnavailable(MlopsError):
    """The database cannot be reached right now."""


class LogUnavailable(MlopsError):
    """Neither the database nor the spool can take a prediction: it is not answered."""


class UnknownPrediction(MlopsError):
    """Feedback names a prediction id that was never logged."""


def new_prediction_id() -> str:
    """A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Ids made later sort
    later, so each group commit appends to the end of the primary-key index instead of touching a random
    page per row: the commit stays as fast at a million rows as at the first (BENCHMARKS.md), and an id
    is still unguessable."""
    milliseconds = time.time_ns() // 1_000_000
    version_and_variant = (0x7 << 76) | (0b10 << 62)
    random_bits = (secrets.randbits(12) << 64) | secrets.randbits(62)
    return str(uuid.UUID(int=(milliseconds << 80) | version_and_variant | random_bits))


def utc_now() -> datetime:
    return datetime.now(UTC)


class PredictionLog:
    """Durable prediction rows (one write per micro-batch, before its answers); synchronous feedback writes."""

    def __init__(
        self, database_url: str, spool_dir: Path, flush_seconds: float = 0.2, stale_seconds: float = 300
    ) -> None:
        self.engine = _engine(database_url)
        self._insert_statement = _insert_ignoring_duplicates(self.engine.dialect.name, predictions)
        self._shadow_statement = _insert_ignoring_duplicates(self.engine.dialect.name, shadow_predictions)
        on_sqlite = self.engine.dialect.name == "sqlite"
        self._sqlite_insert = _DriverInsert(self.engine, predictions) if on_sqlite else None
        self._sqlite_shadow_insert = _DriverInsert(self.engine, shadow_predictions) if on_sqlite else None
        self.spool_dir, self.flush_seconds, self.stale_seconds = spool_dir, flush_seconds, stale_seconds
        self.written = 0  # rows this process put in the database
        self.unstorable = 0  # rows neither the database nor the spool would take (their requests got 503)
        self._segment = _Segment(spool_dir)
        self._database_down = False  # after a failure, rows go straight to the spool until a replay succeeds
        self._write_lock = threading.Lock()  # one writer of the database and the segment at a time
        self._stop = threading.Event()
        self._replayer: threading.Thread | None = None
        self._tables_ready = False
        self._counts: dict[str, int] = {}  # rows per spool file whose name does not say (read once)
        self._rejected: tuple[int, int] = (0, 0)  # (file size, lines) of the set-aside file

    def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._ensure_tables()
        except DATABASE_ERRORS as error:
            self._database_down = True
            logger.warning("Prediction database unreachable at start-up (%s); spooling until it returns", error)
        self._replayer = threading.Thread(target=self._replay_forever, name="prediction-log-replay", daemon=True)
        self._replayer.start()

    def write(self, rows: Sequence[Row]) -> None:
        """Make rows durable now: the database, else the spool; raises LogUnavailable when neither takes them."""
        if not rows:
            return
        with self._write_lock:
            if not self._database_down:
                try:
                    self._insert_sorting_out_rejected(list(rows))
                    return
                except DATABASE_ERRORS as error:
                    self._database_down = True
                    logger.warning("Prediction database unreachable (%s); spooling", type(error).__name__)
            try:
                self._segment.append(rows)
            except OSError as error:
                self.unstorable += len(rows)
                logger.error("Cannot spool %d prediction rows (%s): their requests are refused", len(rows), error)
                raise LogUnavailable("the prediction log cannot store predictions right now; retry shortly") from None

    def write_shadow(self, rows: Sequence[Row]) -> bool:
        """Store what a shadowed version said; False when the database is away or refuses them.

        Best effort by design: no client received these outputs, so they are neither spooled nor
        allowed to slow the production rows (the shadow report counts what arrived)."""
        if not rows or self._database_down:
            return False
        try:
            self._ensure_tables()
            with self.engine.begin() as connection:
                if self._sqlite_shadow_insert is not None:
                    insert_rows = self._sqlite_shadow_insert
                    connection.exec_driver_sql(insert_rows.sql, insert_rows.parameters(list(rows)))
                else:
                    connection.execute(self._shadow_statement, list(rows))
            return True
        except (*DATABASE_ERRORS, *REFUSED_ROW_ERRORS) as error:
            logger.warning("%d shadow rows not stored: %s", len(rows), type(error).__name__)
            return False

    def flush(self) -> None:
        """Close this process's segment and replay every closed spool file (also every flush_seconds)."""
        with self._write_lock:
            self._segment.close()
        if self._database_down and not self._database_reachable():
            return
        if self._replay_spool():
            self._database_down = False

    def close(self) -> None:
        self._stop.set()
        if self._replayer is not None:
            self._replayer.join(timeout=10)
        self.flush()
        self.engine.dispose()

    def add_feedback(self, prediction_id: str, label: str) -> Row:
        """Store the true label of a logged prediction; the prediction must exist."""
        for first_try in (True, False):
            try:
                row = self._insert_feedback(prediction_id, label)
            except DATABASE_ERRORS as error:
                # The driver's text names hosts, roles and SQL: for the log, never for a client.
                logger.warning("Prediction database unreachable for feedback: %s", error)
                raise StoreUnavailable("the prediction database is unreachable; try again shortly") from None
            if row is not None:
                return row
            if first_try:
                self.flush()  # not found: it may still be spooled
        raise UnknownPrediction(f"no prediction with id {prediction_id}")

    def _insert_feedback(self, prediction_id: str, label: str) -> Row | None:
        """The feedback row, or None when the prediction is not in the table."""
        try:
            return self._feedback_transaction(prediction_id, label)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            # Connections are not pinged before use: one that died with a server restart is replaced once.
            return self._feedback_transaction(prediction_id, label)

    def _feedback_transaction(self, prediction_id: str, label: str) -> Row | None:
        self._ensure_tables()
        with self.engine.begin() as connection:
            query = select(predictions.c.id).where(predictions.c.id == prediction_id)
            if connection.execute(query).first() is None:
                return None
            row = {"prediction_id": prediction_id, "label": label, "created_at": utc_now()}
            connection.execute(insert(feedback), row)
            return row

    def pending_spool_rows(self) -> int:
        """Rows waiting in the spool, from file names (no file is read): closed and claimed files,
        and this process's open segment. Other processes' open segments close within flush_seconds."""
        total = self._segment.rows
        for path in self._spool_files():
            total += self._rows_in(path)
        return total

    def rejected_rows(self) -> int:
        """Rows the database refused, set aside; the file is counted again only when it has grown."""
        path = self.spool_dir / REJECTED
        size = path.stat().st_size if path.exists() else 0
        if size != self._rejected[0]:
            self._rejected = (size, _count_lines(path) if size else 0)
        return self._rejected[1]

    def _replay_forever(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:
                logger.exception("Prediction log replay failed; rows stay spooled")

    def _database_reachable(self) -> bool:
        try:
            self._ensure_tables()
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except DATABASE_ERRORS:
            return False

    def _ensure_tables(self) -> None:
        """Create the tables once; raises the database error while it is unreachable."""
        if self._tables_ready:
            return
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                self._add_missing_columns()
                self._tables_ready = True
                return
            except (IntegrityError, ProgrammingError):
                # Another worker process created the same tables at the same moment (PostgreSQL
                # reports the race as a duplicate type); the next check-first pass sees them.
                time.sleep(0.2 * (attempt + 1))
        metadata.create_all(self.engine)
        self._add_missing_columns()
        self._tables_ready = True

    def _add_missing_columns(self) -> None:
        added = add_missing_columns(self.engine)
        if added:
            logger.warning("The prediction log gained columns %s (null in earlier rows)", ", ".join(added))

    def _insert_sorting_out_rejected(self, rows: list[Row]) -> None:
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
                self._set_aside(row, str(getattr(error, "orig", error)))

    def _insert(self, rows: list[Row]) -> None:
        self._ensure_tables()  # the database may have been down at start-up
        with self.engine.begin() as connection:
            if self._sqlite_insert is not None:
                connection.exec_driver_sql(self._sqlite_insert.sql, self._sqlite_insert.parameters(rows))
            else:
                connection.execute(self._insert_statement, rows)

    def _set_aside(self, row: Row | str, reason: str) -> None:
        """Keep a row the database refused (or a torn line), with the reason, for an operator to look at."""
        record = {"error": reason, "row": row}
        _append_synced(self.spool_dir / REJECTED, [json.dumps(record, default=_json_default)])
        logger.error("Prediction row set aside in %s: %s", REJECTED, reason)

    def _spool_files(self) -> list[Path]:
        return [path for path in self.spool_dir.iterdir() if path.name.endswith((CLOSED, CLAIMED))]

    def _rows_in(self, path: Path) -> int:
        count = _rows_from_name(path.name)
        if count is None:
            if path.name not in self._counts:
                try:
                    self._counts[path.name] = _count_lines(path)
                except FileNotFoundError:
                    return 0
            count = self._counts[path.name]
        return count

    def _replay_spool(self) -> bool:
        """Insert closed spool files, oldest first; True when none is left for this pass."""
        self._take_over_abandoned()
        closed = []
        for path in self.spool_dir.glob(f"*{CLOSED}"):
            try:
                closed.append((path.stat().st_mtime, path))
            except FileNotFoundError:
                continue  # another process claimed it meanwhile
        for _, path in sorted(closed):
            claimed = self.spool_dir / f"{path.name}.{uuid.uuid4().hex}{CLAIMED}"
            try:
                path.rename(claimed)  # atomic: exactly one process wins each file
            except FileNotFoundError:
                continue
            if not self._replay_claimed(claimed):
                return False
        return True

    def _replay_claimed(self, claimed: Path) -> bool:
        rows, torn = _read_spool_file(claimed)
        try:
            if rows:
                self._insert_sorting_out_rejected(rows)
        except DATABASE_ERRORS:
            claimed.rename(self.spool_dir / _closed_name(len(rows) + len(torn)))  # a fresh name
            return False
        for line in torn:
            self._set_aside(line, "torn line: the writing process stopped mid-line")
        claimed.unlink()
        self._counts.pop(claimed.name, None)
        logger.info("Replayed %d spooled prediction rows", len(rows))
        return True

    def _take_over_abandoned(self) -> None:
        """Close segments and hand back claims of processes that died (untouched for stale_seconds).

        Age, not process ids, decides: replicas in other containers share the spool folder but not
        the pid namespace. A live process closes its segment every flush_seconds, far below the age.
        """
        now = time.time()
        for path in self.spool_dir.iterdir():
            if not path.name.endswith((OPEN, CLAIMED)) or path == self._segment.path:
                continue
            try:
                status = path.stat()  # a rename sets ctime: a claim's age
                if now - max(status.st_mtime, status.st_ctime) < self.stale_seconds:
                    continue
                path.rename(self.spool_dir / _closed_name(self._rows_in(path)))
                logger.warning("Took over %s, abandoned by a process that stopped", path.name)
            except FileNotFoundError:
                continue  # another process took it first


class _Segment:
    """This process's open spool file: appended and fsynced per micro-batch, closed before each replay."""

    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir
        self.path: Path | None = None
        self.rows = 0

    def append(self, rows: Sequence[Row]) -> None:
        if self.path is None:
            self.path = self.spool_dir / f"{uuid.uuid4().hex}{OPEN}"
        _append_synced(self.path, [json.dumps(row, default=_json_default) for row in rows])
        self.rows += len(rows)

    def close(self) -> None:
        if self.path is None:
            return
        self.path.rename(self.spool_dir / _closed_name(self.rows))
        self.path, self.rows = None, 0


class _DriverInsert:
    """SQLite's insert, handed to the driver as plain tuples: the prediction log's hot path.

    SQLAlchemy's per-row parameter processing held the GIL for about 1 ms per micro-batch, time
    the event loop waited for; here each value goes through the same type processors, called
    directly, and the driver's executemany does the rest. (PostgreSQL keeps SQLAlchemy's
    multi-row VALUES, which is what makes its inserts one round trip.)
    """

    def __init__(self, engine: Engine, table: Table) -> None:
        columns = list(table.columns)
        self.names = [column.name for column in columns]
        self.processors = [column.type.bind_processor(engine.dialect) for column in columns]
        keys = ", ".join(column.name for column in table.primary_key.columns)
        self.sql = (
            f"INSERT INTO {table.name} ({', '.join(self.names)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) ON CONFLICT ({keys}) DO NOTHING"
        )

    def parameters(self, rows: list[Row]) -> list[tuple[Any, ...]]:
        pairs = list(zip(self.names, self.processors, strict=True))
        return [
            tuple(row.get(name) if process is None else process(row.get(name)) for name, process in pairs)
            for row in rows
        ]


def _engine(database_url: str) -> Engine:
    """Connections that give up soon: a database that hangs sends rows to the spool, not into a long wait.

    No ping before each use: it would cost a round trip per micro-batch. After a server restart the
    first write fails, SQLAlchemy discards the pool's dead connections, and that batch is spooled.
    """
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"timeout": CONNECT_TIMEOUT_SECONDS})
        event.listen(engine, "connect", _sqlite_write_ahead_log)
        return engine
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if database_url.startswith("postgresql") else {}
    return create_engine(database_url, connect_args=connect_args)


def _sqlite_write_ahead_log(connection: Any, _: Any) -> None:
    """Readers (the monitor) never block the service's commits, and each commit is fsynced before its
    answers go: an answered prediction survives a power cut, as it would in the spool or PostgreSQL.
    The fsync is one per micro-batch, not per request (``benchmarks/log_commit.py`` measures it)."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")


def _insert_ignoring_duplicates(dialect: str, table: Table):  # type: ignore[no-untyped-def]
    keys = [column.name for column in table.primary_key.columns]
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
    return insert(table)


def _append_synced(path: Path, lines: list[str]) -> None:
    """Append whole lines and fsync; on failure (a full disk) cut the file back, so no torn line stays."""
    data = "".join(line + "\n" for line in lines).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(descriptor).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(descriptor, data[written:])
            os.fsync(descriptor)
        except OSError:
            os.ftruncate(descriptor, size)
            raise
    finally:
        os.close(descriptor)


def _read_spool_file(path: Path) -> tuple[list[Row], list[str]]:
    """The rows of a spool file, and the lines that are not whole rows (torn by a killed writer)."""
    rows, torn = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line:
            continue
        try:
            rows.append(_decode_row(line))
        except (ValueError, KeyError, TypeError):
            torn.append(line)
    return rows, torn


def _closed_name(rows: int) -> str:
    """A fresh name for a closed spool file that says how many rows it holds (counted without reading it)."""
    return f"{uuid.uuid4().hex}.{rows}rows{CLOSED}"


def _rows_from_name(name: str) -> int | None:
    """``<id>.<n>rows.jsonl`` and its claims ``<id>.<n>rows.jsonl.<claim>.replaying`` hold n rows."""
    parts = name.split(".")
    count = parts[1].removesuffix("rows") if len(parts) >= 3 and parts[1].endswith("rows") else ""
    return int(count) if count.isdigit() else None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot spool {type(value).__name__}")


def _decode_row(line: str) -> Row:
    row = json.loads(line)
    row["created_at"] = datetime.fromisoformat(row["created_at"])
    return row


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)
