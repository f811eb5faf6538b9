"""A new dataset revision from agreed reviews: screened, validated, committed with DVC, tagged, with provenance.

Reviewed served images go to a split of their own (``dataset.reviews.split``, folder per class), so
the test split stays untouched; training reads that split beside the training split. Agreed reviews
of doubted training images relabel them where they are. The revision records, in
``provenance/<tag>.json`` in the repository, every image's prediction id, reviewers and the model
version that served it.

Refusals (too few agreed new labels, a failed data validation, a working copy with changes) happen
before anything is written; a failure while writing puts back every file it touched.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from PIL import Image

from configs.schema import DatasetConfig
from tasks.core.errors import DatasetRevisionError, ReviewsRefused
from tasks.core.image_properties import file_properties
from tasks.core.review_queue import AgreedItem, DoubtedLabel, ReviewQueue
from tasks.data import repository, validation
from tasks.data.dataset import (
    cached_properties,
    class_names,
    read_manifest,
    reviewed_rows,
    select_split,
)
from tasks.data.label_screening import likely_label_errors, thumbnail_sheet

logger = logging.getLogger(__name__)

SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp"}
MANIFEST_COLUMNS = ["path", "label", "split", "sha256"]


@dataclass(frozen=True)
class NewRevision:
    tag: str
    commit: str
    base_revision: str
    added: int
    relabelled: int
    sent_back: int
    provenance_file: str


@dataclass(frozen=True)
class Staged:
    """An agreed image read from central storage, checked, waiting in a folder outside the repository."""

    agreed: AgreedItem
    relative_path: str
    file: Path


def add_reviews(
    config: DatasetConfig, queue: ReviewQueue, cache_dir: Path, workdir: Path, seed: int = 0
) -> NewRevision:
    """Turn the agreed reviews since the newest revision into a new revision (see the module docstring)."""
    repo = config.path
    with _newest_revision_checked_out(config) as (base_tag, base_commit):
        manifest = read_manifest(repo / repository.DATA_DIR)
        classes = class_names(manifest, config.train_split)
        agreed, foreign = _known_classes(queue.agreed(), classes)
        accepted, doubted = _screen(agreed, queue, classes) if config.reviews.screening else (agreed, [])
        sent_back = queue.send_back(doubted)
        _report_doubted(doubted, workdir / "label_screening")
        staged, known, unreadable = _stage(accepted, manifest, config.reviews.split, workdir / "staged")
        for item_id, why in unreadable.items():
            queue.set_aside(item_id, why)
        tag = next_tag(repo, base_tag)
        kept = [a for a in accepted if a.item.item_id not in unreadable]
        record = _provenance(tag, base_tag, base_commit, staged, kept, manifest, doubted, known, unreadable)
        new_labels = sum(1 for item in record["items"] if item["action"] in ("added", "relabelled"))
        if new_labels < config.reviews.min_new_labels:
            counts = (new_labels, len(agreed), sent_back, len(known), len(unreadable), foreign)
            raise ReviewsRefused(_too_few(*counts, queue, base_tag, config.reviews.min_new_labels))
        _validate(config, manifest, staged, record, cache_dir, workdir, seed)
        commit = _write_revision(repo, base_commit, manifest, staged, record, tag)
    queue.mark_added([a.item.item_id for a in kept], tag)
    added = sum(1 for item in record["items"] if item["action"] == "added")
    relabelled = new_labels - added
    logger.info("Dataset revision %s: %d images added, %d relabelled (from %s)", tag, added, relabelled, base_tag)
    return NewRevision(tag, commit, base_tag, added, relabelled, sent_back, record["file"])


def review_workdir(state_dir: Path) -> Path:
    """A folder of its own for one add-reviews run under the state folder (staged images, validation reports)."""
    folder = state_dir / "add-reviews" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder.mkdir(parents=True)
    return folder


def next_tag(repo: Path, base_tag: str) -> str:
    """``<base>-reviews-1``, or the next number after a revision that already came from reviews."""
    match = re.fullmatch(r"(.+)-reviews-(\d+)", base_tag)
    stem, number = (match.group(1), int(match.group(2)) + 1) if match else (base_tag, 1)
    existing = set(repository.list_tags(repo))
    while f"{stem}-reviews-{number}" in existing:
        number += 1
    return f"{stem}-reviews-{number}"


@contextmanager
def _newest_revision_checked_out(config: DatasetConfig) -> Iterator[tuple[str, str]]:
    """The newest tagged revision, checked out for the block; a working copy with changes is refused, never
    overwritten, and a refusal puts back the branch or commit that was checked out before."""
    repo = config.path
    base_tag = repository.latest_tag(repo)
    commit = repository.resolve_revision(repo, base_tag)
    state = repository.working_copy_state(repo)
    if state.git_changes or state.dvc_changes:
        raise ReviewsRefused(
            f"{repo} has changes ({state.describe(commit)}); commit or discard them before adding reviews"
        )
    before = repository.current_checkout(repo)
    if state.head_commit != commit:
        if not config.checkout:
            raise ReviewsRefused(f"{repo} is not at its newest revision {base_tag}; set dataset.checkout: true")
        repository.checkout_revision(repo, commit)
    try:
        yield base_tag, commit
    except ReviewsRefused:
        if state.head_commit != commit:
            repository.checkout_revision(repo, before)
        raise


def _report_doubted(doubted: list[DoubtedLabel], folder: Path) -> None:
    """The labels sent back, as a table and a sheet of thumbnails (logged with the run)."""
    if not doubted:
        return
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([d.__dict__ for d in doubted]).to_csv(folder / "doubted_reviews.csv", index=False)
    images, captions = [], []
    for doubt in doubted[:64]:
        try:
            with fsspec.open(doubt.image_uri, "rb") as handle:
                images.append(np.asarray(Image.open(io.BytesIO(handle.read())).convert("L")))
            captions.append(f"{doubt.label} -> {doubt.suggested_label}")
        except (OSError, ValueError):
            continue
    if images:
        title = f"{len(doubted)} reviewed labels sent back for a second review (reviewer's label -> model)"
        thumbnail_sheet(images, captions, folder / "doubted_reviews.png", title=title)


def _known_classes(agreed: list[AgreedItem], classes: list[str]) -> tuple[list[AgreedItem], int]:
    """Agreed labels that name a class of the dataset; the others are left agreed, counted and logged
    (a version served with other classes than this dataset's)."""
    known = [a for a in agreed if a.label in classes]
    for other in (a for a in agreed if a.label not in classes):
        logger.warning("Review of %s names %r, not a class of the dataset; left out", other.item.item_id, other.label)
    return known, len(agreed) - len(known)


def _screen(
    agreed: list[AgreedItem], queue: ReviewQueue, classes: list[str]
) -> tuple[list[AgreedItem], list[DoubtedLabel]]:
    """Confident-learning screening of single-review labels, with the probabilities the serving version
    logged (class order: the dataset's, as every version trained on it has). Labels two or more
    reviewers agreed on stand."""
    single = [a for a in agreed if len(a.reviewers) == 1 and a.item.prediction_id and a.label in classes]
    logged = queue.served_probabilities([str(a.item.prediction_id) for a in single])
    screened = [a for a in single if len(logged.get(str(a.item.prediction_id), [])) == len(classes)]
    if not screened:
        return agreed, []
    labels = np.array([classes.index(a.label) for a in screened])
    probabilities = np.array([logged[str(a.item.prediction_id)] for a in screened])
    errors = likely_label_errors(labels, probabilities)
    doubted = [
        DoubtedLabel(
            screened[e.index].item.item_id,
            screened[e.index].label,
            classes[e.suggested],
            screened[e.index].item.sha256,
            screened[e.index].item.image_uri,
            screened[e.index].item.model_version,
        )
        for e in errors
    ]
    doubted_ids = {d.item_id for d in doubted}
    return [a for a in agreed if a.item.item_id not in doubted_ids], doubted


def _too_few(
    new: int,
    agreed: int,
    sent_back: int,
    known: int,
    unreadable: int,
    foreign: int,
    queue: ReviewQueue,
    base: str,
    minimum: int,
) -> str:
    counts = queue.counts()
    return (
        f"only {new} agreed new label(s) since {base}; dataset.reviews.min_new_labels is {minimum}. "
        f"Of {agreed} agreed, label screening sent {sent_back} back for a second review, {known} are images the "
        f"dataset already holds and {unreadable} could not be read ({foreign} more name no class of the dataset); "
        f"{counts['open']} item(s) wait in the review queue ({counts['disagreements']} marked as disagreements). "
        "Review more at /review, or lower dataset.reviews.min_new_labels."
    )


def _stage(
    accepted: list[AgreedItem], manifest: pd.DataFrame, split: str, folder: Path
) -> tuple[list[Staged], list[str], dict[str, str]]:
    """Read each new image from central storage into ``folder``, checked. Returns the staged images, the
    items whose image the dataset already holds (same content), and unreadable items with the reason."""
    present = set(manifest["sha256"]) if "sha256" in manifest else set()
    staged, known, unreadable = [], [], {}
    for agreed in (a for a in accepted if a.item.dataset_path is None):
        if agreed.item.sha256 in present:
            known.append(agreed.item.item_id)
            continue
        try:
            content, image_format = _read_image(agreed.item.image_uri, agreed.item.sha256)
        except UnreadableReviewImage as error:
            logger.warning("Reviewed image of %s set aside: %s", agreed.item.item_id, error)
            unreadable[agreed.item.item_id] = str(error)
            continue
        suffix = SUFFIXES.get(image_format, ".png")
        relative = f"{split}/{agreed.label}/{agreed.item.sha256[:24]}{suffix}"
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        present.add(agreed.item.sha256)
        staged.append(Staged(agreed, relative, target))
    return staged, known, unreadable


class UnreadableReviewImage(Exception):
    """A reviewed image is gone from central storage, changed, or not an image."""


def _read_image(uri: str, sha256: str) -> tuple[bytes, str]:
    """The image's bytes, checked against its hash and as an image, and its format (PNG, JPEG, ...)."""
    try:
        with fsspec.open(uri, "rb") as handle:
            content: bytes = handle.read()
    except OSError as error:
        raise UnreadableReviewImage(f"{uri} cannot be read from central storage: {error}") from None
    if hashlib.sha256(content).hexdigest() != sha256:
        raise UnreadableReviewImage(f"{uri} does not match its sha256 {sha256[:12]}…; it was changed")
    try:
        image = Image.open(io.BytesIO(content))
        image.verify()
    except Exception as error:  # Pillow raises many kinds for a broken file
        raise UnreadableReviewImage(f"{uri} is not a readable image: {error}") from None
    return content, image.format or ""


def _validate(
    config: DatasetConfig,
    manifest: pd.DataFrame,
    staged: list[Staged],
    record: dict[str, Any],
    cache_dir: Path,
    workdir: Path,
    seed: int,
) -> None:
    """The training data validation on the revision-to-be, as training will read it: the base's training
    rows (earlier reviewed images included) relabelled as reviewed, plus the staged images, against the test split."""
    if not config.validation.enabled:
        logger.warning("Data validation is disabled (dataset.validation.enabled: false); adding reviews unchecked")
        return
    data_dir = config.path / repository.DATA_DIR
    used = pd.concat(
        [select_split(manifest, s, config.limit_per_split, seed) for s in (config.train_split, config.test_split)]
        + [reviewed_rows(manifest, config)]
    ).reset_index(drop=True)
    table = pd.read_parquet(cached_properties(data_dir, used, cache_dir))
    for entry in (e for e in record["items"] if e["action"] == "relabelled"):
        table.loc[table["path"] == entry["previous_path"], "label"] = entry["label"]
    new = pd.DataFrame(
        [
            {"path": s.relative_path, "split": config.train_split, "label": s.agreed.label, **file_properties(s.file)}
            for s in staged
        ]
    )
    train = pd.concat([table[table["split"] == config.train_split], new], ignore_index=True)
    test = table[table["split"] == config.test_split]
    reports = workdir / "data_validation"
    outcome = validation.validate_dataset(train, test, config.validation, reports, seed)
    if outcome.failures and config.validation.stop_on_failure:
        listed = "\n".join(f"  - {failure}" for failure in outcome.failures)
        raise ReviewsRefused(
            f"the revision with {len(staged)} reviewed image(s) fails data validation; the repository is unchanged:\n"
            f"{listed}\nReports: {reports}"
        )


def _provenance(
    tag: str,
    base_tag: str,
    base_commit: str,
    staged: list[Staged],
    accepted: list[AgreedItem],
    manifest: pd.DataFrame,
    doubted: list[DoubtedLabel],
    known: list[str],
    unreadable: dict[str, str],
) -> dict[str, Any]:
    """What the revision adds and changes, per image, and what was left out and why."""
    items = [_provenance_item(s.agreed, s.relative_path, "added", None) for s in staged]
    labels = dict(zip(manifest["path"], manifest["label"], strict=True))
    taken = set(manifest["path"])
    for agreed in (a for a in accepted if a.item.dataset_path is not None):
        path = str(agreed.item.dataset_path)
        current = labels.get(path)
        if current is None:  # moved or removed by a later revision: recorded, nothing moved
            items.append(_provenance_item(agreed, path, "missing", None))
        elif current == agreed.label:
            items.append(_provenance_item(agreed, path, "confirmed", current))
        else:
            target = _relabelled_path(path, agreed.label, agreed.item.sha256, taken)
            taken.add(target)
            items.append(_provenance_item(agreed, target, "relabelled", current))
    return {
        "revision": tag,
        "base_revision": base_tag,
        "base_commit": base_commit,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "file": f"{repository.PROVENANCE_DIR}/{tag}.json",
        "items": items,
        "sent_back_for_second_review": [d.item_id for d in doubted],
        "already_in_dataset": known,
        "unreadable": unreadable,
    }


def _provenance_item(agreed: AgreedItem, path: str, action: str, previous: str | None) -> dict[str, Any]:
    item = agreed.item
    return {
        "action": action,
        "path": path,
        "label": agreed.label,
        "previous_label": previous,
        "previous_path": item.dataset_path,
        "sha256": item.sha256,
        "item_id": item.item_id,
        "prediction_id": item.prediction_id,
        "model_version": item.model_version,
        "model_said": item.predicted_label,
        "queued_because": item.reason,
        "reviewers": agreed.reviewers,
        "reviewed_at": agreed.reviewed_at,
        "disagreement": item.disagreement,
    }


def _relabelled_path(path: str, label: str, sha256: str, taken: set[str]) -> str:
    """The image in its new class's folder under its own name, or under its content hash when another image
    there has that name (a rename never replaces a file)."""
    split, _, name = path.split("/", 2)
    file_name = name.rsplit("/", 1)[-1]
    target = f"{split}/{label}/{file_name}"
    if target in taken:
        target = f"{split}/{label}/{sha256[:24]}{Path(file_name).suffix}"
    return target


def _write_revision(
    repo: Path, base_commit: str, manifest: pd.DataFrame, staged: list[Staged], record: dict[str, Any], tag: str
) -> str:
    """Write the files, ``dvc add``, commit and tag; on any failure put every touched file back."""
    data = repo / repository.DATA_DIR
    manifest_file = data / repository.MANIFEST
    original_manifest = manifest_file.read_bytes() if manifest_file.exists() else None
    provenance_file = repo / record["file"]
    written: list[Path] = []
    moved: list[tuple[Path, Path]] = []
    try:
        for item in staged:
            target = data / item.relative_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item.file, target)
            written.append(target)
        for entry in (e for e in record["items"] if e["action"] == "relabelled"):
            source, target = data / entry["previous_path"], data / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            source.rename(target)
            moved.append((source, target))
        if original_manifest is not None:
            _write_manifest(manifest_file, manifest, record["items"], staged)
        provenance_file.parent.mkdir(parents=True, exist_ok=True)
        provenance_file.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        repository.run_dvc(repo, "add", "--quiet", repository.DATA_DIR)
        repository.run_git(repo, "add", f"{repository.DATA_DIR}.dvc", record["file"])
        added = sum(1 for e in record["items"] if e["action"] == "added")
        repository.run_git(
            repo, "commit", "--quiet", "-m", f"Dataset {tag}: {added} reviewed images from {record['base_revision']}"
        )
        repository.run_git(repo, "tag", "-a", tag, "-m", f"{tag}: reviews since {record['base_revision']}")
        _publish(repo, tag)
    except BaseException:
        _put_back(repo, base_commit, tag, written, moved, manifest_file, original_manifest, provenance_file)
        raise
    return repository.run_git(repo, "rev-parse", "HEAD").strip()


def _write_manifest(path: Path, manifest: pd.DataFrame, items: list[dict[str, Any]], staged: list[Staged]) -> None:
    rows = manifest.copy()
    for entry in (e for e in items if e["action"] == "relabelled"):
        where = rows["path"] == entry["previous_path"]
        rows.loc[where, ["path", "label"]] = [entry["path"], entry["label"]]
    new = pd.DataFrame(
        [
            {
                "path": s.relative_path,
                "label": s.agreed.label,
                "split": s.relative_path.split("/")[0],
                "sha256": s.agreed.item.sha256,
            }
            for s in staged
        ]
    )
    combined = pd.concat([rows, new], ignore_index=True)
    columns = [c for c in MANIFEST_COLUMNS if c in combined] + [c for c in combined if c not in MANIFEST_COLUMNS]
    combined[columns].sort_values("path").to_csv(path, index=False)


def _put_back(
    repo: Path,
    base_commit: str,
    tag: str,
    written: list[Path],
    moved: list[tuple[Path, Path]],
    manifest_file: Path,
    original_manifest: bytes | None,
    provenance_file: Path,
) -> None:
    logger.error("Writing dataset revision %s failed; putting the repository back to %s", tag, base_commit[:10])
    for path in written:
        path.unlink(missing_ok=True)
    for source, target in reversed(moved):
        if target.exists():
            target.rename(source)
    if original_manifest is not None:
        manifest_file.write_bytes(original_manifest)
    provenance_file.unlink(missing_ok=True)
    if tag in repository.list_tags(repo):
        repository.run_git(repo, "tag", "-d", tag)
    repository.run_git(repo, "reset", "--quiet", "--hard", base_commit)
    repository.run_dvc(repo, "checkout", "--force", "--quiet")


def _publish(repo: Path, tag: str) -> None:
    """The data to the DVC remote, then the tag (and the commit it names) to the git remote ``origin``: only
    a revision every worker can check out counts as made, so a failure here undoes it."""
    try:
        if repository.run_dvc(repo, "remote", "list").strip():
            repository.run_dvc(repo, "push", "--quiet")
        if "origin" in repository.run_git(repo, "remote").split():
            repository.run_git(repo, "push", "--quiet", "origin", f"refs/tags/{tag}")
    except subprocess.CalledProcessError as error:
        raise DatasetRevisionError(
            f"revision {tag} could not be published, so it was undone and the reviews stay agreed: {error.stderr}"
        ) from None
