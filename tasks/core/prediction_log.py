"""The prediction log's tables and the feature columns that name what each row carries.

The service writes these rows, the monitor reads them, and training writes a reference table
with the same feature columns, so all three agree on what ``bbsd_3`` or ``brightness`` means.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    inspect,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from tasks.core.image_properties import PROPERTY_COLUMNS

metadata = MetaData()

predictions = Table(
    "predictions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(50), nullable=False, index=True),
    Column("predicted_label", String(200), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("probabilities", JSON, nullable=False),  # the BBSD features: softmax in class order
    Column("uae", JSON, nullable=False),
    # The trust layer's answer (null for a version published without one).
    Column("prediction_set", JSON),
    Column("ood_score", Float),
    Column("ood", Boolean),
    Column("abstain", Boolean),
    Column("abstain_reason", String(500)),
    *(Column(name, Float) for name in PROPERTY_COLUMNS),  # as measured by tasks.core.image_properties
    Column("sha256", String(64), nullable=False, index=True),
    Column("latency_ms", Float, nullable=False),
    Column("request_id", String(100)),
    Column("image_uri", String(1000)),
)

# What a version in shadow said about a logged prediction (tasks/core/shadow_pointer.py): the
# production row is the one answered and holds the image's measures; this one sits beside it,
# joined on prediction_id. No foreign key: the production row may still be in the spool.
shadow_predictions = Table(
    "shadow_predictions",
    metadata,
    Column("prediction_id", String(36), primary_key=True),
    Column("model_version", String(50), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("model_name", String(200), nullable=False),
    Column("champion_version", String(50), nullable=False),
    Column("predicted_label", String(200), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("probabilities", JSON, nullable=False),
    Column("prediction_set", JSON),
    Column("ood_score", Float),
    Column("ood", Boolean),
    Column("abstain", Boolean),
    Column("latency_ms", Float, nullable=False),  # from the batch's arrival to the shadow's answer
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", String(36), ForeignKey("predictions.id"), nullable=False, index=True),
    Column("label", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


# The review queue (tasks/core/review_queue.py): served images worth a human's time, and images of the
# training set that label screening doubts. One row per image to review; ``item_id`` is the prediction
# id of a served image and ``dataset:<sha256>`` for a training image.
review_items = Table(
    "review_items",
    metadata,
    Column("item_id", String(100), primary_key=True),
    Column("prediction_id", String(36), index=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("image_uri", String(1000), nullable=False),
    Column("model_version", String(50)),  # the version that answered (or screened)
    Column("predicted_label", String(200)),
    Column("confidence", Float),
    Column("given_label", String(200)),  # the label a training image carries now (dataset items)
    Column("dataset_path", String(1000)),  # where a training image sits in the dataset repository
    Column("reason", String(200), nullable=False),
    Column("priority", Float, nullable=False),
    Column("enqueued_at", DateTime(timezone=True), nullable=False, index=True),
    Column("status", String(20), nullable=False, index=True),  # open | agreed | added | unreadable
    Column("claimed_by", String(200)),  # the reviewer the page shows it to now, until claimed_until
    Column("claimed_until", DateTime(timezone=True)),
    Column("reviews_needed", Integer, nullable=False),  # 2 after screening doubts a label, +1 per disagreement
    Column("disagreement", Boolean, nullable=False),
    Column("agreed_label", String(200)),
    Column("revision", String(200)),  # the dataset revision it went into
)

reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(100), ForeignKey("review_items.item_id"), nullable=False, index=True),
    Column("label", String(200), nullable=False),
    Column("reviewer", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("item_id", "reviewer", name="one_review_per_reviewer"),
)


def uae_columns(dim: int) -> list[str]:
    """The untrained autoencoder's features (UAE drift detector)."""
    return [f"uae_{i}" for i in range(dim)]


def bbsd_columns(num_classes: int) -> list[str]:
    """The classifier's softmax outputs (black-box shift detection), in class order."""
    return [f"bbsd_{i}" for i in range(num_classes)]


def add_missing_columns(engine: Engine) -> list[str]:
    """Columns this code logs that an older database lacks, added (all nullable); their names.

    Older rows keep null there: a log written before the trust layer stays readable by the monitor.
    """
    present = {column["name"] for column in inspect(engine).get_columns(predictions.name)}
    missing = [column for column in predictions.columns if column.name not in present]
    for column in missing:
        kind = column.type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(f"ALTER TABLE {predictions.name} ADD COLUMN {column.name} {kind}")
        except DBAPIError as error:  # another worker process added it first
            if "duplicate column" not in str(error) and "already exists" not in str(error):
                raise
    return [column.name for column in missing]
