"""Provenance recorded with every model: what code, which data, which config, which packages."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from tasks.core.settings import REPO_ROOT

TRACKED_PACKAGES = (
    "tensorflow-cpu",
    "keras",
    "numpy",
    "imgaug",
    "mlflow",
    "prefect",
    "dvc",
    "deepchecks",
    "evidently",
    "pandas",
)


@dataclass(frozen=True)
class CodeVersion:
    commit: str
    dirty: bool


def code_version(repo: Path = REPO_ROOT) -> CodeVersion:
    """The project's git commit and whether the working tree had uncommitted changes."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return CodeVersion(commit, dirty)


def config_hash(values: dict[str, Any]) -> str:
    """A stable hash of a validated config's values (defaults included), to tell two runs apart."""
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
