"""gunicorn settings of the serving service in the stack (uvicorn workers, one model each).

The app is not preloaded: TensorFlow is not fork-safe, so each worker loads the model itself.
Prometheus' multiprocess folder is emptied at start and a dead worker's gauges are dropped,
so /metrics sums exactly the live workers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

bind = os.environ.get("MLOPS_SERVICE_BIND", "0.0.0.0:8000")
# Set in the environment the workers inherit: each shares the cores among its TensorFlow threads by it.
workers = int(os.environ.setdefault("MLOPS_SERVICE_WORKERS", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
timeout = 120  # model loading at start-up runs off the event loop, but give slow disks room
graceful_timeout = 30  # in-flight requests finish on shutdown and on reload
keepalive = 75  # longer than nginx's upstream keepalive, so nginx closes first
accesslog = None
preload_app = False


def on_starting(server: Any) -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
