"""Fixtures of the flow tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def flow_state(prefect_api: None, state_dir: Path) -> Iterator[Path]:
    """A private state folder whose cached task results are this test's alone, so no test reuses another's."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: state_dir / "prefect-results"}):
        yield state_dir
