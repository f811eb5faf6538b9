"""A real S3 API server for the tests: moto's server mode on a loopback port (a test substitute for
MinIO, speaking the same protocol to the same client, s3fs/botocore)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deployments.stack.servers import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def s3_server(log_path: Path) -> Iterator[str]:
    """Start the server; yield its endpoint URL once it answers."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    httpx.get(endpoint, timeout=2)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "the S3 server did not start"
                    time.sleep(0.2)
            yield endpoint
        finally:
            process.terminate()
            process.wait(timeout=30)
