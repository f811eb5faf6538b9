"""Fixtures of the service tests: the service as a real process on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.service import running_service


@pytest.fixture
def server(service_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with running_service(service_env, tmp_path / "server.log") as url:
        yield url
