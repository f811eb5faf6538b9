"""Running the service as a real process on a loopback port, and waiting for what it does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deployments.stack.servers import free_port
from tasks.core.settings import REPO_ROOT, Settings


@contextmanager
def running_service(env: dict[str, str], log_path: Path, workers: int = 1) -> Iterator[str]:
    """uvicorn serving dl_service on a free loopback port; yields the base URL once ready."""
    with running_service_process(env, log_path, workers) as (url, _):
        yield url


@contextmanager
def running_service_process(
    env: dict[str, str], log_path: Path, workers: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As ``running_service``, also yielding the process (with one worker, the one that serves)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "services.dl_service.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            ready_in_a_row = 0
            while ready_in_a_row < 2 * workers:  # with several workers, each must answer
                assert process.poll() is None, log_path.read_text()
                try:
                    ready_in_a_row = (
                        ready_in_a_row + 1 if httpx.get(f"{url}/ready", timeout=2).status_code == 200 else 0
                    )
                except httpx.HTTPError:
                    ready_in_a_row = 0
                assert time.monotonic() < deadline, "the service did not become ready"
                time.sleep(0.3)
            yield url, process
        finally:
            process.terminate()
            process.wait(timeout=30)


def wait_until(condition: Callable[[], object], what: str, seconds: float = 60) -> None:
    """Poll until ``condition()`` is true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def settings_with(**service: object) -> Settings:
    """The environment's settings with some ``MLOPS_SERVICE_*`` values changed, as a test's own app takes them."""
    settings = Settings()
    return settings.model_copy(update={"service": settings.service.model_copy(update=service)})


def resident_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (VmRSS) or its peak since the last reset (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


def reset_peak_memory(pid: int) -> None:
    """Start VmHWM afresh (Linux's clear_refs), so it shows the peak of what follows."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
