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
from typing import Any, TypeVar

from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, Field, ValidationError

from tasks.core.errors import IntegrityError
from tasks.core.storage import NAME_PATTERN, VERSION_PATTERN, model_root, read_fresh, verify_version, version_url

POINTER = "production.json"
Pointer = TypeVar("Pointer", bound=BaseModel)


class ProductionPointer(BaseModel):
    """Which version serves, and the digest of the SHA256SUMS it was released with."""

    # Anchored: a pydantic pattern matches anywhere in the value, so "../1" would pass a bare one.
    name: str = Field(pattern=f"^{NAME_PATTERN.pattern}$")
    version: str = Field(pattern=f"^{VERSION_PATTERN.pattern}$")
    url: str
    deployed_at: str
    previous_version: str | None = Field(None, pattern=f"^{VERSION_PATTERN.pattern}$")
    reason: str = ""
    metrics: dict[str, float] = {}
    sums_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="None only in older pointers")


def read_pointer(storage_url: str, name: str) -> ProductionPointer | None:
    """The pointer, checked: a version that is not a number, or another model's name, is refused."""
    return read_pointer_file(storage_url, name, POINTER, ProductionPointer, "production pointer")


def read_pointer_file(storage_url: str, name: str, file_name: str, kind: type[Pointer], what: str) -> Pointer | None:
    """One of the model's pointer files as read now, validated as ``kind``; None when it does not exist."""
    fs, root = model_root(storage_url, name)
    path = f"{root}/{file_name}"
    raw = read_fresh(fs, path)
    if raw is None:
        return None
    try:
        pointer = kind.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as error:
        raise IntegrityError(f"{path} is not a valid {what}: {error}") from None
    if getattr(pointer, "name", name) != name:
        raise IntegrityError(f"{path} names model {getattr(pointer, 'name', '?')!r}, not {name!r}")
    return pointer


def write_pointer(storage_url: str, name: str, version: str, reason: str, metrics: dict[str, Any]) -> ProductionPointer:
    """Point production at ``version`` (after verifying its checksums) and return the new pointer."""
    verified = verify_version(storage_url, name, version)
    current = read_pointer(storage_url, name)
    pointer = ProductionPointer(
        name=name,
        version=version,
        url=version_url(storage_url, name, version),
        deployed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        previous_version=_previous(current, version),
        reason=reason,
        metrics={k: float(v) for k, v in metrics.items()},
        sums_sha256=verified.sums_digest,
    )
    replace_atomically(storage_url, name, POINTER, pointer.model_dump_json(indent=2))
    return pointer


def _previous(current: ProductionPointer | None, version: str) -> str | None:
    """The version a rollback returns to; re-deploying the same version keeps the old one."""
    if current is None:
        return None
    return current.previous_version if current.version == version else current.version


def replace_atomically(storage_url: str, name: str, file_name: str, text: str) -> None:
    """Write one of the model's pointer files so that readers see the old text or the new, never half."""
    fs, root = model_root(storage_url, name)
    target = f"{root}/{file_name}"
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
