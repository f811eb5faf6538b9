"""The review queue on SQLite and PostgreSQL: what it picks, who gets what, how reviews settle, at once too."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert

from tasks.core.prediction_log import predictions
from tasks.core.review_queue import AlreadyReviewed, DoubtedLabel, ReviewQueue


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> ReviewQueue:
    if request.param == "sqlite":
        return ReviewQueue.at(f"sqlite:///{tmp_path / 'log.db'}")
    return ReviewQueue.at(str(request.getfixturevalue("fresh_database")))


def log_predictions(queue: ReviewQueue, rows: list[tuple[str, list[float], list[float]]]) -> None:
    """(id, probabilities, encoder features) per kept prediction, as the service logs them."""
    with queue.engine.begin() as connection:
        connection.execute(
            insert(predictions),
            [
                {
                    "id": key,
                    "created_at": datetime.now(UTC),
                    "model_name": "m",
                    "model_version": "1",
                    "predicted_label": "a",
                    "confidence": max(probabilities),
                    "probabilities": probabilities,
                    "uae": features,
                    "sha256": key.rjust(64, "0"),
                    "latency_ms": 1.0,
                    "image_uri": f"memory://{key}",
                }
                for key, probabilities, features in rows
            ],
        )


def test_uncertain_images_come_first_and_near_copies_once(queue: ReviewQueue) -> None:
    rng = np.random.default_rng(0)
    copies = [(f"copy-{i}", [0.5, 0.5], list(np.r_[1.0, 0.0] + rng.normal(0, 0.01, 2))) for i in range(8)]
    others = [("left", [0.55, 0.45], [0.0, 1.0]), ("right", [0.6, 0.4], [-1.0, 0.0])]
    sure = [("sure", [0.99, 0.01], [0.0, -1.0])]
    log_predictions(queue, copies + others + sure)
    assert queue.refill(batch=3) == 3
    picked = {queue.next_for(f"r{i}").item_id for i in range(3)}  # type: ignore[union-attr]
    assert len(picked & {c[0] for c in copies}) == 1 and {"left", "right"} <= picked  # one of the copies
    assert queue.refill(batch=3) == 3 and queue.refill(batch=50) == 5  # the rest, each once


def test_reviewers_working_at_once_get_different_images_and_a_skip_lets_go(queue: ReviewQueue) -> None:
    log_predictions(queue, [(f"p{i}", [0.5 + i / 100, 0.5 - i / 100], [float(i), 1.0]) for i in range(3)])
    first = queue.next_for("ana")
    second = queue.next_for("ben")
    assert first is not None and second is not None and first.item_id != second.item_id
    assert queue.next_for("ana").item_id == first.item_id  # type: ignore[union-attr]  # still hers
    after_skip = queue.next_for("ana", skip=[first.item_id])
    assert after_skip is not None and after_skip.item_id not in (first.item_id, second.item_id)
    assert queue.next_for("cleo", skip=[]).item_id == first.item_id  # type: ignore[union-attr]  # let go


def test_a_reviewer_reviews_an_item_once(queue: ReviewQueue) -> None:
    log_predictions(queue, [("p0", [0.5, 0.5], [1.0, 0.0])])
    item = queue.next_for("ana")
    assert item is not None
    queue.send_back([DoubtedLabel(item.item_id, "a", "b", item.sha256, item.image_uri)])  # needs two reviews
    queue.record(item.item_id, "a", "ana")
    with pytest.raises(AlreadyReviewed, match="ana already reviewed p0"):
        queue.record(item.item_id, "a", "ana")
    assert queue.get(item.item_id).review_count == 1 and queue.next_for("ana") is None


def test_two_reviews_at_the_same_moment_are_both_counted(queue: ReviewQueue) -> None:
    log_predictions(queue, [(f"p{i}", [0.5, 0.5], [float(i), 0.0]) for i in range(6)])
    queue.refill()
    items = [queue.get(f"p{i}") for i in range(6)]
    queue.send_back([DoubtedLabel(i.item_id, "a", "b", i.sha256, i.image_uri) for i in items])
    errors: list[BaseException] = []

    def review(reviewer: str, label: str) -> None:
        for item in items:
            try:
                queue.record(item.item_id, label, reviewer)
            except BaseException as error:  # collected and asserted below
                errors.append(error)

    threads = [threading.Thread(target=review, args=args) for args in (("ana", "a"), ("ben", "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    settled = [queue.get(i.item_id) for i in items]
    assert all(s.review_count == 2 and s.disagreement and s.status == "open" for s in settled)  # a third decides
    assert all(s.reviews_needed == 3 for s in settled)


def test_refills_at_once_queue_each_prediction_once(queue: ReviewQueue) -> None:
    log_predictions(queue, [(f"p{i}", [0.5, 0.5], [float(i), 0.0]) for i in range(20)])
    errors: list[BaseException] = []

    def refill() -> None:
        try:
            queue.refill(batch=20)
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=refill) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and queue.counts()["open"] == 20
