"""The dataset at a pinned revision: resolve it, make sure the files on disk are that revision, index it.

A dataset is any folder of images in a ``<split>/<class>/<file>`` layout under ``data/`` in a
git + DVC repository; ``data/manifest.csv`` (path, label, split, sha256) is read when present
and built from the layout when not.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from configs.schema import DatasetConfig
from tasks.core.errors import DatasetRevisionError
from tasks.core.image_properties import file_properties
from tasks.core.progress import Advance
from tasks.data import repository

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


@dataclass(frozen=True)
class DatasetRef:
    """What was trained on: recorded in the model's metadata and in MLflow."""

    repo: Path
    revision: str  # the tag or commit resolved ("latest" is recorded as the tag it named)
    commit: str
    content_hash: str
    modified: bool
    provenance: tuple[dict[str, object], ...] = ()  # the revisions-from-reviews records it contains

    @property
    def data_dir(self) -> Path:
        return self.repo / repository.DATA_DIR


def resolve_dataset(config: DatasetConfig) -> DatasetRef:
    """Resolve the configured revision and make the working copy match it (or refuse)."""
    repo = config.path
    revision = repository.named_revision(repo, config.revision)
    commit = repository.resolve_revision(repo, revision)
    state = repository.working_copy_state(repo)
    modified = False
    if state.differs_from(commit):
        if config.allow_modified:
            logger.warning("Training on a modified working copy: %s", state.describe(commit))
            modified = True
        elif config.checkout:
            repository.checkout_revision(repo, commit)
            state = repository.working_copy_state(repo)
            if state.differs_from(commit):
                raise DatasetRevisionError(f"{repo} still differs after checkout: {state.describe(commit)}")
        else:
            raise DatasetRevisionError(
                f"{repo} working copy differs from {config.revision} ({state.describe(commit)}); set "
                "dataset.checkout: true to check it out, or dataset.allow_modified: true to train on it"
            )
    content = repository.data_content_hash(repo, commit)
    return DatasetRef(repo, revision, commit, content, modified, tuple(repository.read_provenance(repo, commit)))


def read_manifest(data_dir: Path) -> pd.DataFrame:
    """The manifest, or one built from the ``<split>/<class>/<file>`` layout when there is none."""
    manifest_path = data_dir / repository.MANIFEST
    if manifest_path.is_file():
        manifest = pd.read_csv(manifest_path, dtype={"path": str, "label": str, "split": str})
    else:
        paths = sorted(p for p in data_dir.glob("*/*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
        relative = [p.relative_to(data_dir).as_posix() for p in paths]
        manifest = pd.DataFrame(
            {
                "path": relative,
                "label": [r.split("/")[1] for r in relative],
                "split": [r.split("/")[0] for r in relative],
            }
        )
    if manifest.empty:
        raise DatasetRevisionError(f"{data_dir} holds no images in a <split>/<class>/<file> layout")
    return manifest


def class_names(manifest: pd.DataFrame, train_split: str) -> list[str]:
    """Sorted class names seen in the training split: the model's output order."""
    names = sorted(manifest.loc[manifest["split"] == train_split, "label"].unique())
    if len(names) < 2:
        raise DatasetRevisionError(f"split {train_split!r} has {len(names)} class(es); at least 2 are needed")
    return names


def select_split(manifest: pd.DataFrame, split: str, limit: int | None, seed: int) -> pd.DataFrame:
    """Rows of one split, optionally a seeded stratified-by-chance sample of ``limit`` rows."""
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        available = ", ".join(sorted(manifest["split"].unique()))
        raise DatasetRevisionError(f"split {split!r} not in the dataset; available splits: {available}")
    if limit is not None and len(rows) > limit:
        rows = rows.sample(n=limit, random_state=seed).sort_values("path")
    return rows.reset_index(drop=True)


def reviewed_rows(manifest: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """The reviewed split's rows, all of them, as training rows (their paths still say where they came from)."""
    rows = manifest[manifest["split"] == config.reviews.split] if config.reviews.train_on else manifest.iloc[0:0]
    return rows.assign(split=config.train_split).reset_index(drop=True)


def manifest_hash(manifest: pd.DataFrame) -> str:
    """A hash of exactly the rows used, to key caches and to record in the model's metadata."""
    text = manifest.sort_values("path").to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()


def properties_cache(cache_dir: Path, rows: pd.DataFrame) -> Path:
    """Where the property table of exactly these rows is kept (keyed by their hash)."""
    return cache_dir / "properties" / f"{manifest_hash(rows)}.parquet"


def cached_properties(data_dir: Path, rows: pd.DataFrame, cache_dir: Path, advance: Advance | None = None) -> Path:
    """The property table of ``rows``, measured only when the cache does not hold it yet."""
    cached = properties_cache(cache_dir, rows)
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        properties_table(data_dir, rows.reset_index(drop=True), advance).to_parquet(cached, index=False)
    return cached


def properties_table(data_dir: Path, manifest: pd.DataFrame, advance: Advance | None = None) -> pd.DataFrame:
    """One row per manifest entry: path, split, label, sha256 and the image properties."""
    rows = []
    for number, relative in enumerate(manifest["path"], 1):
        rows.append(file_properties(data_dir / relative))
        if advance is not None and (number % 500 == 0 or number == len(manifest)):
            advance(500 if number % 500 == 0 else number % 500)
    table = pd.DataFrame(rows, index=manifest.index)
    return pd.concat([manifest[["path", "split", "label"]], table], axis=1)
