"""When the deployed model meets a shifted share of its traffic, does the review queue's choice of which
served images to label beat choosing them at random?

    python benchmarks/flywheel.py [--shifted-share 0.3] [--repeats 3] [--epochs 5]    (about 20 min on 2 cores)

Everything is trained here, from the Fashion-MNIST dataset repository (datasets/fashion-mnist/data):

- **Deployed model**: the project's classifier (tasks/training/models.py, the default small CNN) trained
  on 10,000 train-split images with a fixed recipe: Adam 1e-3, batch 128, 5 epochs, seed 42, the shared
  preprocessing (tasks/core/preprocessing.py), no augmentation and no early stopping, so that a
  retraining differs from it only by the images added.
- **Served traffic**: 6,000 other train-split images; 30% of them come from a new acquisition setup, a
  washed-out scanner (tasks/training/synthetic_shifts.py: contrast x0.5 about grey level 128, which
  halves the contrast and lifts the black background to grey 64). The rest look like training.
- **Evaluation**: the 10,000 test images, clean and all under the same shift.
- **The deployed model's trust layer** is fitted as training fits it (tasks/training/calibration.py,
  the default ``train.trust`` settings): class means and covariance from its 10,000 images, temperature,
  conformal set and out-of-distribution thresholds from 2,000 further clean train-split images it never
  trained on. The service logs what it yields for every prediction: calibrated probabilities, the set
  size, the out-of-distribution flag.
- **Choosing n images to review** (n = 200, 500, 1,000) from the traffic: the queue's rule,
  ``select_diverse(review_priority(calibrated, set_sizes, ood), uae, n)`` from
  tasks/core/review_selection.py, with the features the service logs (the untrained seeded autoencoder
  encoder, tasks.training.models.build_uae, 32 dimensions, seed 42); against uniform random choice,
  against the queue's priority alone (the top n, without the diversity step), and against the queue
  without a trust layer (the raw softmax margin and the diversity step: a version trained with
  ``train.trust.enabled: false``). The queue runs two ways: all n at once from the deployed model's
  logs, and **in rounds**, as the loop runs in production (review, add-reviews, retrain, deploy):
  the first 200 from the deployed model's logs, then up to 500 from what the version retrained on
  those 200 logs for the images not yet reviewed (its own trust layer, fitted the same way), then up
  to 1,000 from the version retrained on 500. Random choice needs no rounds.
- **Reviews** are simulated from the true labels. Each choice is added to the deployed model's 10,000
  images and the model is retrained from scratch with the same recipe, ``--repeats`` times: repeat k
  retrains every strategy with seed 42 + k (the same initialisation and order seed for all of them,
  repeat 0 the deployed model's own), and random choice draws new images at each repeat. Retraining
  alone moves accuracy on the shifted images by a few points, so every figure is the mean and range
  of the repeats.

The target: the queue reaches random choice's 1,000-label accuracy on the shifted test images with at
most 500 labels (means of the repeats). The learning curves go to docs/images/flywheel-learning-curves.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA_DIR = ROOT / "datasets" / "fashion-mnist" / "data"
FIGURE = ROOT / "docs" / "images" / "flywheel-learning-curves.png"
SHIFT_FAMILY, SHIFT_SEVERITY = "contrast", (0.5, 128.0)  # a washed-out scanner: contrast halved about mid-grey
SHIFT_NAME = "contrast x0.5 about grey 128"
BUDGETS = (200, 500, 1000)
TARGET_LABELS, REFERENCE_LABELS = 500, 1000
LEARNING_RATE, BATCH_SIZE, UAE_DIM = 1e-3, 128, 32
QUEUE, PRIORITY_ONLY, RANDOM = "review queue, at once", "queue priority only", "random"
IN_ROUNDS, NO_TRUST = "review queue, in rounds", "queue without trust layer"
STYLES = {
    IN_ROUNDS: ("C3", "D"),
    QUEUE: ("C0", "o"),
    PRIORITY_ONLY: ("C2", "^"),
    NO_TRUST: ("C7", "v"),
    RANDOM: ("C1", "s"),
}
CALIBRATION_ROWS = 2_000


def load(rows: pd.DataFrame, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB model inputs through the shared preprocessing, and class indices."""
    from tasks.core.preprocessing import InputSpec, preprocess

    spec = InputSpec(height=28, width=28)
    images = np.stack([preprocess((DATA_DIR / path).read_bytes(), spec) for path in rows["path"]])
    return images, rows["label"].map(index).to_numpy()


def under_shift(images: np.ndarray, seed: int) -> np.ndarray:
    from tasks.training.synthetic_shifts import shifted

    rng = np.random.default_rng(seed)
    return np.stack([shifted(image, SHIFT_FAMILY, SHIFT_SEVERITY, rng) for image in images])


class Trainer:
    """The one recipe every model here is trained with: same initialisation, order seed and epochs."""

    def __init__(self, epochs: int, seed: int, class_count: int) -> None:
        self.epochs, self.seed, self.class_count = epochs, seed, class_count
        self.seconds: list[float] = []

    def fit(self, images: np.ndarray, labels: np.ndarray) -> Any:
        import keras

        from configs.schema import ModelConfig
        from tasks.training.fit import compile_model
        from tasks.training.models import build_classifier

        started = time.perf_counter()
        keras.backend.clear_session()
        keras.utils.set_random_seed(self.seed)
        model = build_classifier(ModelConfig(name="flywheel"), self.class_count)
        compile_model(model, LEARNING_RATE)
        model.fit(images.astype(np.float32), labels, batch_size=BATCH_SIZE, epochs=self.epochs, shuffle=True, verbose=0)
        self.seconds.append(time.perf_counter() - started)
        return model


def softmax(model: Any, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images.astype(np.float32), batch_size=1000, verbose=0))


def what_the_service_logs(
    model: Any, trained: tuple[np.ndarray, np.ndarray], calibration: tuple[np.ndarray, np.ndarray], pool: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pool through ``model`` and the trust layer training fits for it: calibrated probabilities,
    prediction set sizes and out-of-distribution flags, as the service logs them."""
    from configs.schema import TrustConfig
    from tasks.core.bundle import CLASSIFIER_OUTPUT
    from tasks.training.calibration import feature_model, trust_from_features

    extractor = feature_model(model)

    def features(images: np.ndarray) -> np.ndarray:
        return np.asarray(extractor.predict(images.astype(np.float32), batch_size=1000, verbose=0), np.float64)

    kernel, bias = (np.asarray(w, dtype=np.float64) for w in model.get_layer(CLASSIFIER_OUTPUT).get_weights())
    trust = trust_from_features(
        features(trained[0]), trained[1], features(calibration[0]), calibration[1], (kernel, bias), TrustConfig()
    ).trust
    pool_features = features(pool)
    logits = trust.logits(pool_features)
    calibrated = trust.calibrated(logits)
    return calibrated, trust.sets(calibrated).sum(axis=1), trust.ood_scores(pool_features, logits) > trust.ood_threshold


def accuracy(model: Any, images: np.ndarray, labels: np.ndarray) -> float:
    return float((softmax(model, images).argmax(axis=1) == labels).mean())


def plot(curves: dict[str, dict[int, list[float]]], base: float, path: Path, title: str) -> None:
    """Accuracy on shifted test images against labels added: mean and min-max band per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for name, points in curves.items():
        labels = [0, *points]
        color, marker = STYLES[name]
        runs = len(points[BUDGETS[0]])
        axis.plot(labels, [base, *(float(np.mean(v)) for v in points.values())], marker=marker, color=color, label=name)
        low, high = [base, *(min(v) for v in points.values())], [base, *(max(v) for v in points.values())]
        axis.fill_between(labels, low, high, color=color, alpha=0.15)
    axis.axhline(base, color="grey", linestyle="--", label=f"deployed model ({base:.3f})")
    axis.set(
        xlabel="reviewed images added to training",
        ylabel="accuracy on shifted test images",
        title=f"{title}\nmean and min-max of {runs} retrainings",
    )
    axis.set_xticks([0, *BUDGETS])
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-rows", type=int, default=10_000, help="train-split images of the deployed model")
    parser.add_argument("--pool-rows", type=int, default=6_000, help="served images to choose from")
    parser.add_argument("--shifted-share", type=float, default=0.3, help="share of the served images under the shift")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="retrainings per strategy and budget (seeds seed+k)")
    parser.add_argument("--seed", type=int, default=42, help="the deployed model's training seed, encoder and sampling")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="TensorFlow intra-op threads")
    args = parser.parse_args()
    started = time.perf_counter()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from tasks.core.review_selection import review_priority, select_diverse
    from tasks.data.dataset import class_names, read_manifest
    from tasks.training.models import build_uae

    manifest = read_manifest(DATA_DIR)
    names = class_names(manifest, "train")
    index = {name: i for i, name in enumerate(names)}
    train_rows = manifest[manifest["split"] == "train"].sample(frac=1.0, random_state=args.seed)
    base_images, base_labels = load(train_rows.iloc[: args.base_rows], index)
    pool_end = args.base_rows + args.pool_rows
    pool_images, pool_labels = load(train_rows.iloc[args.base_rows : pool_end], index)
    calibration = load(train_rows.iloc[pool_end : pool_end + CALIBRATION_ROWS], index)
    test_images, test_labels = load(manifest[manifest["split"] == "test"], index)
    rng = np.random.default_rng(args.seed)
    moved = np.zeros(len(pool_images), dtype=bool)
    moved[rng.choice(len(pool_images), round(args.shifted_share * len(pool_images)), replace=False)] = True
    pool_images[moved] = under_shift(pool_images[moved], args.seed)
    shifted_test = under_shift(test_images, args.seed + 1)

    trainer = Trainer(args.epochs, args.seed, len(names))
    base = trainer.fit(base_images, base_labels)
    base_clean, base_shifted = accuracy(base, test_images, test_labels), accuracy(base, shifted_test, test_labels)
    probabilities = softmax(base, pool_images)
    calibrated, set_sizes, ood = what_the_service_logs(base, (base_images, base_labels), calibration, pool_images)
    encoder = build_uae((28, 28), UAE_DIM, args.seed)
    features = np.asarray(encoder.predict(pool_images.astype(np.float32), batch_size=1000, verbose=0))
    pool_correct = probabilities.argmax(axis=1) == pool_labels
    print(
        f"Deployed model: {len(base_labels):,} train images, {args.epochs} epochs "
        f"({trainer.seconds[0]:.0f} s per training on {args.threads} threads)"
    )
    print(
        f"Shift ({SHIFT_NAME}): test accuracy {base_clean:.4f} clean -> {base_shifted:.4f} shifted "
        f"(-{100 * (base_clean - base_shifted):.1f} points)"
    )
    print(
        f"Served pool: {len(pool_labels):,} images, {moved.sum():,} shifted; deployed accuracy "
        f"{pool_correct[~moved].mean():.4f} on the clean ones, {pool_correct[moved].mean():.4f} on the shifted"
    )
    print(
        f"Trust layer on the served pool: out of distribution {ood[moved].mean():.1%} of the shifted images, "
        f"{ood[~moved].mean():.1%} of the clean; prediction set of several classes {(set_sizes[moved] > 1).mean():.1%} "
        f"of the shifted, {(set_sizes[~moved] > 1).mean():.1%} of the clean\n"
    )

    priority, margin_only = review_priority(calibrated, set_sizes, ood), review_priority(probabilities)
    # In rounds, as the loop runs: the version retrained on the reviews so far serves, and the queue picks
    # the next ones from what it logs. Repeat k -> (images chosen so far, their version's priorities).
    rounds: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def next_round(n: int, k: int) -> np.ndarray:
        chosen, ranked = rounds.get(k, (np.array([], dtype=int), priority))
        remaining = np.setdiff1d(np.arange(len(pool_labels)), chosen)
        picked = remaining[select_diverse(ranked[remaining], features[remaining], n - len(chosen))]
        return np.concatenate([chosen, picked])

    def after_round(model: Any, chosen: np.ndarray, trained: tuple[np.ndarray, np.ndarray], k: int) -> None:
        rounds[k] = (chosen, review_priority(*what_the_service_logs(model, trained, calibration, pool_images)))

    choices: dict[str, Callable[[int, int], np.ndarray]] = {  # each strategy's n images for repeat k
        IN_ROUNDS: next_round,
        QUEUE: lambda n, _: np.asarray(select_diverse(priority, features, n)),
        PRIORITY_ONLY: lambda n, _: np.argsort(-priority, kind="stable")[:n],
        NO_TRUST: lambda n, _: np.asarray(select_diverse(margin_only, features, n)),
        RANDOM: lambda n, k: np.random.default_rng([args.seed, k]).choice(len(pool_labels), n, replace=False),
    }
    results: dict[str, dict[int, list[dict[str, float]]]] = {name: {n: [] for n in BUDGETS} for name in choices}
    for k in range(args.repeats):
        trainer.seed = args.seed + k  # repeat k retrains every strategy from the same seed: paired
        for n in BUDGETS:
            for name, choose in choices.items():
                chosen = choose(n, k)
                trained = (
                    np.concatenate([base_images, pool_images[chosen]]),
                    np.concatenate([base_labels, pool_labels[chosen]]),
                )
                model = trainer.fit(*trained)
                if name == IN_ROUNDS:  # now, before the next training clears the session
                    after_round(model, chosen, trained, k)
                results[name][n].append(
                    {
                        "shifted": accuracy(model, shifted_test, test_labels),
                        "clean": accuracy(model, test_images, test_labels),
                        "share_shifted": float(moved[chosen].mean()),
                        "share_wrong": float(1 - pool_correct[chosen].mean()),
                    }
                )

    def cell(name: str, n: int, key: str, digits: int = 4) -> str:
        values = [run[key] for run in results[name][n]]
        if min(values) == max(values):  # the same images at every repeat
            return f"{values[0]:.{digits}f}"
        return f"{np.mean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    rows = [
        {"labels": 0, "chosen by": "(deployed model)", "shifted test": f"{base_shifted:.4f}"}
        | {"clean test": f"{base_clean:.4f}", "shifted share of chosen": "", "deployed model wrong on chosen": ""}
    ]
    for n in BUDGETS:
        rows += [
            {"labels": n, "chosen by": name, "shifted test": cell(name, n, "shifted")}
            | {"clean test": cell(name, n, "clean"), "shifted share of chosen": cell(name, n, "share_shifted", 2)}
            | {"deployed model wrong on chosen": cell(name, n, "share_wrong", 2)}
            for name in choices
        ]
    print(
        f"Accuracy after retraining on the deployed model's {len(base_labels):,} images + n reviewed ones: mean "
        f"(min-max) of {args.repeats} retrainings (test split, {len(test_labels):,} images, clean and shifted):\n"
    )
    print(pd.DataFrame(rows).to_markdown(index=False))

    def mean(name: str, n: int) -> float:
        return float(np.mean([run["shifted"] for run in results[name][n]]))

    reference = mean(RANDOM, REFERENCE_LABELS)
    print(
        f"\nTarget: the queue at <= {TARGET_LABELS} labels reaches random choice's {REFERENCE_LABELS:,}-label "
        f"accuracy on shifted test images ({reference:.4f}, mean of {args.repeats}):"
    )
    for queue in (IN_ROUNDS, QUEUE):
        reached = [n for n in BUDGETS if n <= TARGET_LABELS and mean(queue, n) >= reference]
        paired = sum(
            results[queue][TARGET_LABELS][k]["shifted"] >= results[RANDOM][REFERENCE_LABELS][k]["shifted"]
            for k in range(args.repeats)
        )
        print(
            f"  {queue}: "
            + (f"met, at {min(reached)} labels ({mean(queue, min(reached)):.4f})" if reached else "not met")
            + f"; at {TARGET_LABELS} >= random at {REFERENCE_LABELS:,} in {paired} of {args.repeats} paired repeats"
        )
    curves = {name: {n: [run["shifted"] for run in results[name][n]] for n in BUDGETS} for name in choices}
    plot(curves, base_shifted, args.figure, f"{SHIFT_NAME} on {args.shifted_share:.0%} of the served images")
    print(
        f"Figure: {args.figure.relative_to(ROOT) if args.figure.is_relative_to(ROOT) else args.figure}; "
        f"{len(trainer.seconds)} trainings, mean {np.mean(trainer.seconds):.0f} s; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
