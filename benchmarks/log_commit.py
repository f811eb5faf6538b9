"""The prediction log's group commit (32 rows, as a full micro-batch writes them) into a growing SQLite log,
with the service's time-ordered prediction ids (UUID version 7) against random ones (UUID version 4), and the
service's fsync per commit (``synchronous=FULL``, what keeps an answered prediction through a power cut)
against none (``NORMAL``): the mean commit time over the first and the last 300 of BATCHES commits.

    python benchmarks/log_commit.py [--batches 3000]        (about 45 s)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from sqlalchemy import event

from services.dl_service.store import PredictionLog, new_prediction_id, utc_now

ROWS_PER_COMMIT = 32
EDGE = 300  # commits averaged at each end of the run


def row(prediction_id: str, rng: np.random.Generator) -> dict[str, Any]:
    """A row shaped as the service writes one (a trusted version, no kept image)."""
    return {
        "id": prediction_id,
        "created_at": utc_now(),
        "model_name": "fashion-cnn",
        "model_version": "1",
        "predicted_label": "ankle_boot",
        "confidence": 0.91,
        "probabilities": list(np.round(rng.dirichlet(np.ones(10)), 7)),
        "uae": list(np.round(rng.normal(size=8), 7)),
        "prediction_set": ["ankle_boot"],
        "ood_score": 12.5,
        "ood": False,
        "abstain": False,
        "abstain_reason": None,
        "brightness": 0.29,
        "contrast": 0.33,
        "sharpness": 0.12,
        "width": 28.0,
        "height": 28.0,
        "channels": 1.0,
        "sha256": "ab" * 32,
        "latency_ms": 3.1,
        "request_id": None,
        "image_uri": None,
    }


def commit_times(folder: Path, make_id: Callable[[], str], batches: int, synchronous: str = "FULL") -> list[float]:
    (folder / "spool").mkdir(parents=True)
    log = PredictionLog(f"sqlite:///{folder / 'log.db'}", folder / "spool", 0.2, 300)
    if synchronous != "FULL":  # after the service's own pragma, on every connection from now on
        event.listen(
            log.engine, "connect", lambda connection, _: connection.execute(f"PRAGMA synchronous={synchronous}")
        )
        log.engine.dispose()
    rng = np.random.default_rng(0)
    seconds = []
    for _ in range(batches):
        rows = [row(make_id(), rng) for _ in range(ROWS_PER_COMMIT)]
        started = time.perf_counter()
        log.write(rows)
        seconds.append(time.perf_counter() - started)
    log.engine.dispose()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=3000)
    args = parser.parse_args()
    print(f"group commits of {ROWS_PER_COMMIT} rows into SQLite (WAL), {args.batches:,} commits each")
    with tempfile.TemporaryDirectory(prefix="bench-log-commit-") as folder:
        contenders: dict[str, tuple[Callable[[], str], str]] = {
            "random ids (UUID 4)": (lambda: str(uuid.uuid4()), "FULL"),
            "time-ordered ids (UUID 7), no fsync (NORMAL)": (new_prediction_id, "NORMAL"),
            "time-ordered ids (UUID 7), fsynced: the service's": (new_prediction_id, "FULL"),
        }
        for number, (name, (make_id, synchronous)) in enumerate(contenders.items()):
            seconds = commit_times(Path(folder) / str(number), make_id, args.batches, synchronous)
            first, last = (1000 * statistics.mean(part) for part in (seconds[:EDGE], seconds[-EDGE:]))
            rows = args.batches * ROWS_PER_COMMIT
            print(f"  {name:<52} first {EDGE}: {first:.2f} ms   last {EDGE} (near {rows:,} rows): {last:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
