"""Fingerprints that key Prefect's cache: same data, same config, same code -> same result."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from configs.schema import FlowConfig
from tasks.core.settings import REPO_ROOT
from tasks.data.repository import data_content_hash, resolve_revision

# What training runs: the train flow and the stages it calls (a stage imports only core and the
# stages before it, so data and training are all of it), and the pinned packages.
TRAINING_CODE = ("tasks/core", "tasks/data", "tasks/training")
TRAINING_FILES = ("flows/train_flow.py", "requirements.lock")


def code_fingerprint(root: Path = REPO_ROOT) -> str:
    """A hash of the code that trains and of the pinned packages.

    Content, not the commit: a commit that touches the service, the monitor, the ops commands or
    the docs keeps the cache; one that touches training code retrains.
    """
    digest = hashlib.sha256()
    files = [p for folder in TRAINING_CODE for p in (root / folder).rglob("*.py")] + [root / f for f in TRAINING_FILES]
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def training_fingerprint(config: FlowConfig) -> str:
    """What decides a trained model: the data's content hash, the model/dataset/train config, the code."""
    commit = resolve_revision(config.dataset.path, config.dataset.revision)
    sections = config.model_dump(mode="json", include={"model", "dataset", "train"})
    sections["dataset"].pop("path", None)  # where the repository sits does not change the data
    parts = {
        "data": data_content_hash(config.dataset.path, commit),
        "config": sections,
        "code": code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
