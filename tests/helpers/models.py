"""Small real models, trained and published the way the train flow does, for the service and monitor tests."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import yaml

from configs.schema import ModelConfig
from tasks.core.bundle import (
    EMBEDDING_LAYER,
    METADATA_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    SHIFT_REGRESSION_FILE,
    TRUST_FILE,
    UAE_FILE,
)
from tasks.core.preprocessing import InputSpec, preprocess
from tasks.core.trust import TrustModel
from tasks.data.dataset import class_names, properties_table, read_manifest, select_split
from tasks.data.pipeline import evaluation_batches, image_dataset
from tasks.training.calibration import fit_accuracy_regression, fit_trust
from tasks.training.drift_reference import build_reference_features
from tasks.training.fit import compile_model
from tasks.training.models import build_classifier, build_uae
from tests.helpers.data import tiny_config

MODEL_NAME = "fashion-cnn"
SPEC = InputSpec(28, 28)
EPOCHS = 20  # enough for features that tell clothes from digits; a few seconds on the tiny repository


def build_bundle(folder: Path, data_dir: Path, seed: int) -> None:
    """A small classifier trained on the tiny repository, with its trust layer, UAE and metadata."""
    keras.utils.set_random_seed(seed)
    manifest = read_manifest(data_dir)
    names = class_names(manifest, "train")
    rows = select_split(manifest, "train", None, seed).sample(frac=1.0, random_state=seed)  # not class by class
    model = build_classifier(ModelConfig(name=MODEL_NAME, filters=[8, 16], dense_units=32), len(names))
    compile_model(model, 1e-3)
    model.fit(evaluation_batches(image_dataset(data_dir, rows, names, SPEC), 32), epochs=EPOCHS, verbose=0)
    folder.mkdir(parents=True)
    model.save(folder / MODEL_FILE)
    encoder = build_uae((28, 28), 8, seed)
    encoder.save(folder / UAE_FILE)
    # The trust layer as training fits it (calibration share of the validation split).
    config = tiny_config(data_dir.parent, f"train.seed={seed}")
    trust = fit_trust(model, data_dir, manifest, names, SPEC, config).trust
    trust.save(folder / TRUST_FILE)
    estimator = fit_accuracy_regression(model, trust, data_dir, manifest, names, SPEC, config)
    assert estimator is not None  # the tiny configs fit it on a few synthetic windows
    estimator[0].save(folder / SHIFT_REGRESSION_FILE)
    held_out = select_split(manifest, "validation", None, seed)
    properties = properties_table(data_dir, held_out)
    features = build_reference_features(model, encoder, data_dir, held_out, properties, names, SPEC, trust)
    features.to_parquet(folder / REFERENCE_FILE)
    metadata = {"name": MODEL_NAME, "class_names": names, "input": SPEC.as_dict(), "seed": seed}
    metadata["trust"] = config.train.trust.model_dump(mode="json")
    (folder / METADATA_FILE).write_text(yaml.safe_dump(metadata))


def in_process_probabilities(storage: Path, version: str, image: Path) -> np.ndarray:
    """What the published model says about an image, without the service."""
    folder = storage / "models" / MODEL_NAME / version
    model = keras.models.load_model(folder / MODEL_FILE)
    pixels = preprocess(image.read_bytes(), SPEC)[None].astype(np.float32)
    if not (folder / TRUST_FILE).exists():
        return np.asarray(model(pixels, training=False))[0]
    trust = TrustModel.load(folder / TRUST_FILE)  # the service answers with calibrated probabilities
    embedding = keras.Model(model.inputs, model.get_layer(EMBEDDING_LAYER).output)(pixels, training=False)
    return trust.calibrated(trust.logits(np.asarray(embedding, dtype=np.float64)))[0]
