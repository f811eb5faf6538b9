"""How close is the accuracy the monitor estimates before labels arrive? Side by side with NannyML's CBPE.

    python benchmarks/accuracy_estimation.py [--version V] [--windows 10]    (after `make run`)

Windows of 500 test images, each under a shift that keeps the labels meaningful (brightness,
contrast, blur, noise, class mix, JPEG artefacts, rotation, and none), run through the version as the
service runs them (calibrated probabilities, out-of-distribution scores, image properties of the
image as uploaded). For every window: the realized accuracy against the estimates of the shift
regression (the monitor's default), average confidence, ATC, and NannyML 0.13's CBPE (fitted on the
same labelled reference: the version's reference rows). CBPE runs from its own virtual environment
(.mlops/bench/nannyml-venv, built on first use): it needs newer pandas and numpy than the lock holds.

The shift regression is the version's own (fitted at training time; refitted here the same way for a
version published without one). Its synthetic windows are rebuilt from the same calibration rows and
seed, and for each shift that has a synthetic family the regression is refitted without that family:
the "family left out" column is its error on a kind of shift it never saw. Absolute errors are in
accuracy points.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WINDOW = 500
SHIFTS = (
    "none",
    "brightness +40",
    "contrast x0.5",
    "blur 5x5",
    "noise sigma 25",
    "class mix (3 classes)",
    "JPEG quality 10",
    "rotation 20 degrees",
)
FAMILY_OF = {  # the synthetic family (tasks/training/synthetic_shifts.py) each benchmark shift belongs to
    "brightness +40": "brightness",
    "contrast x0.5": "contrast",
    "blur 5x5": "blur",
    "noise sigma 25": "noise",
    "JPEG quality 10": "jpeg",
    "rotation 20 degrees": "rotation",
}
CBPE_SCRIPT = """
import sys, pandas as pd, nannyml as nml
reference, analysis = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2])
classes, chunk = sys.argv[3].split(","), int(sys.argv[4])
estimator = nml.CBPE(problem_type="classification_multiclass", y_pred_proba={c: f"p_{c}" for c in classes},
                     y_pred="y_pred", y_true="y_true", metrics=["accuracy"], chunk_size=chunk)
estimator.fit(reference)
result = estimator.estimate(analysis).filter(period="analysis").to_df()
result[("accuracy", "value")].to_csv(sys.stdout, index=False, header=False)
"""


def nannyml_python() -> Path:
    venv = ROOT / ".mlops" / "bench" / "nannyml-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "nannyml==0.13.1", "statsmodels"], check=True)
    return python


def shift(images: np.ndarray, labels: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The test images under ``kind``; the labels stay right (class mix keeps three classes only)."""
    import cv2

    if kind == "none":
        return images, labels
    if kind == "brightness +40":
        return np.clip(images.astype(int) + 40, 0, 255).astype(np.uint8), labels
    if kind == "contrast x0.5":
        return np.clip((images.astype(float) - 128) * 0.5 + 128, 0, 255).astype(np.uint8), labels
    if kind == "blur 5x5":
        return np.stack([cv2.GaussianBlur(image, (5, 5), 0) for image in images]), labels
    if kind == "noise sigma 25":
        return np.clip(images + rng.normal(0, 25, images.shape), 0, 255).astype(np.uint8), labels
    if kind == "class mix (3 classes)":
        keep = np.isin(labels, [0, 3, 6])  # t-shirt, dress, shirt: two of them the model confuses most
        return images[keep], labels[keep]
    if kind == "JPEG quality 10":
        encoded = [cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 10])[1] for image in images]
        return np.stack([cv2.imdecode(code, cv2.IMREAD_COLOR) for code in encoded]), labels
    if kind == "rotation 20 degrees":
        matrix = cv2.getRotationMatrix2D((14, 14), 20, 1.0)
        return np.stack([cv2.warpAffine(image, matrix, (28, 28)) for image in images]), labels
    raise ValueError(kind)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", help="published version (default: the production one)")
    parser.add_argument("--windows", type=int, default=10, help="windows of 500 per shift")
    args = parser.parse_args()

    from benchmarks.trust import bundle_with_trust, outputs
    from configs.schema import load_config
    from tasks.core.bundle import REFERENCE_FILE
    from tasks.core.image_properties import image_properties
    from tasks.core.preprocessing import preprocess
    from tasks.core.shift_regression import FEATURE_PROPERTIES
    from tasks.data.dataset import read_manifest
    from tasks.monitoring.estimation import ShiftInputs, estimate_accuracy
    from tasks.training.calibration import synthetic_windows_of
    from tasks.training.synthetic_shifts import fit_shift_regression

    bundle = bundle_with_trust(args.version)
    if bundle is None:
        return 2
    trust = bundle.load_trust()
    assert trust is not None  # bundle_with_trust checked it
    name, version = bundle.name, bundle.version
    classifier, names = bundle.load_classifier(), bundle.class_names
    reference = pd.read_parquet(bundle.folder / REFERENCE_FILE)
    probability_columns = [f"bbsd_{i}" for i in range(len(names))]
    reference_confidence = reference[probability_columns].to_numpy(float).max(axis=1)
    reference_correct = (reference["label"] == reference["prediction"]).to_numpy()

    data_dir = ROOT / "datasets" / "fashion-mnist" / "data"
    manifest = read_manifest(data_dir)
    config = load_config(ROOT / "configs" / "full_flow_config.yaml")  # the calibration rows training used
    synthetic = synthetic_windows_of(classifier, trust, data_dir, manifest, names, bundle.input_spec, config)
    # The version's own; for a version published without one, fitted here exactly as training fits it.
    regression = bundle.load_shift_regression() or fit_shift_regression(synthetic, config.train.seed)[0]
    left_out = {
        family: fit_shift_regression(synthetic, config.train.seed, leave_out=family)[0] for family in FAMILY_OF.values()
    }

    test = manifest[manifest["split"] == "test"]
    images = np.stack([preprocess((data_dir / path).read_bytes(), bundle.input_spec) for path in test["path"]])
    labels = test["label"].map({n: i for i, n in enumerate(names)}).to_numpy()

    rng = np.random.default_rng(0)
    windows, analysis_parts = [], []
    for kind in SHIFTS:
        shifted_images, shifted_labels = shift(images, labels, kind, rng)
        _, features = outputs(classifier, shifted_images)
        logits = trust.logits(features)
        probabilities = trust.calibrated(logits)
        ood_scores = trust.ood_scores(features, logits)
        flagged = ood_scores > trust.ood_threshold
        properties = np.array(
            [[image_properties(image)[p] for p in FEATURE_PROPERTIES] for image in shifted_images]
        )  # of the image as it would be uploaded
        for _ in range(args.windows):
            rows = rng.choice(len(shifted_labels), WINDOW, replace=False)
            window_probabilities, window_labels = probabilities[rows], shifted_labels[rows]
            signals = ShiftInputs(regression, ood_scores[rows], properties[rows])
            estimate = estimate_accuracy(
                window_probabilities, reference_confidence, reference_correct, ood=flagged[rows], shift=signals
            )
            family = FAMILY_OF.get(kind)
            unseen = (
                left_out[family].estimate(window_probabilities, ood_scores[rows], properties[rows]) if family else None
            )
            realized = float((window_probabilities.argmax(axis=1) == window_labels).mean())
            low, high = estimate.interval
            windows.append(
                {
                    "shift": kind,
                    "realized": realized,
                    **estimate.by_estimator,
                    "family left out": unseen,
                    "flagged OOD": estimate.ood_share,
                    "interval holds it": low - 1e-9 <= realized <= high + 1e-9,
                }
            )
            analysis_parts.append(frame(window_probabilities, window_labels, names))

    with tempfile.TemporaryDirectory() as folder:
        reference_csv, analysis_csv = Path(folder) / "reference.csv", Path(folder) / "analysis.csv"
        frame(
            reference[probability_columns].to_numpy(float), reference["label"].map(names.index).to_numpy(), names
        ).to_csv(reference_csv, index=False)
        pd.concat(analysis_parts, ignore_index=True).to_csv(analysis_csv, index=False)
        command = [str(nannyml_python()), "-c", CBPE_SCRIPT, str(reference_csv), str(analysis_csv), ",".join(names)]
        cbpe = subprocess.run([*command, str(WINDOW)], capture_output=True, text=True, check=True).stdout
    estimates = pd.read_csv(io.StringIO(cbpe), header=None)[0].to_numpy()
    table = pd.DataFrame(windows)
    table["nannyml_cbpe"] = estimates[: len(table)]
    errors = table.assign(
        **{
            column: (table[column] - table["realized"]).abs() * 100
            for column in ("shift_regression", "family left out", "average_confidence", "atc", "nannyml_cbpe")
        }
    )
    summary = errors.groupby("shift", sort=False).agg(
        realized=("realized", "mean"),
        shift_regression=("shift_regression", "mean"),
        family_left_out=("family left out", "mean"),
        average_confidence=("average_confidence", "mean"),
        atc=("atc", "mean"),
        nannyml_cbpe=("nannyml_cbpe", "mean"),
        flagged_ood=("flagged OOD", "mean"),
        interval_holds=("interval holds it", "mean"),
    )
    summary.loc["mean over shifts"] = summary.mean()
    summary.loc["worst shift"] = summary.drop(index="mean over shifts").max()
    summary.loc["worst shift", ["realized", "flagged_ood", "interval_holds"]] = np.nan
    summary["realized"] = summary["realized"].round(4)
    print(f"# {name} version {version}: {args.windows} windows of {WINDOW} per shift")
    print(
        f"Shift regression: {len(synthetic.accuracy)} synthetic windows of families {', '.join(regression.families)}; "
        f"95% error on windows it did not fit {regression.residual_95 * 100:.1f} points"
    )
    print("\nMean absolute error of the estimated accuracy, in points (realized accuracy beside):\n")
    columns = {"shift_regression": "shift regression (default)", "family_left_out": "same, family left out"}
    print(summary.round(2).rename(columns=columns).to_markdown())
    return 0


def frame(probabilities: np.ndarray, labels: np.ndarray, names: list[str]) -> pd.DataFrame:
    """NannyML's columns: a probability per class, the prediction and the label, by class name."""
    table = pd.DataFrame(probabilities, columns=[f"p_{n}" for n in names])
    table["y_pred"] = [names[i] for i in probabilities.argmax(axis=1)]
    table["y_true"] = [names[i] for i in labels]
    return table


if __name__ == "__main__":
    sys.exit(main())
