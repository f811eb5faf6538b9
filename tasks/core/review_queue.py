"""The review queue: which images a reviewer sees next, what they said, and which labels are agreed.

Served images enter it from the prediction log: the service keeps the image of a configured share of
predictions and of every uncertain one (``MLOPS_SERVICE_REVIEW_*``); when a reviewer asks for work
and none is open, the queue takes the newest kept predictions not yet queued, ranks them and picks a
diverse batch (tasks/core/review_selection.py). Label screening adds training images whose label it
doubts and sends reviewed labels it doubts back for a second opinion (tasks/data/label_screening.py).

An item is agreed when it has the reviews it needs (one; two once screening doubted it) and a strict
majority of them name one label. Reviews that differ mark the item as a disagreement and ask for one
more review, so a third reviewer settles a split. Each reviewer reviews an item at most once. The
dataset stage turns agreed items into a new dataset revision and marks them added.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, create_engine, func, insert, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from tasks.core.errors import MlopsError
from tasks.core.prediction_log import metadata, predictions, review_items, reviews
from tasks.core.review_selection import review_priority, select_diverse

REFILL_BATCH = 50  # items picked at a time: enough for a sitting, small enough to stay diverse
CANDIDATE_ROWS = 5000  # newest kept predictions looked at per refill
UNCERTAIN_MARGIN = 0.3  # below this gap between the top two classes a prediction counts as uncertain

OPEN, AGREED, ADDED, UNREADABLE = "open", "agreed", "added", "unreadable"
CLAIM_SECONDS = 300  # how long the page holds an image for one reviewer before another may get it
CLAIM_ATTEMPTS = 5


class UnknownReviewItem(MlopsError):
    """A review names an item that is not in the queue."""


class AlreadyReviewed(MlopsError):
    """A reviewer reviews an item twice, or an item already settled."""


@dataclass(frozen=True)
class ReviewItem:
    item_id: str
    prediction_id: str | None
    sha256: str
    image_uri: str
    model_version: str | None
    predicted_label: str | None
    confidence: float | None
    given_label: str | None
    dataset_path: str | None
    reason: str
    status: str
    reviews_needed: int
    disagreement: bool
    agreed_label: str | None
    review_count: int = 0


@dataclass(frozen=True)
class AgreedItem:
    """An agreed label and who gave it: what a dataset revision records as provenance."""

    item: ReviewItem
    label: str
    reviewers: list[str]
    reviewed_at: list[str]


@dataclass(frozen=True)
class DoubtedLabel:
    """A label screening doubts: an agreed review, or a training image (``dataset_path`` set)."""

    item_id: str
    label: str
    suggested_label: str
    sha256: str
    image_uri: str
    model_version: str | None = None
    dataset_path: str | None = None


def uncertainty_reason(probabilities: np.ndarray, set_size: int | None, ood: bool | None) -> str:
    """Why a prediction is worth a review, in words a reviewer reads beside it."""
    if ood:
        return "out of distribution"
    if set_size is not None and set_size > 1:
        return f"{set_size} classes in its prediction set"
    top_two = np.sort(probabilities)[-2:]
    margin = float(top_two[1] - top_two[0])
    return f"top two classes {margin:.2f} apart" if margin < UNCERTAIN_MARGIN else "sampled"


def is_uncertain(probabilities: np.ndarray, set_size: int | None, ood: bool | None) -> bool:
    return uncertainty_reason(probabilities, set_size, ood) != "sampled"


class ReviewQueue:
    def __init__(self, engine: Engine, create_tables: bool = True) -> None:
        self.engine = engine
        if create_tables:
            metadata.create_all(engine, tables=[predictions, review_items, reviews])

    @classmethod
    def at(cls, database_url: str) -> ReviewQueue:
        """The queue in the prediction log at ``database_url`` (tables created if missing)."""
        return cls(create_engine(database_url))

    def next_for(self, reviewer: str, skip: Sequence[str] = ()) -> ReviewItem | None:
        """The open item of highest priority this reviewer has not reviewed and nobody else holds, claimed for
        ``CLAIM_SECONDS`` so that reviewers working at once see different images; refills the queue when
        none is left. Skipped items are let go."""
        self._release(reviewer, skip)
        refilled = False
        for _ in range(CLAIM_ATTEMPTS):
            now = datetime.now(UTC)
            item = self._next_open(reviewer, skip, now)
            if item is None:
                if refilled or not self.refill():
                    return None
                refilled = True
                continue
            if self._claim(item.item_id, reviewer, now):
                return item
        return None

    def refill(self, batch: int = REFILL_BATCH) -> int:
        """Queue a diverse batch of the newest kept predictions not yet queued; the number queued."""
        candidates = self._candidates()
        if not candidates:
            return 0
        probabilities = np.array([row["probabilities"] for row in candidates], dtype=np.float64)
        sizes = np.array([len(row["prediction_set"] or [None]) for row in candidates])
        has_trust = np.array([row["prediction_set"] is not None for row in candidates])
        ood = np.array([bool(row["ood"]) for row in candidates])
        priority = review_priority(probabilities, np.where(has_trust, sizes, 1), ood)
        chosen = select_diverse(priority, _features(candidates), batch)
        now = datetime.now(UTC)
        rows = [self._served_item(candidates[i], float(priority[i]), now) for i in chosen]
        statement = _insert_ignoring_duplicates(self.engine, review_items)  # another worker may queue them too
        with self.engine.begin() as connection:
            return int(connection.execute(statement, rows).rowcount or 0)

    def record(self, item_id: str, label: str, reviewer: str) -> ReviewItem:
        """Store one review and settle the item if it now has its reviews and a majority.

        The review row is written first: on SQLite that takes the write lock, on PostgreSQL the item row is
        locked before it; either way two reviews of one item are settled one after the other, and the
        unique (item, reviewer) key refuses a second review by the same reviewer."""
        try:
            with self.engine.begin() as connection:
                locked = select(review_items.c.item_id).where(review_items.c.item_id == item_id).with_for_update()
                if connection.execute(locked).first() is None:
                    raise UnknownReviewItem(f"no review item {item_id!r} in the queue")
                connection.execute(
                    insert(reviews),
                    [{"item_id": item_id, "label": label, "reviewer": reviewer, "created_at": datetime.now(UTC)}],
                )
                row = connection.execute(select(review_items).where(review_items.c.item_id == item_id)).mappings().one()
                if row["status"] != OPEN:
                    raise AlreadyReviewed(f"{item_id} is already settled ({row['status']}); it needs no more reviews")
                given = select(reviews.c.label).where(reviews.c.item_id == item_id).order_by(reviews.c.id)
                connection.execute(
                    update(review_items)
                    .where(review_items.c.item_id == item_id)
                    .values(claimed_by=None, claimed_until=None, **_settled(list(connection.scalars(given)), row))
                )
        except IntegrityError:
            raise AlreadyReviewed(
                f"{reviewer} already reviewed {item_id}; another reviewer gives a second opinion"
            ) from None
        return self.get(item_id)

    def set_aside(self, item_id: str, why: str) -> None:
        """Take an item out of the queue for good (its image cannot be read), saying why."""
        with self.engine.begin() as connection:
            connection.execute(
                update(review_items)
                .where(review_items.c.item_id == item_id)
                .values(status=UNREADABLE, reason=why[:200], claimed_by=None, claimed_until=None)
            )

    def get(self, item_id: str) -> ReviewItem:
        with self.engine.connect() as connection:
            row = connection.execute(_items_with_counts().where(review_items.c.item_id == item_id)).mappings().first()
        if row is None:
            raise UnknownReviewItem(f"no review item {item_id!r} in the queue")
        return _item(row)

    def agreed(self) -> list[AgreedItem]:
        """Agreed items not yet in a dataset revision, oldest first, with their reviewers."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                _items_with_counts().where(review_items.c.status == AGREED).order_by(review_items.c.enqueued_at)
            ).mappings()
            items = [_item(row) for row in rows]
            given = connection.execute(
                select(reviews).where(reviews.c.item_id.in_([i.item_id for i in items])).order_by(reviews.c.id)
            ).all()
        by_item: dict[str, list[Any]] = {}
        for review in given:
            by_item.setdefault(review.item_id, []).append(review)
        return [
            AgreedItem(
                item,
                str(item.agreed_label),
                [r.reviewer for r in by_item.get(item.item_id, []) if r.label == item.agreed_label],
                [r.created_at.isoformat() for r in by_item.get(item.item_id, []) if r.label == item.agreed_label],
            )
            for item in items
        ]

    def mark_added(self, item_ids: Iterable[str], revision: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(review_items)
                .where(review_items.c.item_id.in_(list(item_ids)))
                .values(status=ADDED, revision=revision)
            )

    def send_back(self, doubted: Sequence[DoubtedLabel], model_version: str | None = None) -> int:
        """Ask for another opinion on doubted labels: reopen agreed items, queue training images. The number queued."""
        now, queued = datetime.now(UTC), 0
        with self.engine.begin() as connection:
            for doubt in doubted:
                reason = (
                    f"second review: label screening doubts {doubt.label!r} (the model says {doubt.suggested_label!r})"
                )
                current = connection.execute(
                    select(review_items.c.status, review_items.c.reviews_needed).where(
                        review_items.c.item_id == doubt.item_id
                    )
                ).first()
                if current is None:
                    connection.execute(insert(review_items), [_doubted_item(doubt, reason, now, model_version)])
                elif current.status in (AGREED, OPEN):  # one more opinion than it has, and at least two
                    count = select(func.count()).select_from(reviews).where(reviews.c.item_id == doubt.item_id)
                    needed = max(2, connection.execute(count).scalar_one() + 1, current.reviews_needed)
                    connection.execute(
                        update(review_items)
                        .where(review_items.c.item_id == doubt.item_id)
                        .values(status=OPEN, reason=reason[:200], agreed_label=None, reviews_needed=needed)
                    )
                else:
                    continue
                queued += 1
        return queued

    def served_probabilities(self, prediction_ids: Sequence[str]) -> dict[str, list[float]]:
        """The probabilities the serving version logged for these predictions (label screening reads them)."""
        if not prediction_ids:
            return {}
        query = select(predictions.c.id, predictions.c.probabilities).where(predictions.c.id.in_(list(prediction_ids)))
        with self.engine.connect() as connection:
            return {row.id: list(row.probabilities) for row in connection.execute(query)}

    def counts(self) -> dict[str, int]:
        """Items per status, and how many are marked as disagreements."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(review_items.c.status, func.count()).group_by(review_items.c.status)).all()
            disagreements = connection.execute(
                select(func.count()).select_from(review_items).where(review_items.c.disagreement)
            ).scalar_one()
        counts = {OPEN: 0, AGREED: 0, ADDED: 0, UNREADABLE: 0, **{str(s): int(n) for s, n in rows}}
        return {**counts, "disagreements": int(disagreements)}

    def _next_open(self, reviewer: str, skip: Sequence[str], now: datetime) -> ReviewItem | None:
        mine = select(reviews.c.item_id).where(reviews.c.reviewer == reviewer)
        query = (
            _items_with_counts()
            .where(
                review_items.c.status == OPEN,
                not_(review_items.c.item_id.in_(mine)),
                _free_for(reviewer, now),
            )
            .order_by(review_items.c.priority.desc(), review_items.c.enqueued_at)
            .limit(1)
        )
        if skip:
            query = query.where(not_(review_items.c.item_id.in_(list(skip))))
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _item(row) if row is not None else None

    def _claim(self, item_id: str, reviewer: str, now: datetime) -> bool:
        """Hold an item for this reviewer; False when another reviewer took it first."""
        with self.engine.begin() as connection:
            claimed = connection.execute(
                update(review_items)
                .where(review_items.c.item_id == item_id, review_items.c.status == OPEN, _free_for(reviewer, now))
                .values(claimed_by=reviewer, claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
            )
        return bool(claimed.rowcount)

    def _release(self, reviewer: str, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        with self.engine.begin() as connection:
            connection.execute(
                update(review_items)
                .where(review_items.c.item_id.in_(list(item_ids)), review_items.c.claimed_by == reviewer)
                .values(claimed_by=None, claimed_until=None)
            )

    def _candidates(self) -> list[dict[str, Any]]:
        queued = select(review_items.c.sha256)
        query = (
            select(
                predictions.c.id,
                predictions.c.sha256,
                predictions.c.image_uri,
                predictions.c.model_version,
                predictions.c.predicted_label,
                predictions.c.confidence,
                predictions.c.probabilities,
                predictions.c.prediction_set,
                predictions.c.ood,
                predictions.c.uae,
            )
            .where(predictions.c.image_uri.is_not(None), not_(predictions.c.sha256.in_(queued)))
            .order_by(predictions.c.created_at.desc())
            .limit(CANDIDATE_ROWS)
        )
        with self.engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings()]
        newest: dict[str, dict[str, Any]] = {}
        for row in rows:  # the same image uploaded again is one review
            newest.setdefault(row["sha256"], row)
        return list(newest.values())

    @staticmethod
    def _served_item(row: dict[str, Any], priority: float, now: datetime) -> dict[str, Any]:
        size = len(row["prediction_set"]) if row["prediction_set"] is not None else None
        return {
            "item_id": row["id"],
            "prediction_id": row["id"],
            "sha256": row["sha256"],
            "image_uri": row["image_uri"],
            "model_version": row["model_version"],
            "predicted_label": row["predicted_label"],
            "confidence": row["confidence"],
            "reason": uncertainty_reason(np.asarray(row["probabilities"]), size, row["ood"]),
            "priority": priority,
            "enqueued_at": now,
            "status": OPEN,
            "reviews_needed": 1,
            "disagreement": False,
        }


def _free_for(reviewer: str, now: datetime) -> Any:
    """Not held by another reviewer: never claimed, the claim ran out, or it is this reviewer's."""
    return or_(
        review_items.c.claimed_until.is_(None),
        review_items.c.claimed_until < now,
        review_items.c.claimed_by == reviewer,
    )


def _insert_ignoring_duplicates(engine: Engine, table: Any) -> Any:
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=["item_id"])
    if engine.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=["item_id"])
    return insert(table)


def majority_label(labels: Sequence[str]) -> str | None:
    """The label more than half of the reviews give, if any."""
    label, count = Counter(labels).most_common(1)[0]
    return label if count * 2 > len(labels) else None


def _settled(labels: list[str], row: Any) -> dict[str, Any]:
    """The item's new state after ``labels`` (all its reviews, the newest last)."""
    disagreement = len(set(labels)) > 1
    if len(labels) < row["reviews_needed"]:
        return {"disagreement": disagreement}
    agreed = majority_label(labels)
    if agreed is None:  # a split: one more review settles it
        return {"disagreement": True, "reviews_needed": len(labels) + 1}
    return {"disagreement": disagreement, "status": AGREED, "agreed_label": agreed}


def _items_with_counts() -> Any:
    counted = select(reviews.c.item_id, func.count().label("review_count")).group_by(reviews.c.item_id).subquery()
    return select(review_items, func.coalesce(counted.c.review_count, 0).label("review_count")).select_from(
        review_items.outerjoin(counted, counted.c.item_id == review_items.c.item_id)
    )


def _item(row: Any) -> ReviewItem:
    fields = ReviewItem.__dataclass_fields__
    values = {name: row[name] for name in fields if name in row}
    return ReviewItem(**values)


def _features(rows: list[dict[str, Any]]) -> np.ndarray:
    """The logged encoder features (for diversity); probabilities where an old row has none."""
    if all(row["uae"] for row in rows) and len({len(row["uae"]) for row in rows}) == 1:
        return np.array([row["uae"] for row in rows], dtype=np.float64)
    return np.array([row["probabilities"] for row in rows], dtype=np.float64)


def _doubted_item(doubt: DoubtedLabel, reason: str, now: datetime, model_version: str | None) -> dict[str, Any]:
    return {
        "item_id": doubt.item_id,
        "prediction_id": None,
        "sha256": doubt.sha256,
        "image_uri": doubt.image_uri,
        "model_version": doubt.model_version or model_version,
        "predicted_label": doubt.suggested_label,
        "confidence": None,
        "given_label": doubt.label,
        "dataset_path": doubt.dataset_path,
        "reason": reason[:200],
        "priority": 10.0,  # a doubted label is worth more than any new image
        "enqueued_at": now,
        "status": OPEN,
        "reviews_needed": 2,
        "disagreement": False,
    }
