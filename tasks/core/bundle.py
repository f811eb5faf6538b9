"""A published model version, fetched from central storage and verified before anything loads it."""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import keras
import yaml
from fsspec.implementations.local import LocalFileSystem

from tasks.core.errors import IntegrityError
from tasks.core.preprocessing import InputSpec
from tasks.core.storage import (
    BUNDLE_FILES,
    METADATA_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    UAE_FILE,
    VerifiedVersion,
    check_listing,
    model_root,
    sha256_file,
    verify_version,
)

__all__ = [  # the bundle's file names are storage's; they are read from here by whoever loads a bundle
    "CLASSIFIER_OUTPUT",
    "LAST_CONV_LAYER",
    "METADATA_FILE",
    "MODEL_FILE",
    "REFERENCE_FILE",
    "UAE_FILE",
    "ModelBundle",
    "fetch_bundle",
]

logger = logging.getLogger(__name__)

CLASSIFIER_OUTPUT = "probabilities"  # the classifier's softmax layer
LAST_CONV_LAYER = "last_conv"  # the layer Grad-CAM explains


@dataclass
class ModelBundle:
    name: str
    version: str
    folder: Path
    metadata: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata["class_names"])

    @property
    def input_spec(self) -> InputSpec:
        spec = self.metadata["input"]
        return InputSpec(height=int(spec["height"]), width=int(spec["width"]))

    def load_classifier(self) -> keras.Model:
        return keras.models.load_model(self.folder / MODEL_FILE)

    def load_encoder(self) -> keras.Model:
        return keras.models.load_model(self.folder / UAE_FILE)


def fetch_bundle(
    storage_url: str, name: str, version: str, cache_dir: Path, expected_sums: str | None = None
) -> ModelBundle:
    """Verify every checksum (and, given, that SHA256SUMS is the one released), read its metadata.

    Remote storage is copied to a local cache first (keras loads local files): downloaded into a
    temporary folder, verified there, renamed into place; a cached copy is verified again before
    every load, and one that no longer matches is discarded and fetched anew.
    """
    verified = verify_version(storage_url, name, version)
    if expected_sums is not None and verified.sums_digest != expected_sums:
        raise IntegrityError(
            f"{name} version {version}: SHA256SUMS has digest {verified.sums_digest[:12]}..., "
            f"not the {expected_sums[:12]}... recorded when it was released"
        )
    fs, root = model_root(storage_url, name)
    folder = Path(f"{root}/{version}")
    if not isinstance(fs, LocalFileSystem):
        folder = _cached_copy(fs, f"{root}/{version}", cache_dir / "models" / name / version, verified)
    metadata = yaml.safe_load((folder / METADATA_FILE).read_text(encoding="utf-8"))
    return ModelBundle(name, version, folder, metadata)


def _cached_copy(fs: fsspec.AbstractFileSystem, remote: str, folder: Path, verified: VerifiedVersion) -> Path:
    if folder.exists():
        try:
            _verify_local(folder, verified)
            return folder
        except IntegrityError as error:
            logger.warning("Discarding the cached copy of %s: %s", remote, error)
            shutil.rmtree(folder)
    download = folder.parent / f".download-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        download.mkdir(parents=True)
        for file_name in verified.files:
            fs.get_file(f"{remote}/{file_name}", str(download / file_name))
        _verify_local(download, verified)
        download.rename(folder)
    except OSError:
        if not folder.exists():  # not another process's copy arriving first: a real failure
            raise
        _verify_local(folder, verified)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return folder


def _verify_local(folder: Path, verified: VerifiedVersion) -> None:
    present = {p.name for p in folder.iterdir()}
    check_listing(verified.files, present, BUNDLE_FILES, str(folder))
    for file_name, digest in verified.files.items():
        if sha256_file(folder / file_name) != digest:
            raise IntegrityError(f"{folder / file_name}: its sha256 does not match the published version")
