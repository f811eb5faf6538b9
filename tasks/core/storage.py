"""Central storage: immutable, checksummed model versions under an fsspec URL.

Layout: ``models/<name>/<version>/`` holds the model, metadata.yaml, the UAE encoder, the
reference features and ``SHA256SUMS``. A version is written to a staging folder first and
renamed into place, so readers never see a half-written one; on stores without an atomic
rename the checksum file is copied last and a version without it does not exist.

Verification is strict, because ``SHA256SUMS`` is what says a version is the one released: the
file must be exactly what ``sha256sum`` writes for a flat folder (no binary-mode ``*`` lines, no
blank or extra lines), list every file a model bundle needs, and match the folder file for file;
names and versions are checked before they become paths, so none can point outside storage.

A version published with a signing key also holds ``SHA256SUMS.sig``, an Ed25519 signature of the
exact bytes of ``SHA256SUMS`` (``tasks.core.signing``). It is the one file the list does not
name, since it signs the list; whoever loads the version decides whether it must be there.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fsspec.implementations.local import LocalFileSystem

from tasks.core.errors import IntegrityError, PublishError
from tasks.core.signing import key_id, sign_checksums

logger = logging.getLogger(__name__)

CHECKSUMS = "SHA256SUMS"
SIGNATURE = f"{CHECKSUMS}.sig"  # signs SHA256SUMS, so it is the one file SHA256SUMS cannot list
STAGING = ".staging"
# What every published model version holds besides SHA256SUMS (tasks.core.bundle reads them).
MODEL_FILE = "model.keras"
UAE_FILE = "uae_encoder.keras"
REFERENCE_FILE = "reference_features.parquet"
METADATA_FILE = "metadata.yaml"
BUNDLE_FILES = frozenset({MODEL_FILE, UAE_FILE, REFERENCE_FILE, METADATA_FILE})

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,9}")  # the registry's version numbers
_FILE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_SUMS_LINE = re.compile(rf"([0-9a-f]{{64}})  ({_FILE_NAME})")


@dataclass(frozen=True)
class Checksums:
    """A version's strict ``SHA256SUMS``: the per-file digests, and the digest of the list itself."""

    files: dict[str, str]
    sums_digest: str

    @property
    def listing(self) -> bytes:
        """The bytes of SHA256SUMS, which a signature signs: strict parsing accepts only what ``checksum_lines``
        writes, so the list rebuilt from the parsed files is the file byte for byte."""
        return checksum_lines(self.files).encode("ascii")


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise IntegrityError(f"model name {name!r} is not a storage name (letters, digits, '_', '.', '-')")
    return name


def check_version(version: str) -> str:
    """A version is a registry number; anything else (``../x``, an absolute path) never becomes a path."""
    if not VERSION_PATTERN.fullmatch(version):
        raise IntegrityError(f"version {version!r} is not a registry version number such as 3")
    return version


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_lines(files: dict[str, str]) -> str:
    """``sha256sum`` format, so ``sha256sum -c SHA256SUMS`` verifies a version by hand."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))


def parse_checksums(text: str, where: str = CHECKSUMS) -> dict[str, str]:
    """The name -> digest list of a strict ``SHA256SUMS``: text mode lines, sorted, one per file, nothing else."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        match = _SUMS_LINE.fullmatch(line)
        if match is None:
            raise IntegrityError(f"{where} line {number} is not '<sha256>  <file name>': {line[:120]!r}")
        entries[match.group(2)] = match.group(1)
    if not entries or checksum_lines(entries) != text:
        raise IntegrityError(f"{where} is empty, unsorted, repeats a file or does not end with a newline")
    return entries


def model_root(storage_url: str, name: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, root = fsspec.core.url_to_fs(storage_url)
    return fs, f"{root.rstrip('/')}/models/{check_name(name)}"


def version_url(storage_url: str, name: str, version: str) -> str:
    return f"{storage_url.rstrip('/')}/models/{check_name(name)}/{check_version(version)}"


def publish_version(
    source_dir: Path, storage_url: str, name: str, version: str, signing_key: Ed25519PrivateKey | None = None
) -> str:
    """Copy every file of ``source_dir`` into ``models/<name>/<version>/`` atomically; return its URL.

    With a ``signing_key`` the version also gets ``SHA256SUMS.sig``, written before the version
    becomes visible, so a signed version is never seen unsigned.
    """
    fs, root = model_root(storage_url, name)
    final = f"{root}/{check_version(version)}"
    fs.invalidate_cache(final)
    if fs.exists(final):
        raise PublishError(f"{version_url(storage_url, name, version)} already exists; versions are immutable")
    staging = f"{root}/{STAGING}/{version}-{uuid.uuid4().hex[:8]}"
    try:
        checksums = Checksums(_upload_files(fs, source_dir, staging), "")
        with fs.open(f"{staging}/{CHECKSUMS}", "wb") as handle:
            handle.write(checksums.listing)
        if signing_key is not None:  # signs the very bytes just written
            with fs.open(f"{staging}/{SIGNATURE}", "w") as handle:
                handle.write(sign_checksums(signing_key, checksums.listing))
        verify_files(fs, staging, checksums, required=())
        _move_into_place(fs, staging, final)
    except (OSError, IntegrityError) as error:
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
        raise PublishError(f"publishing {name} version {version} failed, nothing was published: {error}") from error
    signed = f"signed by key {key_id(signing_key.public_key())}" if signing_key else "unsigned: no signing key set"
    logger.info("Published %s version %s to %s (%d files, %s)", name, version, final, len(checksums.files), signed)
    return version_url(storage_url, name, version)


def _upload_files(fs: fsspec.AbstractFileSystem, source_dir: Path, staging: str) -> dict[str, str]:
    digests = {}
    files = sorted(source_dir.iterdir())
    if not files:
        raise PublishError(f"{source_dir} holds no files to publish")
    fs.makedirs(staging, exist_ok=True)
    for path in files:
        if path.is_dir() or not re.fullmatch(_FILE_NAME, path.name):
            raise PublishError(f"{path}: a version holds plain files with simple names only")
        if path.name in (CHECKSUMS, SIGNATURE):
            raise PublishError(f"{path}: publishing writes {path.name} itself; remove it from the bundle")
        digests[path.name] = sha256_file(path)
        fs.put_file(str(path), f"{staging}/{path.name}")
    return digests


def _move_into_place(fs: fsspec.AbstractFileSystem, staging: str, final: str) -> None:
    if isinstance(fs, LocalFileSystem):
        Path(staging).rename(final)  # atomic on one filesystem; fails if final exists
        return
    names = [p for p in fs.find(staging) if not p.endswith(f"/{CHECKSUMS}")]  # the signature among them
    for path in names:
        fs.copy(path, final + path[len(staging) :])
    fs.copy(f"{staging}/{CHECKSUMS}", f"{final}/{CHECKSUMS}")
    fs.rm(staging, recursive=True)


def read_fresh(fs: fsspec.AbstractFileSystem, path: str) -> bytes | None:
    """A small file's bytes as they are now, or None when it does not exist.

    Object-store clients cache listings and sizes; another process (the deploy flow in another
    container) may have written since, so the cache is dropped and the object read in one request.
    """
    fs.invalidate_cache(path)
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        return None


def read_metadata(storage_url: str, name: str, version: str) -> dict[str, Any]:
    """A published version's ``metadata.yaml`` (class names, dataset, code, config hash); {} without one."""
    fs, root = model_root(storage_url, name)
    raw = read_fresh(fs, f"{root}/{version}/{METADATA_FILE}")
    loaded = yaml.safe_load(raw) if raw is not None else None
    return loaded if isinstance(loaded, dict) else {}


def read_checksums(storage_url: str, name: str, version: str) -> Checksums:
    """A published version's ``SHA256SUMS``, parsed strictly; no other file is read."""
    fs, root = model_root(storage_url, name)
    raw = read_fresh(fs, f"{root}/{check_version(version)}/{CHECKSUMS}")
    if raw is None:
        raise IntegrityError(f"{version_url(storage_url, name, version)} is not a published version")
    where = f"{version_url(storage_url, name, version)}/{CHECKSUMS}"
    return Checksums(parse_checksums(raw.decode("utf-8", errors="replace"), where), hashlib.sha256(raw).hexdigest())


def read_signature(storage_url: str, name: str, version: str) -> str | None:
    """A published version's ``SHA256SUMS.sig``, or None when it was published unsigned."""
    fs, root = model_root(storage_url, name)
    raw = read_fresh(fs, f"{root}/{check_version(version)}/{SIGNATURE}")
    return None if raw is None else raw.decode("utf-8", errors="replace")


def signature_url(storage_url: str, name: str, version: str) -> str:
    return f"{version_url(storage_url, name, version)}/{SIGNATURE}"


def verify_files(
    fs: fsspec.AbstractFileSystem, folder: str, checksums: Checksums, required: Collection[str] = BUNDLE_FILES
) -> None:
    """The folder holds exactly the files listed, the list names every required one, and each matches."""
    check_listing(checksums.files, folder_files(fs, folder), required, f"{folder}/{CHECKSUMS}")
    for file_name, digest in checksums.files.items():
        with fs.open(f"{folder}/{file_name}", "rb") as handle:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()
        if actual != digest:
            raise IntegrityError(f"{folder}/{file_name}: sha256 {actual} does not match {digest}")


def verify_version(storage_url: str, name: str, version: str, required: Collection[str] = BUNDLE_FILES) -> Checksums:
    """Check a published version file for file against its strict ``SHA256SUMS``."""
    checksums = read_checksums(storage_url, name, version)
    fs, root = model_root(storage_url, name)
    verify_files(fs, f"{root}/{version}", checksums, required)
    return checksums


def folder_files(fs: fsspec.AbstractFileSystem, folder: str) -> set[str]:
    """Every entry of a version folder but the checksum list and its signature, which the list cannot name."""
    return {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)} - {CHECKSUMS, SIGNATURE}


def check_listing(expected: dict[str, str], present: set[str], required: Collection[str], where: str) -> None:
    """The list names every required file, and the folder holds exactly the files listed."""
    problems = []
    if missing := sorted(set(required) - set(expected)):
        problems.append(f"does not list {', '.join(missing)}")
    if unlisted := sorted(present - set(expected)):
        problems.append(f"does not cover {', '.join(unlisted)} in the folder")
    if itself := sorted({CHECKSUMS, SIGNATURE} & set(expected)):
        problems.append(f"lists {', '.join(itself)}, which it cannot cover (the list itself and its signature)")
    if absent := sorted(set(expected) - present - {CHECKSUMS, SIGNATURE}):
        problems.append(f"lists {', '.join(absent)}, which the folder does not hold")
    if problems:
        raise IntegrityError(f"{where} {'; '.join(problems)}")


def list_versions(storage_url: str, name: str) -> list[str]:
    """Published versions (those with a checksum file), oldest first."""
    fs, root = model_root(storage_url, name)
    fs.invalidate_cache(root)  # an object store's cached listing may predate another process's publish
    if not fs.exists(root):
        return []
    folders = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    published = [v for v in folders if VERSION_PATTERN.fullmatch(v) and fs.exists(f"{root}/{v}/{CHECKSUMS}")]
    return sorted(published, key=lambda v: (len(v), v))


def image_url(storage_url: str, sha256: str) -> str:
    """Where central storage keeps an image by its content hash (served images, doubted training images)."""
    return f"{storage_url.rstrip('/')}/images/{sha256[:2]}/{sha256}"


def write_image_once(url: str, content: bytes) -> None:
    """Store an image at ``url`` unless it is there already (same URL, same content: it never changes)."""
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, content)
