"""A published model version, fetched from central storage and verified before anything loads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import yaml

from tasks.core.preprocessing import InputSpec
from tasks.core.storage import model_root, verify_version

MODEL_FILE = "model.keras"
UAE_FILE = "uae_encoder.keras"
REFERENCE_FILE = "reference_features.parquet"
METADATA_FILE = "metadata.yaml"

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


def fetch_bundle(storage_url: str, name: str, version: str, cache_dir: Path) -> ModelBundle:
    """Verify every checksum, copy the version locally when storage is remote, read its metadata."""
    verify_version(storage_url, name, version)
    fs, root = model_root(storage_url, name)
    folder = Path(f"{root}/{version}")
    if not folder.is_dir():  # remote storage: keras loads from local files
        folder = cache_dir / "models" / name / version
        if not (folder / METADATA_FILE).exists():
            fs.get(f"{root}/{version}/", str(folder), recursive=True)
    metadata = yaml.safe_load((folder / METADATA_FILE).read_text(encoding="utf-8"))
    return ModelBundle(name, version, folder, metadata)
