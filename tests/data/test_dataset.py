"""Resolving the pinned dataset revision against a real git + DVC repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.schema import DatasetConfig
from tasks.core.errors import DatasetRevisionError
from tasks.data.dataset import read_manifest, resolve_dataset, select_split
from tasks.data.repository import run_git, working_copy_state


def config(repo: Path, revision: str, **extra: object) -> DatasetConfig:
    return DatasetConfig(path=repo, revision=revision, **extra)  # type: ignore[arg-type]


def test_unknown_revision_lists_the_tags(tiny_repo: Path) -> None:
    with pytest.raises(DatasetRevisionError, match=r"'v9\.9' not found .* available tags: v1\.0, v2\.0"):
        resolve_dataset(config(tiny_repo, "v9.9"))


def test_resolve_checks_out_another_tag_and_records_its_hash(tiny_repo: Path) -> None:
    ref = resolve_dataset(config(tiny_repo, "v1.0"))
    assert ref.commit == run_git(tiny_repo, "rev-parse", "v1.0^{commit}").strip()
    assert ref.content_hash.endswith(".dir") and not ref.modified
    manifest = read_manifest(ref.data_dir)
    assert (manifest["split"] == "train").sum() == 100
    assert len(list(ref.data_dir.glob("train/*/*.png"))) == 100  # the files on disk are v1.0's
    v2 = resolve_dataset(config(tiny_repo, "v2.0"))
    assert v2.content_hash != ref.content_hash


def test_resolve_without_checkout_refuses_a_different_working_copy(tiny_repo: Path) -> None:
    with pytest.raises(DatasetRevisionError, match=r"differs from v1\.0 .*HEAD is .*dataset\.checkout: true"):
        resolve_dataset(config(tiny_repo, "v1.0", checkout=False))


def test_resolve_refuses_modified_data_unless_allowed(tiny_repo: Path) -> None:
    victim = next((tiny_repo / "data" / "train").glob("*/*.png"))
    victim.unlink()
    assert working_copy_state(tiny_repo).dvc_changes == ["data.dvc"]
    with pytest.raises(DatasetRevisionError, match=r"data differs from data\.dvc"):
        resolve_dataset(config(tiny_repo, "v2.0", checkout=False))
    assert resolve_dataset(config(tiny_repo, "v2.0", checkout=False, allow_modified=True)).modified
    resolve_dataset(config(tiny_repo, "v2.0"))  # checkout restores the file from the DVC cache
    assert victim.exists()


def test_checkout_pulls_from_the_remote_when_the_cache_is_empty(tiny_repo: Path) -> None:
    import shutil

    shutil.rmtree(tiny_repo / ".dvc" / "cache")
    ref = resolve_dataset(config(tiny_repo, "v1.0"))
    assert len(list(ref.data_dir.glob("train/*/*.png"))) == 100


def test_select_split_limits_and_names_missing_split(tiny_repo: Path) -> None:
    manifest = read_manifest(tiny_repo / "data")
    assert len(select_split(manifest, "train", 30, seed=0)) == 30
    with pytest.raises(DatasetRevisionError, match="split 'holdout' not in the dataset; available splits: test, train"):
        select_split(manifest, "holdout", None, seed=0)


def test_manifest_is_built_from_the_layout_when_absent(tmp_path: Path) -> None:
    for relative in ("train/cat/1.png", "train/dog/2.jpg", "test/cat/3.png", "train/dog/notes.txt"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    manifest = read_manifest(tmp_path)
    assert manifest.to_dict("records") == [
        {"path": "test/cat/3.png", "label": "cat", "split": "test"},
        {"path": "train/cat/1.png", "label": "cat", "split": "train"},
        {"path": "train/dog/2.jpg", "label": "dog", "split": "train"},
    ]
