"""Is training ever input-bound? The input pipeline's throughput (with augmentation) next to the
training step's, measured in one run on the same data, model and batch size as the train config.

    make bench        (or: python benchmarks/input_pipeline.py --images 10000)

The training step is timed on batches already in memory, so it measures the model alone; the
pipeline is timed without the model, so it measures what it can feed. Target: ratio >= 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET_RATIO = 2.0


def images_per_second(batches, repeats: int = 1) -> float:  # type: ignore[no-untyped-def]
    count, started = 0, time.perf_counter()
    for _ in range(repeats):
        for images, _labels in batches:
            count += int(images.shape[0])
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/train_config.yaml"))
    parser.add_argument("--images", type=int, default=10_000, help="training images to time over")
    parser.add_argument("--steps", type=int, default=60, help="training steps to time")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from configs.schema import load_config
    from tasks.core.settings import REPO_ROOT
    from tasks.data.dataset import class_names, read_manifest, select_split
    from tasks.data.pipeline import image_dataset
    from tasks.training.augmentation import build_augmenter
    from tasks.training.batches import training_batches
    from tasks.training.fit import compile_model
    from tasks.training.metadata import input_spec
    from tasks.training.models import build_classifier

    config = load_config(args.config, root=REPO_ROOT)
    data_dir = config.dataset.path / "data"
    manifest = read_manifest(data_dir)
    names = class_names(manifest, config.dataset.train_split)
    rows = select_split(manifest, config.dataset.train_split, args.images, config.train.seed)
    rows = rows.sample(frac=1.0, random_state=config.train.seed)
    train = config.train
    augmenter = build_augmenter(train.augmentation, train.seed)
    pipeline = training_batches(
        image_dataset(data_dir, rows, names, input_spec(config)),
        train.batch_size,
        train.seed,
        train.shuffle_buffer,
        augmenter,
    )

    first_epoch = images_per_second(pipeline)  # reads and decodes the PNG files, fills the cache
    pipeline_rate = images_per_second(pipeline, repeats=2)  # what every later epoch can feed

    keras.utils.set_random_seed(train.seed)
    model = build_classifier(config.model, len(names))
    compile_model(model, train.learning_rate)
    in_memory = list(pipeline.take(20))
    resident = (
        tf.data.Dataset.from_tensor_slices(
            (tf.concat([x for x, _ in in_memory], 0), tf.concat([y for _, y in in_memory], 0))
        )
        .batch(train.batch_size)
        .cache()
        .repeat()
    )
    model.fit(resident, steps_per_epoch=10, epochs=1, verbose=0)  # compile and warm up
    started = time.perf_counter()
    model.fit(resident, steps_per_epoch=args.steps, epochs=1, verbose=0)
    train_rate = args.steps * train.batch_size / (time.perf_counter() - started)

    ratio = pipeline_rate / train_rate
    augmenters = ", ".join(a.name for a in train.augmentation) or "none"
    print(
        f"\nInput pipeline vs training step ({config.model.architecture}, batch {train.batch_size}, "
        f"{len(rows)} images, augmentation: {augmenters}, {os.cpu_count()} cores)"
    )
    print(f"{'stage':<48}{'images/s':>12}")
    print(f"{'pipeline, first epoch (read + decode + augment)':<48}{first_epoch:>12,.0f}")
    print(f"{'pipeline, later epochs (cached + augment)':<48}{pipeline_rate:>12,.0f}")
    print(f"{'training step (forward + backward + update)':<48}{train_rate:>12,.0f}")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"ratio pipeline / training step: {ratio:.2f} (target >= {TARGET_RATIO}) {verdict}")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
