"""Do the drift verdicts mean something? Alarm rates on in-distribution and shifted windows, and time.

    python benchmarks/monitoring.py        (after `make run`: it monitors the production model)

Windows are built from what the service would log: held-out Fashion-MNIST test images (no drift),
handwritten digits (scikit-learn's bundled set), a 25% digit mix, a brightness shift and a class-mix
change, each image run through the production model and UAE exactly as the service does. The
reference is the model's published reference features (validation split, disjoint from test).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WINDOWS = (100, 500, 2000)
PEER_SCENARIOS = ("fashion (no drift)", "25% digits", "brightness +40")
PEER_WINDOW = 500  # Evidently's report takes seconds per window: compared at one size


def logged_rows(model, contents: list[bytes]) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """The columns the service logs for each image: softmax, UAE, prediction, properties."""
    from services.dl_service.images import check_image
    from tasks.core.prediction_log import bbsd_columns, uae_columns

    parts = []
    for start in range(0, len(contents), 256):
        chunk = contents[start : start + 256]
        checked = [check_image(c, 10**8, 10**9, model.input_spec) for c in chunk]
        inference = model.predict(np.stack([model.input_of(image) for image in checked]))
        probabilities, features = inference.probabilities, inference.features
        frame = pd.DataFrame([image.properties for image in checked])
        frame["prediction"] = [model.class_names[i] for i in probabilities.argmax(axis=1)]
        frame[bbsd_columns(probabilities.shape[1])] = probabilities
        frame[uae_columns(features.shape[1])] = features
        parts.append(frame)
    return pd.concat(parts, ignore_index=True).assign(label=None)


def traffic(data_dir: Path, manifest: pd.DataFrame) -> dict[str, list[bytes]]:
    from benchmarks.traffic import demo_images, digit_images

    test_count = int((manifest["split"] == "test").sum())
    fashion = [c for c, _ in demo_images("fashion", data_dir, manifest, test_count, seed=0)]
    return {
        "fashion (no drift)": fashion,
        "digits": digit_images(),
        "brightness +40": [c for c, _ in demo_images("brightness", data_dir, manifest, test_count, seed=0)],
        "class mix: 3 classes": [c for c, _ in demo_images("classmix", data_dir, manifest, 3000, seed=0)],
    }


def window(pools: dict[str, pd.DataFrame], name: str, size: int, rng: np.random.Generator) -> pd.DataFrame:
    if name == "25% digits":
        digits = _sample(pools["digits"], size // 4, rng)
        return pd.concat([_sample(pools["fashion (no drift)"], size - size // 4, rng), digits], ignore_index=True)
    return _sample(pools[name], size, rng)


def _sample(pool: pd.DataFrame, size: int, rng: np.random.Generator) -> pd.DataFrame:
    """Without replacement while the pool is large enough (the 1,797 digits are not, at 2,000)."""
    return pool.sample(size, replace=size > len(pool), random_state=int(rng.integers(1 << 31)))


def evidently_default_alarm(reference: pd.DataFrame, current: pd.DataFrame) -> bool:
    """Evidently's own verdict with its defaults: dataset drift when half the columns drift,
    each column by its size-dependent default test, on the same monitored columns."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from tasks.core.image_properties import PROPERTY_COLUMNS

    columns = [*PROPERTY_COLUMNS, *(c for c in reference.columns if c.startswith(("bbsd_", "uae_")))]
    definition = DataDefinition(numerical_columns=columns)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    drifted = snapshot.dict()["metrics"][0]["value"]
    return bool(drifted["share"] >= 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=20, help="windows per size and traffic")
    args = parser.parse_args()

    from configs.schema import MonitorConfig
    from services.dl_service.model import load_served_model
    from tasks.core.bundle import REFERENCE_FILE, fetch_bundle
    from tasks.core.pointer import read_pointer
    from tasks.core.settings import get_settings
    from tasks.data.dataset import read_manifest
    from tasks.monitoring.verdict import decide

    settings, name = get_settings(), "fashion-cnn"
    pointer = read_pointer(settings.central_storage_url, name)
    if pointer is None:
        print("No production model: run `make run` first", file=sys.stderr)
        return 2
    model = load_served_model(settings.central_storage_url, name, pointer.version, settings.cache_dir)
    reference = pd.read_parquet(
        fetch_bundle(settings.central_storage_url, name, pointer.version, settings.cache_dir).folder / REFERENCE_FILE
    )
    data_dir = ROOT / "datasets" / "fashion-mnist" / "data"
    contents = traffic(data_dir, read_manifest(data_dir))
    pools = {key: logged_rows(model, value) for key, value in contents.items()}
    config = MonitorConfig(min_labelled=1)
    rng = np.random.default_rng(0)
    rows = []
    scenarios = [*pools, "25% digits"]
    for size in WINDOWS:
        for scenario in scenarios:
            alarms, peer_alarms, seconds = 0, 0, []
            for _ in range(args.windows):
                current = window(pools, scenario, size, rng)
                started = time.perf_counter()
                alarms += decide(reference, current, model.class_names, config, seed=int(rng.integers(1 << 16))).drift
                seconds.append(time.perf_counter() - started)
                if scenario in PEER_SCENARIOS and size == PEER_WINDOW:
                    peer_alarms += evidently_default_alarm(reference, current)
            peer = peer_alarms / args.windows if scenario in PEER_SCENARIOS and size == PEER_WINDOW else None
            rows.append((size, scenario, alarms / args.windows, peer, float(np.mean(seconds))))
    big_reference = pools["fashion (no drift)"].sample(10_000, replace=True, random_state=1)
    big_current = window(pools, "25% digits", 10_000, rng)
    started = time.perf_counter()
    big = decide(big_reference, big_current, model.class_names, config)
    big_seconds = time.perf_counter() - started

    print(
        f"\nDrift verdicts of {name} version {pointer.version} (alpha {config.p_value}, {args.windows} windows each, "
        f"reference {len(reference)} rows)"
    )
    print(f"{'window':>7}  {'traffic':<22}{'alarm rate':>11}{'Evidently default':>19}{'seconds':>9}")
    for size, scenario, rate, peer, mean_seconds in rows:
        shown = f"{peer:.2f}" if peer is not None else "-"
        print(f"{size:>7}  {scenario:<22}{rate:>11.2f}{shown:>19}{mean_seconds:>9.2f}")
    print(f"\n10,000 current x 10,000 reference: {big_seconds:.1f} s (drift={big.drift}, p={big.p_value:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
