"""Fixtures of the core tests: a small model bundle of plain files, as training leaves one."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    source = tmp_path / "bundle"
    source.mkdir()
    for name, content in {
        "model.keras": b"weights" * 1000,
        "uae_encoder.keras": b"encoder" * 100,
        "metadata.yaml": b"name: demo\n",
        "reference_features.parquet": b"PAR1...",
    }.items():
        (source / name).write_bytes(content)
    return source
