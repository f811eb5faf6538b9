"""Fingerprints that key Prefect's cache: same data, same config, same code -> same result."""

from __future__ import annotations

import hashlib
import json
import subprocess

from configs.schema import FlowConfig
from tasks.dataset_repo import data_content_hash, resolve_revision
from tasks.settings import REPO_ROOT


def code_fingerprint() -> str:
    """The commit, plus a hash of uncommitted changes to tracked files when there are any."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    diff = subprocess.run(["git", "diff", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    changes = hashlib.sha256(diff.stdout.encode()).hexdigest()[:12] if diff.stdout else "clean"
    return f"{head.stdout.strip() or 'no-git'}+{changes}"


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
