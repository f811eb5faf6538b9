"""The audit trail: who put which version in production, when, and on what evidence.

An append-only, hash-chained log in central storage, one JSON object per entry under
``models/<name>/audit/<sequence>.json``. Each entry holds the hash of the one before it and its own
hash over everything else it says, so a modified entry (its hash no longer matches), a deleted one
(a gap in the sequence, or the next entry's link breaks) or a reordered one is found by
``verify_chain``. On a local or mounted store an entry is written aside and hard-linked into place,
which fails when its number is taken, so two writers never share one and no reader sees half an
entry; on an object store the check-then-write leaves a small window, which the chain check would
expose.

Every entry names the version's provenance as published (data revision, commit and content hash,
code commit, config hash, the digest of its SHA256SUMS and the key that signed it), so
``mlops trace`` answers "which data and code made the model that said this" from the audit alone.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import random
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ValidationError

from tasks.core.storage import model_root, read_metadata

AUDIT_FOLDER = "audit"
GENESIS = "0" * 64  # the link of the first entry
Event = Literal["promotion", "rollback", "refused", "shadow_start", "shadow_stop"]
SEQUENCE_DIGITS = 8
APPEND_ATTEMPTS = 50


class AuditEntry(BaseModel):
    sequence: int
    event: Event
    model: str
    version: str
    previous_version: str | None = None  # in production before this entry
    at: str  # ISO 8601, UTC
    actor: str  # a user at a host, or a Prefect flow run
    reason: str
    evidence: dict[str, Any] | None = None  # a gate decision's intervals
    provenance: dict[str, Any] = {}
    previous_hash: str
    hash: str = ""

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of every field but ``hash``."""
        body = self.model_dump(mode="json", exclude={"hash"})
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def actor() -> str:
    """Who acts, when the caller does not say (a flow names its run): the user at this host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def version_provenance(storage_url: str, name: str, version: str) -> dict[str, Any]:
    """What the version's metadata and checksums say made it; empty fields for a version without them."""
    fs, root = model_root(storage_url, name)
    metadata = read_metadata(storage_url, name, version)
    sums = f"{root}/{version}/SHA256SUMS"
    digest = hashlib.sha256(fs.cat_file(sums)).hexdigest() if fs.exists(sums) else None
    dataset, code = metadata.get("dataset", {}), metadata.get("code", {})
    return {
        "data_path": dataset.get("path"),
        "data_revision": dataset.get("revision"),
        "data_commit": dataset.get("commit"),
        "data_content_hash": dataset.get("content_hash"),
        "code_commit": code.get("commit"),
        "code_dirty": code.get("dirty"),
        "config_hash": metadata.get("config_hash"),
        "sha256sums_digest": digest,
    }


def read_raw(storage_url: str, name: str) -> list[tuple[str, bytes]]:
    """Every entry file (its name, its bytes), in sequence order."""
    fs, root = model_root(storage_url, name)
    folder = f"{root}/{AUDIT_FOLDER}"
    if not fs.exists(folder):
        return []
    paths = sorted(p for p in fs.ls(folder, detail=False) if str(p).endswith(".json"))
    return [(str(path).rsplit("/", 1)[-1], fs.cat_file(path)) for path in paths]


def read_history(storage_url: str, name: str) -> list[AuditEntry]:
    """The entries that parse, in order (``verify_chain`` reports the ones that do not)."""
    entries = []
    for _, raw in read_raw(storage_url, name):
        try:
            entries.append(AuditEntry.model_validate_json(raw))
        except ValidationError:
            continue
    return entries


def verify_chain(storage_url: str, name: str) -> list[str]:
    """Every break in the chain, in words; empty when the log is intact."""
    problems = []
    expected_link, expected_sequence = GENESIS, 1
    for file_name, raw in read_raw(storage_url, name):
        try:
            entry = AuditEntry.model_validate_json(raw)
        except ValidationError:
            problems.append(f"{file_name}: not a valid audit entry")
            continue
        if file_name != f"{entry.sequence:0{SEQUENCE_DIGITS}d}.json":
            problems.append(f"{file_name}: holds entry {entry.sequence}, so an entry was renamed or moved")
        if entry.sequence != expected_sequence:
            missing = f"{expected_sequence}" + (
                f"-{entry.sequence - 1}" if entry.sequence - 1 > expected_sequence else ""
            )
            problems.append(f"entry {missing} missing before entry {entry.sequence}: deleted")
        if entry.hash != entry.content_hash():
            problems.append(f"entry {entry.sequence}: its content no longer matches its hash: modified")
        elif entry.previous_hash != expected_link:
            problems.append(f"entry {entry.sequence}: does not link to the entry before it: one was changed or removed")
        expected_link, expected_sequence = entry.hash, entry.sequence + 1
    return problems


def append_entry(
    storage_url: str,
    name: str,
    event: Event,
    version: str,
    reason: str,
    previous_version: str | None = None,
    evidence: dict[str, Any] | None = None,
    who: str | None = None,
) -> AuditEntry:
    """Add one entry after the newest, linked to it; never rewrites an existing one."""
    fs, root = model_root(storage_url, name)
    folder = f"{root}/{AUDIT_FOLDER}"
    fs.makedirs(folder, exist_ok=True)
    provenance = version_provenance(storage_url, name, version)
    for _ in range(APPEND_ATTEMPTS):
        history = read_history(storage_url, name)
        last = history[-1] if history else None
        entry = AuditEntry(
            sequence=(last.sequence + 1) if last else 1,
            event=event,
            model=name,
            version=version,
            previous_version=previous_version,
            at=datetime.now(UTC).isoformat(timespec="seconds"),
            actor=who or actor(),
            reason=reason,
            evidence=evidence,
            provenance=provenance,
            previous_hash=last.hash if last else GENESIS,
        )
        entry.hash = entry.content_hash()
        path = f"{folder}/{entry.sequence:0{SEQUENCE_DIGITS}d}.json"
        text = entry.model_dump_json(indent=2)
        try:
            _create_only(fs, path, text)
        except FileExistsError:  # another writer took this number: read again and take the next
            time.sleep(random.uniform(0, 0.02))  # apart, so the same writers do not collide again
            continue
        return entry
    raise FileExistsError(f"could not append to {folder}: {APPEND_ATTEMPTS} writers raced for the next entry")


def _create_only(fs: Any, path: str, text: str) -> None:
    if isinstance(fs, LocalFileSystem):
        # Written aside, then hard-linked into place: the link fails if the number is taken, and a
        # reader never sees a half-written entry (which it would skip, and so reuse its number).
        temporary = Path(f"{path}.{uuid.uuid4().hex}.tmp")
        temporary.write_text(text, encoding="utf-8")
        try:
            os.link(temporary, path)
        finally:
            temporary.unlink()
        return
    if fs.exists(path):
        raise FileExistsError(path)
    fs.pipe_file(path, text.encode())


def production_entry(entries: list[AuditEntry], version: str, at: datetime) -> AuditEntry | None:
    """The newest promotion or rollback that put ``version`` in production at or before ``at``."""
    found = None
    for entry in entries:
        moved = entry.event in ("promotion", "rollback") and entry.version == version
        if moved and datetime.fromisoformat(entry.at) <= at:
            found = entry
    return found
