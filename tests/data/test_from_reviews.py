"""Agreed reviews become a new tagged dataset revision, or are refused with the repository as it was."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert

from configs.schema import DatasetConfig
from tasks.core.errors import ReviewsRefused
from tasks.core.prediction_log import predictions
from tasks.core.review_queue import DoubtedLabel, ReviewQueue
from tasks.data import repository
from tasks.data.dataset import read_manifest, resolve_dataset
from tasks.data.demo import CLASS_NAMES, load_source, png_bytes
from tasks.data.from_reviews import add_reviews, next_tag

CLASSES = sorted(CLASS_NAMES)


def serve(
    queue: ReviewQueue, storage: Path, release: tuple[np.ndarray, np.ndarray], indices: Iterable[int]
) -> dict[str, str]:
    """Log predictions of these images as the service does (image kept in storage, model fairly sure of the
    true class), queue them all; the true label of each prediction id (``p-<index>``)."""
    images, labels = release
    rows, truths = [], {}
    for index in indices:
        content = png_bytes(images[index])
        digest = hashlib.sha256(content).hexdigest()
        (storage / digest).write_bytes(content)
        truth = CLASS_NAMES[labels[index]]
        probabilities = np.full(len(CLASSES), 0.2 / (len(CLASSES) - 1))
        probabilities[CLASSES.index(truth)] = 0.8
        rows.append(
            {
                "id": f"p-{index}",
                "created_at": datetime.now(UTC),
                "model_name": "fashion-cnn",
                "model_version": "1",
                "predicted_label": truth,
                "confidence": 0.8,
                "probabilities": probabilities.tolist(),
                "uae": np.random.default_rng(index).normal(size=4).tolist(),
                "sha256": digest,
                "latency_ms": 1.0,
                "image_uri": str(storage / digest),
            }
        )
        truths[f"p-{index}"] = truth
    with queue.engine.begin() as connection:
        connection.execute(insert(predictions), rows)
    assert queue.refill(batch=len(rows)) == len(rows)
    return truths


def review_all(
    queue: ReviewQueue, truths: dict[str, str], reviewer: str = "ana", wrong: set[str] = frozenset()
) -> None:
    while (item := queue.next_for(reviewer)) is not None:
        truth = truths[item.item_id]
        label = next(c for c in CLASSES if c != truth) if item.item_id in wrong else truth
        queue.record(item.item_id, label, reviewer)


def snapshot(repo: Path) -> tuple[str, list[str], str, list[tuple[str, int]]]:
    """What a user would see changed: HEAD, tags, git status, and every data file with its size."""
    files = sorted(
        (p.relative_to(repo).as_posix(), p.stat().st_size) for p in (repo / "data").rglob("*") if p.is_file()
    )
    status = repository.run_git(repo, "status", "--porcelain")
    return repository.run_git(repo, "rev-parse", "HEAD"), repository.list_tags(repo), status, files


@pytest.fixture
def setting(tiny_repo: Path, tmp_path: Path, fashion_source: Path) -> tuple[DatasetConfig, ReviewQueue, Path, dict]:
    storage = tmp_path / "images"
    storage.mkdir()
    queue = ReviewQueue.at(f"sqlite:///{tmp_path / 'predictions.db'}")
    # 200 training images: a few dozen reviews move the label mix more than a full dataset's would.
    config = DatasetConfig(
        path=tiny_repo, revision="latest", reviews={"min_new_labels": 10}, validation={"max_label_drift": 0.3}
    )
    return config, queue, storage, load_source(fashion_source)


def test_agreed_reviews_become_a_tagged_revision_with_provenance(setting: tuple, tmp_path: Path) -> None:
    config, queue, storage, releases = setting
    truths = serve(queue, storage, releases["test"], range(5000, 5030))
    review_all(queue, truths, wrong={"p-5001", "p-5002"})  # two slips label screening should catch

    made = add_reviews(config, queue, tmp_path / "cache", tmp_path / "work")

    repo = config.path
    assert made.tag == "v2.0-reviews-1" and made.base_revision == "v2.0" and made.added == 28
    assert made.sent_back == 2  # doubted, back in the queue for a second opinion, not in the revision
    assert [queue.get(i).status for i in ("p-5001", "p-5002", "p-5003")] == ["open", "open", "added"]
    assert repository.latest_tag(repo) == made.tag and repository.resolve_revision(repo, made.tag) == made.commit
    assert repository.working_copy_state(repo).differs_from(made.commit) is False  # committed, data in the DVC file
    manifest = read_manifest(repo / "data")
    reviewed = manifest[manifest["split"] == "reviewed"].set_index("sha256")
    assert len(reviewed) == 28 and all((repo / "data" / p).is_file() for p in reviewed["path"])
    for index in (5000, 5003, 5029):  # each image in its reviewed class's folder
        digest = hashlib.sha256(png_bytes(releases["test"][0][index])).hexdigest()
        assert reviewed.loc[digest, "label"] == truths[f"p-{index}"]
        assert reviewed.loc[digest, "path"].startswith(f"reviewed/{truths[f'p-{index}']}/")
    record = json.loads(repository.run_git(repo, "show", f"{made.tag}:{made.provenance_file}"))
    first = record["items"][0]
    assert first["reviewers"] == ["ana"] and first["model_version"] == "1" and first["prediction_id"].startswith("p-")
    assert set(record["sent_back_for_second_review"]) == {"p-5001", "p-5002"}
    assert queue.counts()["added"] == 28
    ref = resolve_dataset(config)  # revision: latest names it, with its provenance
    assert (ref.revision, ref.commit, ref.provenance[0]["revision"]) == (made.tag, made.commit, made.tag)
    assert next_tag(repo, made.tag) == "v2.0-reviews-2"
    registry = Path(repository.run_git(repo, "remote", "get-url", "origin").strip())
    assert made.tag in repository.list_tags(registry)  # published: other hosts fetch it


def test_too_few_agreed_labels_are_refused_and_the_repository_stays_as_it_was(setting: tuple, tmp_path: Path) -> None:
    config, queue, storage, releases = setting
    truths = serve(queue, storage, releases["test"], range(5000, 5006))
    review_all(queue, truths)
    before = snapshot(config.path)
    with pytest.raises(
        ReviewsRefused, match=r"only 6 agreed new label\(s\) since v2.0; dataset.reviews.min_new_labels is 10"
    ):
        add_reviews(config, queue, tmp_path / "cache", tmp_path / "work")
    assert snapshot(config.path) == before and queue.counts()["agreed"] == 6  # nothing lost either


def test_a_refusal_puts_back_an_older_revision_that_was_checked_out(setting: tuple, tmp_path: Path) -> None:
    config, queue, storage, releases = setting
    truths = serve(queue, storage, releases["test"], range(5000, 5004))
    review_all(queue, truths)
    repository.checkout_revision(config.path, repository.resolve_revision(config.path, "v1.0"))
    before = snapshot(config.path)
    with pytest.raises(ReviewsRefused, match="only 4 agreed new label"):
        add_reviews(config, queue, tmp_path / "cache", tmp_path / "work")
    assert snapshot(config.path) == before  # v1.0 and its 100 training images, as it was


def test_two_reviewers_relabel_a_training_image_label_screening_doubted(setting: tuple, tmp_path: Path) -> None:
    config, queue, storage, _ = setting
    config = config.model_copy(update={"reviews": config.reviews.model_copy(update={"min_new_labels": 1})})
    repo = config.path
    manifest = read_manifest(repo / "data")
    row = manifest[(manifest["split"] == "train") & (manifest["label"] == "shirt")].iloc[0]
    content = (repo / "data" / row["path"]).read_bytes()
    (storage / row["sha256"]).write_bytes(content)
    doubted = DoubtedLabel(
        f"dataset:{row['sha256']}",
        "shirt",
        "coat",
        row["sha256"],
        str(storage / row["sha256"]),
        dataset_path=row["path"],
    )
    assert queue.send_back([doubted]) == 1
    for reviewer in ("ana", "ben"):
        item = queue.next_for(reviewer)
        assert item is not None and item.given_label == "shirt" and item.reviews_needed == 2
        queue.record(item.item_id, "coat", reviewer)

    made = add_reviews(config, queue, tmp_path / "cache", tmp_path / "work")

    assert (made.added, made.relabelled) == (0, 1)
    moved = f"train/coat/{row['path'].rsplit('/', 1)[-1]}"
    assert not (repo / "data" / row["path"]).exists() and (repo / "data" / moved).read_bytes() == content
    after = read_manifest(repo / "data").set_index("sha256")
    assert (after.loc[row["sha256"], "path"], after.loc[row["sha256"], "label"]) == (moved, "coat")
    record = json.loads(repository.run_git(repo, "show", f"{made.tag}:{made.provenance_file}"))
    entry = record["items"][0]
    assert (entry["action"], entry["previous_label"], entry["reviewers"]) == ("relabelled", "shirt", ["ana", "ben"])


def test_a_revision_failing_data_validation_is_refused_and_the_repository_stays_as_it_was(
    setting: tuple, tmp_path: Path
) -> None:
    config, queue, storage, releases = setting
    config = config.model_copy(update={"validation": type(config.validation)()})  # the shipped conditions
    # Forty reviewed bags: the training label mix would drift far from the test split's.
    bags = [int(i) for i in np.flatnonzero(releases["test"][1] == CLASS_NAMES.index("bag")) if i >= 5000][:40]
    truths = serve(queue, storage, releases["test"], bags)
    review_all(queue, truths)
    before = snapshot(config.path)
    with pytest.raises(ReviewsRefused, match="fails data validation; the repository is unchanged") as refused:
        add_reviews(config, queue, tmp_path / "cache", tmp_path / "work")
    assert "Label Drift" in str(refused.value)
    assert snapshot(config.path) == before and queue.counts()["agreed"] == 40


def test_a_working_copy_with_changes_is_refused_untouched(setting: tuple, tmp_path: Path) -> None:
    config, queue, storage, releases = setting
    truths = serve(queue, storage, releases["test"], range(5000, 5012))
    review_all(queue, truths)
    (config.path / "notes.txt").write_text("work in progress\n")
    before = snapshot(config.path)
    with pytest.raises(ReviewsRefused, match="commit or discard them"):
        add_reviews(config, queue, tmp_path / "cache", tmp_path / "work")
    assert snapshot(config.path) == before
