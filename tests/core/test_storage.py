"""Central storage: a published version is complete and checksummed, or not there at all."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.core.errors import IntegrityError, PublishError
from tasks.core.storage import CHECKSUMS, list_versions, publish_version, verify_version


def test_publish_writes_every_file_with_sha256sum_compatible_checksums(bundle: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    url = publish_version(bundle, str(storage), "demo", "1")
    folder = Path(url)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*(p.name for p in bundle.iterdir()), CHECKSUMS])
    check = subprocess.run(["sha256sum", "--check", "--strict", CHECKSUMS], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    verified = verify_version(str(storage), "demo", "1")
    assert set(verified.files) == {p.name for p in bundle.iterdir()}
    assert verified.sums_digest == hashlib.sha256((folder / CHECKSUMS).read_bytes()).hexdigest()
    assert list_versions(str(storage), "demo") == ["1"]


def test_publish_failing_midway_leaves_nothing_visible(bundle: Path, tmp_path: Path) -> None:
    (bundle / "model.keras.broken").symlink_to(tmp_path / "missing-file")  # sorted between the real files
    storage = tmp_path / "storage"
    with pytest.raises(PublishError, match="nothing was published"):
        publish_version(bundle, str(storage), "demo", "1")
    root = storage / "models" / "demo"
    assert not (root / "1").exists()
    assert list_versions(str(storage), "demo") == []
    leftovers = [p for p in root.rglob("*") if p.is_file()]
    assert leftovers == []


def test_publish_refuses_to_overwrite_a_version(bundle: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    publish_version(bundle, str(storage), "demo", "1")
    (bundle / "metadata.yaml").write_text("changed\n")
    with pytest.raises(PublishError, match="immutable"):
        publish_version(bundle, str(storage), "demo", "1")
    assert (storage / "models/demo/1/metadata.yaml").read_text() == "name: demo\n"


def test_verify_detects_a_tampered_file(bundle: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    folder = Path(publish_version(bundle, str(storage), "demo", "7"))
    (folder / "model.keras").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match=r"model\.keras"):
        verify_version(str(storage), "demo", "7")


def test_versions_sort_numerically(bundle: Path, tmp_path: Path) -> None:
    storage = str(tmp_path / "storage")
    for version in ("2", "10", "1"):
        publish_version(bundle, storage, "demo", version)
    assert list_versions(storage, "demo") == ["1", "2", "10"]


def test_production_pointer_is_replaced_whole_and_only_for_a_verified_version(bundle: Path, tmp_path: Path) -> None:
    from tasks.core.pointer import read_pointer, write_pointer

    storage = str(tmp_path / "storage")
    for version in ("1", "2"):
        publish_version(bundle, storage, "demo", version)
    first = write_pointer(storage, "demo", "1", "first", {"accuracy": 0.9})
    (tmp_path / "storage/models/demo/2/model.keras").write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        write_pointer(storage, "demo", "2", "refused", {})
    assert read_pointer(storage, "demo") == first  # the old pointer stands, whole
    visible = sorted(p.name for p in (tmp_path / "storage/models/demo").iterdir() if not p.name.startswith("."))
    assert visible == ["1", "2", "production.json"]  # no temporary pointer left behind
    with pytest.raises(IntegrityError, match="not a published version"):
        write_pointer(storage, "demo", "3", "absent", {})


def test_a_pointer_write_that_fails_midway_leaves_the_old_pointer_and_no_debris(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.core.pointer import read_pointer, write_pointer

    storage = str(tmp_path / "storage")
    for version in ("1", "2"):
        publish_version(bundle, storage, "demo", version)
    first = write_pointer(storage, "demo", "1", "first", {})

    def disk_full(self: Path, target: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", disk_full)  # the rename is where a crash would bite
    with pytest.raises(OSError, match="No space"):
        write_pointer(storage, "demo", "2", "second", {})
    monkeypatch.undo()
    assert read_pointer(storage, "demo") == first
    left = sorted(p.name for p in (tmp_path / "storage/models/demo").iterdir() if not p.name.startswith("."))
    assert left == ["1", "2", "production.json"]


@pytest.fixture
def published(bundle: Path, tmp_path: Path) -> Path:
    """Version 1 of "demo" in a private storage folder; returns the version's folder."""
    return Path(publish_version(bundle, str(tmp_path / "storage"), "demo", "1"))


def rewrite_sums(folder: Path, change: Callable[[str], str]) -> None:
    (folder / CHECKSUMS).write_text(change((folder / CHECKSUMS).read_text()))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda text: "", "is empty"),
        (lambda text: text.replace("  ", " *"), "line 1 is not '<sha256>  <file name>'"),  # sha256sum -b style
        (lambda text: "\n".join(line for line in text.splitlines() if "model.keras" not in line) + "\n", "model.keras"),
        (lambda text: text + "\n", "is not '<sha256>  <file name>'"),
        (lambda text: text.rstrip("\n"), "does not end with a newline"),
        (lambda text: "".join(reversed(text.splitlines(keepends=True))), "unsorted"),
        (lambda text: text.replace("metadata.yaml", "../metadata.yaml"), "is not '<sha256>  <file name>'"),
    ],
    ids=["empty", "binary-mode", "model-not-listed", "blank-line", "no-final-newline", "unsorted", "parent-path"],
)
def test_a_loose_or_incomplete_sums_file_is_refused(published: Path, change: Callable[[str], str], reason: str) -> None:
    rewrite_sums(published, change)
    with pytest.raises(IntegrityError, match=re.escape(reason)):
        verify_version(str(published.parents[2]), "demo", "1")


def test_a_file_the_sums_do_not_cover_is_refused(published: Path) -> None:
    (published / "extra.py").write_text("import os\n")
    with pytest.raises(IntegrityError, match=r"does not cover extra\.py"):
        verify_version(str(published.parents[2]), "demo", "1")


@pytest.mark.parametrize("version", ["../1", "/etc", "1/../../x", "01", "v1", ""])
def test_a_version_that_is_not_a_number_never_becomes_a_path(published: Path, version: str) -> None:
    with pytest.raises(IntegrityError, match="is not a registry version number"):
        verify_version(str(published.parents[2]), "demo", version)


def test_a_pointer_naming_an_outside_version_or_another_model_is_refused(published: Path) -> None:
    from tasks.core.pointer import read_pointer, write_pointer

    storage = str(published.parents[2])
    pointer = write_pointer(storage, "demo", "1", "first", {})
    assert pointer.sums_sha256 == hashlib.sha256((published / CHECKSUMS).read_bytes()).hexdigest()
    path = published.parent / "production.json"
    raw = json.loads(path.read_text())
    for outside in ("../../../tmp/x", "../1", "1/../../2"):  # digits inside must not make it pass
        path.write_text(json.dumps({**raw, "version": outside}))
        with pytest.raises(IntegrityError, match="not a valid production pointer"):
            read_pointer(storage, "demo")
    path.write_text(json.dumps({**raw, "name": "other"}))
    with pytest.raises(IntegrityError, match="names model 'other', not 'demo'"):
        read_pointer(storage, "demo")


def test_remote_copy_is_verified_before_every_load_and_a_modified_one_fetched_again(
    bundle: Path, tmp_path: Path
) -> None:
    """Object stores are copied to a local cache (keras loads files); a changed cache is never loaded."""
    from tasks.core.bundle import fetch_bundle

    storage = f"memory://{tmp_path.name}/storage"  # a non-local fsspec store, in process
    publish_version(bundle, storage, "demo", "1")
    first = fetch_bundle(storage, "demo", "1", tmp_path / "cache")
    cached = first.folder / "model.keras"
    assert cached.is_relative_to(tmp_path / "cache") and cached.read_bytes() == b"weights" * 1000
    cached.write_bytes(b"modified in the cache")
    again = fetch_bundle(storage, "demo", "1", tmp_path / "cache")
    assert (again.folder / "model.keras").read_bytes() == b"weights" * 1000
    assert not [p for p in (tmp_path / "cache" / "models" / "demo").iterdir() if p.name.startswith(".download")]


def test_fetch_refuses_sums_that_changed_since_release(published: Path, tmp_path: Path) -> None:
    from tasks.core.bundle import fetch_bundle
    from tasks.core.pointer import write_pointer

    storage = str(published.parents[2])
    released = write_pointer(storage, "demo", "1", "first", {}).sums_sha256
    (published / "model.keras").write_bytes(b"replaced")  # and SHA256SUMS rewritten to match
    rewrite_sums(
        published,
        lambda text: re.sub(
            r"^[0-9a-f]{64}(?=  model\.keras$)", hashlib.sha256(b"replaced").hexdigest(), text, flags=re.M
        ),
    )
    with pytest.raises(IntegrityError, match=r"not the .* recorded when it was released"):
        fetch_bundle(storage, "demo", "1", tmp_path / "cache", expected_sums=released)
