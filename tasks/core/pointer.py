"""The production pointer: ``models/<name>/production.json`` names the version in service.

It is replaced atomically (a temporary file renamed over it locally; one PUT on object stores),
and only ever points at a version whose checksums verify. Services load it at start-up and
watch it, so every worker and replica converges on the same version.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

from tasks.core.storage import model_root, verify_version, version_url

POINTER = "production.json"


class ProductionPointer(BaseModel):
    name: str
    version: str
    url: str
    deployed_at: str
    previous_version: str | None = None
    reason: str = ""
    metrics: dict[str, float] = {}


def read_pointer(storage_url: str, name: str) -> ProductionPointer | None:
    fs, root = model_root(storage_url, name)
    path = f"{root}/{POINTER}"
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as handle:
        return ProductionPointer.model_validate(json.load(handle))


def write_pointer(storage_url: str, name: str, version: str, reason: str, metrics: dict[str, Any]) -> ProductionPointer:
    """Point production at ``version`` (after verifying its checksums) and return the new pointer."""
    verify_version(storage_url, name, version)
    current = read_pointer(storage_url, name)
    pointer = ProductionPointer(
        name=name,
        version=version,
        url=version_url(storage_url, name, version),
        deployed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        previous_version=_previous(current, version),
        reason=reason,
        metrics={k: float(v) for k, v in metrics.items()},
    )
    _replace_atomically(storage_url, name, pointer.model_dump_json(indent=2))
    return pointer


def _previous(current: ProductionPointer | None, version: str) -> str | None:
    """The version a rollback returns to; re-deploying the same version keeps the old one."""
    if current is None:
        return None
    return current.previous_version if current.version == version else current.version


def _replace_atomically(storage_url: str, name: str, text: str) -> None:
    fs, root = model_root(storage_url, name)
    target = f"{root}/{POINTER}"
    if isinstance(fs, LocalFileSystem):
        temporary = Path(f"{target}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            temporary.write_text(text, encoding="utf-8")
            with temporary.open("rb") as handle:
                os.fsync(handle.fileno())
            temporary.replace(target)  # atomic: readers see the old pointer or the new one
        finally:
            temporary.unlink(missing_ok=True)  # only left when the write or the rename failed
        return
    with fs.open(target, "w") as handle:  # a single object PUT is atomic on S3-compatible stores
        handle.write(text)
