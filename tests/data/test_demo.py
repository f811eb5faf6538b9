"""The demo dataset builder, on a tiny subset of the real Debian package."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from tasks.core.errors import DatasetBuildError, DatasetRevisionError
from tasks.data.demo import SplitSizes, build_dataset_repository, read_idx
from tasks.data.repository import checkout_revision, list_tags, run_dvc, run_git


def manifest_at(repo: Path, tag: str) -> pd.DataFrame:
    checkout_revision(repo, tag)
    return pd.read_csv(repo / "data" / "manifest.csv")


def test_source_package_holds_all_70000_images(fashion_source: Path) -> None:
    assert read_idx(fashion_source / "train-images-idx3-ubyte.gz").shape == (60000, 28, 28)
    assert read_idx(fashion_source / "t10k-labels-idx1-ubyte.gz").shape == (10000,)


def test_builder_writes_two_tagged_versions_with_checksummed_manifest(tiny_repo: Path) -> None:
    assert list_tags(tiny_repo) == ["v1.0", "v2.0"]
    v1, v2 = manifest_at(tiny_repo, "v1.0"), manifest_at(tiny_repo, "v2.0")
    assert v1["split"].value_counts().to_dict() == {"train": 100, "test": 100, "validation": 60}
    assert v2["split"].value_counts().to_dict() == {"train": 200, "test": 100, "validation": 60}
    assert set(v1["path"]) < set(v2["path"])  # v1.0 is a subset of v2.0
    for row in v2.sample(20, random_state=0).itertuples():
        content = (tiny_repo / "data" / row.path).read_bytes()
        assert hashlib.sha256(content).hexdigest() == row.sha256
        assert row.path.split("/")[:2] == [row.split, row.label]
    on_disk = {p.relative_to(tiny_repo / "data").as_posix() for p in (tiny_repo / "data").glob("*/*/*.png")}
    assert on_disk == set(v2["path"])


def test_dvc_remote_is_committed_before_any_data_and_holds_every_tag(
    tiny_repo_template: tuple[Path, Path],
) -> None:
    repo, _ = tiny_repo_template
    first = run_git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    assert "remote" in run_git(repo, "show", f"{first}:.dvc/config")
    assert "data.dvc" not in run_git(repo, "ls-tree", "--name-only", first)
    assert "are in sync" in run_dvc(repo, "status", "--cloud", "--all-tags")


def test_rebuilding_a_complete_repository_does_nothing(tiny_repo_template: tuple[Path, Path]) -> None:
    repo, remote = tiny_repo_template
    head = run_git(repo, "rev-parse", "HEAD")
    assert build_dataset_repository(repo, remote, source_dir=Path("/nonexistent")) == []
    assert run_git(repo, "rev-parse", "HEAD") == head


def test_builder_refuses_sizes_larger_than_the_release(tmp_path: Path, fashion_source: Path) -> None:
    with pytest.raises(DatasetBuildError, match="do not fit"):
        build_dataset_repository(tmp_path / "r", tmp_path / "remote", fashion_source, SplitSizes(train_v2=70_000))


def test_a_clone_fetches_a_revision_tagged_after_it_was_made(tiny_repo: Path, tmp_path: Path) -> None:
    """A worker's working copy, cloned from the dataset registry, sees a revision tagged there later."""
    from tasks.data.repository import resolve_revision

    upstream = tmp_path / "registry"
    run_git(tmp_path, "clone", "--quiet", "--bare", str(tiny_repo), str(upstream))
    worker_copy = tmp_path / "worker"
    run_git(tmp_path, "clone", "--quiet", str(upstream), str(worker_copy))
    run_git(upstream, "tag", "v3.0", "v2.0")  # tagged in the registry after the clone
    assert "v3.0" not in list_tags(worker_copy)
    assert resolve_revision(worker_copy, "v3.0") == resolve_revision(worker_copy, "v2.0")
    with pytest.raises(DatasetRevisionError, match=r"'v9\.9' not found.*v1\.0, v2\.0, v3\.0"):
        resolve_revision(worker_copy, "v9.9")


def test_builder_pushes_the_data_to_an_s3_remote(
    tmp_path: Path, fashion_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack's registry builds the demo repository with its DVC remote in the object store."""
    import s3fs

    from tests.helpers.data import TINY_SIZES
    from tests.helpers.s3 import CREDENTIALS, s3_server

    with s3_server(tmp_path / "s3.log") as endpoint:
        for key, value in {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint}.items():
            monkeypatch.setenv(key, value)
        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("datasets")
        repo = tmp_path / "fashion-mnist"
        build_dataset_repository(repo, "s3://datasets/dvc/fashion-mnist", fashion_source, TINY_SIZES)
        clone = tmp_path / "clone"
        run_git(tmp_path, "clone", "--quiet", str(repo), str(clone))
        checkout_revision(clone, run_git(clone, "rev-parse", "v1.0").strip())  # the data comes from the bucket
        manifest = pd.read_csv(clone / "data" / "manifest.csv")
        assert len(manifest) == 100 + 60 + 100 and all((clone / "data" / p).is_file() for p in manifest["path"])
