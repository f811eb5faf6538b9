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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fsspec.implementations.local import LocalFileSystem

from tasks.core.errors import IntegrityError
from tasks.core.preprocessing import InputSpec
from tasks.core.shift_regression import SHIFT_REGRESSION_FILE, ShiftRegression
from tasks.core.signing import verify_signature
from tasks.core.storage import (
    METADATA_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    UAE_FILE,
    Checksums,
    model_root,
    read_checksums,
    read_signature,
    signature_url,
    verify_files,
)
from tasks.core.trust import TRUST_FILE, TrustModel

__all__ = [  # the bundle's file names are storage's; they are read from here by whoever loads a bundle
    "CLASSIFIER_OUTPUT",
    "EMBEDDING_LAYER",
    "LAST_CONV_LAYER",
    "METADATA_FILE",
    "MODEL_FILE",
    "REFERENCE_FILE",
    "SHIFT_REGRESSION_FILE",
    "TRUST_FILE",
    "UAE_FILE",
    "ModelBundle",
    "fetch_bundle",
]

logger = logging.getLogger(__name__)

CLASSIFIER_OUTPUT = "probabilities"  # the classifier's softmax layer
LAST_CONV_LAYER = "last_conv"  # the layer Grad-CAM explains
EMBEDDING_LAYER = "embedding"  # the penultimate features: calibration and the out-of-distribution score


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

    def load_trust(self) -> TrustModel | None:
        """Calibration, prediction sets and the out-of-distribution threshold; None for a version without them."""
        path = self.folder / TRUST_FILE
        return TrustModel.load(path) if path.exists() else None

    def load_shift_regression(self) -> ShiftRegression | None:
        """The monitor's accuracy estimator; None for a version fitted without it."""
        path = self.folder / SHIFT_REGRESSION_FILE
        return ShiftRegression.load(path) if path.exists() else None


def fetch_bundle(
    storage_url: str,
    name: str,
    version: str,
    cache_dir: Path,
    expected_sums: str | None = None,
    verify_key: Ed25519PublicKey | None = None,
) -> ModelBundle:
    """Verify every checksum (and, given, that SHA256SUMS is the one released), read its metadata.

    Given a ``verify_key``, SHA256SUMS must carry a valid signature by that key, checked before
    any other file is read: a version that is unsigned or signed by another key is refused.

    Local storage is verified and loaded in place. Remote storage is read once: its files are
    downloaded into a temporary folder, verified there and renamed into a local cache (keras loads
    local files); the cached copy is verified again before every load, and one that no longer
    matches is discarded and fetched anew.
    """
    checksums = read_checksums(storage_url, name, version)
    if verify_key is not None:  # on every load, cache hit or not: the cached files are checked against this list
        signature = read_signature(storage_url, name, version)
        verify_signature(verify_key, checksums.listing, signature, signature_url(storage_url, name, version))
    fs, root = model_root(storage_url, name)
    if isinstance(fs, LocalFileSystem):
        folder = Path(f"{root}/{version}")
        verify_files(fs, str(folder), checksums)
    else:
        folder = _cached_copy(fs, f"{root}/{version}", cache_dir / "models" / name / version, checksums)
    if expected_sums is not None and checksums.sums_digest != expected_sums:  # after: a broken list says how
        raise IntegrityError(
            f"{name} version {version}: SHA256SUMS has digest {checksums.sums_digest[:12]}..., "
            f"not the {expected_sums[:12]}... recorded when it was released"
        )
    metadata = yaml.safe_load((folder / METADATA_FILE).read_text(encoding="utf-8"))
    return ModelBundle(name, version, folder, metadata)


def _cached_copy(fs: fsspec.AbstractFileSystem, remote: str, folder: Path, checksums: Checksums) -> Path:
    local = LocalFileSystem()
    if folder.exists():
        try:
            verify_files(local, str(folder), checksums)
            return folder
        except IntegrityError as error:
            logger.warning("Discarding the cached copy of %s: %s", remote, error)
            shutil.rmtree(folder)
    download = folder.parent / f".download-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        download.mkdir(parents=True)
        for file_name in checksums.files:
            fs.get_file(f"{remote}/{file_name}", str(download / file_name))
        verify_files(local, str(download), checksums)
        download.rename(folder)
    except OSError:
        if not folder.exists():  # not another process's copy arriving first: a real failure
            raise
        verify_files(local, str(folder), checksums)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return folder
