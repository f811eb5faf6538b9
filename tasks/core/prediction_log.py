"""The prediction log's tables and the feature columns that name what each row carries.

The service writes these rows, the monitor reads them, and training writes a reference table
with the same feature columns, so all three agree on what ``bbsd_3`` or ``brightness`` means.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, ForeignKey, Integer, MetaData, String, Table, inspect
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
