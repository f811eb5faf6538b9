"""Central storage: immutable, checksummed model versions under an fsspec URL.

Layout: ``models/<name>/<version>/`` holds the model, metadata.yaml, the UAE encoder, the
reference features and ``SHA256SUMS``. A version is written to a staging folder first and
renamed into place, so readers never see a half-written one; on stores without an atomic
rename the checksum file is copied last and a version without it does not exist.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from tasks.core.errors import IntegrityError, PublishError

logger = logging.getLogger(__name__)

CHECKSUMS = "SHA256SUMS"
STAGING = ".staging"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_lines(files: dict[str, str]) -> str:
    """``sha256sum`` format, so ``sha256sum -c SHA256SUMS`` verifies a version by hand."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))


def parse_checksums(text: str) -> dict[str, str]:
    entries = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if name:
            entries[name] = digest
    return entries


def model_root(storage_url: str, name: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, root = fsspec.core.url_to_fs(storage_url)
    return fs, f"{root.rstrip('/')}/models/{name}"


def version_url(storage_url: str, name: str, version: str) -> str:
    return f"{storage_url.rstrip('/')}/models/{name}/{version}"


def publish_version(source_dir: Path, storage_url: str, name: str, version: str) -> str:
    """Copy every file of ``source_dir`` into ``models/<name>/<version>/`` atomically; return its URL."""
    fs, root = model_root(storage_url, name)
    final = f"{root}/{version}"
    if fs.exists(final):
        raise PublishError(f"{version_url(storage_url, name, version)} already exists; versions are immutable")
    staging = f"{root}/{STAGING}/{version}-{uuid.uuid4().hex[:8]}"
    try:
        digests = _upload_files(fs, source_dir, staging)
        with fs.open(f"{staging}/{CHECKSUMS}", "w") as handle:
            handle.write(checksum_lines(digests))
        _verify(fs, staging, digests)
        _move_into_place(fs, staging, final)
    except (OSError, IntegrityError) as error:
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
        raise PublishError(f"publishing {name} version {version} failed, nothing was published: {error}") from error
    logger.info("Published %s version %s to %s (%d files)", name, version, final, len(digests))
    return version_url(storage_url, name, version)


def _upload_files(fs: fsspec.AbstractFileSystem, source_dir: Path, staging: str) -> dict[str, str]:
    digests = {}
    files = sorted(p for p in source_dir.rglob("*") if p.is_file() or p.is_symlink())
    if not files:
        raise PublishError(f"{source_dir} holds no files to publish")
    for path in files:
        relative = path.relative_to(source_dir).as_posix()
        digests[relative] = sha256_file(path)
        fs.makedirs(f"{staging}/{Path(relative).parent.as_posix()}".rstrip("/."), exist_ok=True)
        fs.put_file(str(path), f"{staging}/{relative}")
    return digests


def _move_into_place(fs: fsspec.AbstractFileSystem, staging: str, final: str) -> None:
    if isinstance(fs, LocalFileSystem):
        Path(staging).rename(final)  # atomic on one filesystem; fails if final exists
        return
    names = [p for p in fs.find(staging) if not p.endswith(f"/{CHECKSUMS}")]
    for path in names:
        fs.copy(path, final + path[len(staging) :])
    fs.copy(f"{staging}/{CHECKSUMS}", f"{final}/{CHECKSUMS}")
    fs.rm(staging, recursive=True)


def _verify(fs: fsspec.AbstractFileSystem, folder: str, expected: dict[str, str]) -> None:
    for relative, digest in expected.items():
        with fs.open(f"{folder}/{relative}", "rb") as handle:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()
        if actual != digest:
            raise IntegrityError(f"{folder}/{relative}: sha256 {actual} does not match {digest}")


def verify_version(storage_url: str, name: str, version: str) -> dict[str, str]:
    """Check every file of a published version against SHA256SUMS; return the checksums."""
    fs, root = model_root(storage_url, name)
    folder = f"{root}/{version}"
    if not fs.exists(f"{folder}/{CHECKSUMS}"):
        raise IntegrityError(f"{version_url(storage_url, name, version)} is not a published version")
    with fs.open(f"{folder}/{CHECKSUMS}", "r") as handle:
        expected = parse_checksums(handle.read())
    _verify(fs, folder, expected)
    return expected


def list_versions(storage_url: str, name: str) -> list[str]:
    """Published versions (those with a checksum file), oldest first."""
    fs, root = model_root(storage_url, name)
    if not fs.exists(root):
        return []
    folders = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    published = [v for v in folders if not v.startswith(".") and fs.exists(f"{root}/{v}/{CHECKSUMS}")]
    return sorted(published, key=lambda v: (len(v), v))
