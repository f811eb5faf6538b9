"""Fixtures of the service tests: the service as a real process on a loopback port, a fresh PostgreSQL log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from deployments.stack.servers import PostgresCluster
from tests.helpers.service import running_service


@pytest.fixture
def server(service_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with running_service(service_env, tmp_path / "server.log") as url:
        yield url


@pytest.fixture
def fresh_database(postgres_server: PostgresCluster) -> str:
    """The session's PostgreSQL without the prediction log's tables: the service creates them anew."""
    engine = create_engine(postgres_server.url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS feedback, predictions"))
    engine.dispose()
    return postgres_server.url
