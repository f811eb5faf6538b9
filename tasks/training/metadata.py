"""What a trained model carries with it: the metadata that says which data, code and config made it
and how to feed it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from configs.schema import FlowConfig
from tasks.core.preprocessing import InputSpec
from tasks.core.provenance import code_version, config_hash, package_versions
from tasks.data.dataset import DatasetRef


@dataclass(frozen=True)
class TrainedModel:
    """A trained model's files in the run's work folder (the bundle to publish), and its metrics."""

    bundle_dir: Path
    class_names: list[str]
    metrics: dict[str, float]
    epochs_run: int


def input_spec(config: FlowConfig) -> InputSpec:
    height, width = config.model.input_size
    return InputSpec(height=height, width=width)


def model_metadata(config: FlowConfig, ref: DatasetRef, trained: TrainedModel, rows_hash: str) -> dict[str, Any]:
    """Everything needed to say which data, code and config made this model, and how to feed it."""
    return {
        "name": config.model.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "class_names": trained.class_names,
        "input": input_spec(config).as_dict(),
        "preprocessing": {"function": "tasks.core.preprocessing.preprocess", "model_input_dtype": "float32"},
        "architecture": config.model.architecture,
        "dataset": {
            "path": ref.repo.name,
            "revision": ref.revision,
            "requested_revision": config.dataset.revision,  # "latest" resolves to the tag above
            "commit": ref.commit,
            "content_hash": ref.content_hash,
            "rows_hash": rows_hash,
            "modified": ref.modified,
            "from_reviews": [_provenance_summary(record) for record in ref.provenance],
        },
        "code": asdict(code_version()),
        "config_hash": config_hash(config.model_dump(mode="json")),
        "metrics": trained.metrics,
        "epochs_run": trained.epochs_run,
        "drift": config.train.drift.model_dump(mode="json"),
        "trust": config.train.trust.model_dump(mode="json"),  # the fitted values are in trust.npz
        "packages": package_versions(),
    }


def write_metadata(path: Path, content: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def _provenance_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What a revision made from reviews added, and who and which versions it came from (the full
    record, with every prediction id, is in the dataset repository's provenance folder)."""
    items = record.get("items", [])
    return {
        "revision": record.get("revision"),
        "base_revision": record.get("base_revision"),
        "file": record.get("file"),
        "images_added": sum(1 for item in items if item.get("action") == "added"),
        "images_relabelled": sum(1 for item in items if item.get("action") == "relabelled"),
        "reviewers": sorted({name for item in items for name in item.get("reviewers", [])}),
        "served_by_versions": sorted({str(item["model_version"]) for item in items if item.get("model_version")}),
    }
