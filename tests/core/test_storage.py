"""Central storage: a published version is complete and checksummed, or not there at all."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tasks.core.errors import IntegrityError, PublishError
from tasks.core.storage import CHECKSUMS, list_versions, publish_version, verify_version


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    source = tmp_path / "bundle"
    source.mkdir()
    for name, content in {
        "model.keras": b"weights" * 1000,
        "metadata.yaml": b"name: demo\n",
        "reference_features.parquet": b"PAR1...",
    }.items():
        (source / name).write_bytes(content)
    return source


def test_publish_writes_every_file_with_sha256sum_compatible_checksums(bundle: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    url = publish_version(bundle, str(storage), "demo", "1")
    folder = Path(url)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*(p.name for p in bundle.iterdir()), CHECKSUMS])
    check = subprocess.run(["sha256sum", "--check", "--strict", CHECKSUMS], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert set(verify_version(str(storage), "demo", "1")) == {p.name for p in bundle.iterdir()}
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
