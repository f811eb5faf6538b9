"""The shadow pointer: ``models/<name>/shadow.json`` names a challenger every service replica also runs.

A shadowed version predicts the same micro-batches as the production version (or a sampled share of
them), off the response path: clients only ever get the production version's answer, and the
shadow's output is logged beside it for ``mlops shadow report``. Like the production pointer it is
replaced atomically, names only a version whose checksums verify, and is followed by every replica;
removing it stops the shadow everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from tasks.core.pointer import read_pointer_file, replace_atomically
from tasks.core.storage import NAME_PATTERN, VERSION_PATTERN, model_root, verify_version

SHADOW_POINTER = "shadow.json"


class ShadowPointer(BaseModel):
    """Which version runs in shadow, on what share of the batches, and since when."""

    name: str = Field(pattern=f"^{NAME_PATTERN.pattern}$")
    version: str = Field(pattern=f"^{VERSION_PATTERN.pattern}$")
    sums_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    sample: float = Field(gt=0.0, le=1.0, description="share of micro-batches the shadow also predicts")
    started_at: str
    champion: str | None = Field(None, pattern=f"^{VERSION_PATTERN.pattern}$")  # in production at the start
    reason: str = ""


def read_shadow(storage_url: str, name: str) -> ShadowPointer | None:
    """The shadow pointer, checked; None when no version is in shadow."""
    return read_pointer_file(storage_url, name, SHADOW_POINTER, ShadowPointer, "shadow pointer")


def write_shadow(
    storage_url: str, name: str, version: str, sample: float, champion: str | None, reason: str
) -> ShadowPointer:
    """Put ``version`` in shadow (after verifying its checksums), replacing any version shadowed before."""
    verified = verify_version(storage_url, name, version)
    pointer = ShadowPointer(
        name=name,
        version=version,
        sums_sha256=verified.sums_digest,
        sample=sample,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        champion=champion,
        reason=reason,
    )
    replace_atomically(storage_url, name, SHADOW_POINTER, pointer.model_dump_json(indent=2))
    return pointer


def clear_shadow(storage_url: str, name: str) -> bool:
    """Stop shadowing (services drop the shadow at their next pointer check); False when none ran."""
    fs, root = model_root(storage_url, name)
    path = f"{root}/{SHADOW_POINTER}"
    if not fs.exists(path):
        return False
    fs.rm_file(path)
    return True
