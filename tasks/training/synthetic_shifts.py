"""Fitting the shift regression (tasks/core/shift_regression.py): calibration images under synthetic
acquisition shifts, with their labels, teach it how far accuracy falls below average confidence.

Each synthetic window takes ``rows_per_window`` calibration images, puts a random share of them
(all of them in most windows, none in a tenth) through one shift of random severity, and runs them
through the version as the service does: properties measured on the shifted image as it would be
uploaded, the model on its resized input, calibrated probabilities and out-of-distribution scores
from the trust layer. The shifts are the ways an imaging setup drifts (exposure, contrast, focus,
sensor noise, compression, orientation, framing, magnification) with wide severity ranges; which
of them a site's drift resembles is unknown in advance, so the benchmark also reports the error on
each family with that family left out of the fit (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import KFold, cross_val_predict

from tasks.core.image_properties import image_properties
from tasks.core.preprocessing import InputSpec, model_pixels
from tasks.core.shift_regression import FEATURE_PROPERTIES, ShiftRegression, window_features

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # inputs -> (calibrated probabilities, OOD scores)
Severity = tuple[float, ...]  # one or two numbers, by family

CLEAN_EVERY = 10  # every tenth window stays unshifted: the regression must learn "no gap" too
WHOLE_WINDOW_SHARE = 0.6  # the others shift a uniform random share of their rows
TREES, DEPTH, LEARNING_RATE, SUBSAMPLE = 300, 3, 0.05, 0.8
FAMILIES = ("brightness", "contrast", "blur", "noise", "jpeg", "rotation", "translation", "zoom")
SEVERITY_RANGES: dict[str, tuple[tuple[float, float], ...]] = {  # drawn uniformly, once per window
    "brightness": ((-90, 90),),  # grey levels added
    "contrast": ((0.25, 1.6), (0, 160)),  # factor, and the grey level it scales about
    "blur": ((0.4, 2.5),),  # Gaussian sigma, pixels
    "noise": ((5, 60),),  # Gaussian sigma, grey levels
    "jpeg": ((3, 60),),  # quality
    "rotation": ((-40, 40),),  # degrees
    "translation": ((-0.18, 0.18), (-0.18, 0.18)),  # share of width, of height
    "zoom": ((0.6, 1.3),),  # scale
}


def random_severity(family: str, rng: np.random.Generator) -> Severity:
    """One acquisition change at a time: a severity drawn once for a whole window."""
    return tuple(float(rng.uniform(low, high)) for low, high in SEVERITY_RANGES[family])


def shifted(image: np.ndarray, family: str, severity: Severity, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8 grey HxW or RGB HxWx3) under one shift."""
    height, width = image.shape[:2]
    centre = (width / 2, height / 2)
    first = severity[0]
    if family == "brightness":
        return np.clip(image.astype(np.int16) + round(first), 0, 255).astype(np.uint8)
    if family == "contrast":
        factor, about = severity
        return np.clip((image.astype(np.float32) - about) * factor + about, 0, 255).astype(np.uint8)
    if family == "blur":
        return np.asarray(cv2.GaussianBlur(image, (0, 0), first))
    if family == "noise":
        return np.clip(image + rng.normal(0, first, image.shape), 0, 255).astype(np.uint8)
    if family == "jpeg":
        encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, round(first)])[1]
        return np.asarray(cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED))
    if family == "rotation":
        return np.asarray(cv2.warpAffine(image, cv2.getRotationMatrix2D(centre, first, 1.0), (width, height)))
    if family == "translation":
        matrix = np.array([[1, 0, severity[0] * width], [0, 1, severity[1] * height]], dtype=np.float32)
        return np.asarray(cv2.warpAffine(image, matrix, (width, height)))
    if family == "zoom":
        return np.asarray(cv2.warpAffine(image, cv2.getRotationMatrix2D(centre, 0, first), (width, height)))
    raise ValueError(f"unknown shift family {family!r}; one of {FAMILIES}")


def grey_or_rgb(pixels: np.ndarray) -> np.ndarray:
    """Measurable pixels (tasks.core.image_properties) as grey or RGB: the alpha channel is not shifted."""
    if pixels.ndim == 2:
        return pixels
    return pixels[..., 0] if pixels.shape[2] <= 2 else np.ascontiguousarray(pixels[..., :3])


def properties_of(images: list[np.ndarray]) -> np.ndarray:
    return np.array([[image_properties(image)[name] for name in FEATURE_PROPERTIES] for image in images])


@dataclass(frozen=True)
class SyntheticWindows:
    features: np.ndarray  # (W, F) window features
    accuracy: np.ndarray  # (W,) realized
    family: np.ndarray  # (W,) the shift of each window, "none" for clean ones
    property_mean: np.ndarray
    property_std: np.ndarray
    ood_threshold: float

    @property
    def gap(self) -> np.ndarray:
        return np.asarray(self.accuracy - self.features[:, 0])


def synthetic_windows(
    originals: list[np.ndarray],
    labels: np.ndarray,
    predict: Predict,
    spec: InputSpec,
    ood_threshold: float,
    windows: int,
    rows_per_window: int,
    seed: int,
    families: tuple[str, ...] = FAMILIES,
) -> SyntheticWindows:
    """Features and realized accuracy of ``windows`` shifted windows of the calibration ``originals``."""
    rng = np.random.default_rng(seed)
    images = [grey_or_rgb(image) for image in originals]
    clean_properties = properties_of(images)
    property_mean, property_std = clean_properties.mean(axis=0), np.maximum(clean_properties.std(axis=0), 1e-9)
    clean_inputs = np.stack([model_pixels(Image.fromarray(image), spec) for image in images])
    size = min(rows_per_window, len(images))
    features, accuracy, family_of = [], [], []
    for index in range(windows):
        family = "none" if index % CLEAN_EVERY == 0 else families[index % len(families)]
        rows = rng.choice(len(images), size, replace=False)
        share = 1.0 if rng.random() < WHOLE_WINDOW_SHARE else float(rng.uniform(0, 1))
        moved = 0 if family == "none" else round(share * size)  # the first ``moved`` rows are shifted
        severity = random_severity(family, rng) if moved else ()
        window_images = [shifted(images[i], family, severity, rng) for i in rows[:moved]]
        inputs, properties = clean_inputs[rows], clean_properties[rows]
        if moved:
            inputs[:moved] = np.stack([model_pixels(Image.fromarray(image), spec) for image in window_images])
            properties[:moved] = properties_of(window_images)
        probabilities, ood_scores = predict(inputs)
        features.append(
            window_features(probabilities, ood_scores, properties, property_mean, property_std, ood_threshold)
        )
        accuracy.append(float((probabilities.argmax(axis=1) == labels[rows]).mean()))
        family_of.append(family)
    return SyntheticWindows(
        np.array(features), np.array(accuracy), np.array(family_of), property_mean, property_std, ood_threshold
    )


def fit_shift_regression(
    synthetic: SyntheticWindows, seed: int, leave_out: str | None = None
) -> tuple[ShiftRegression, float]:
    """The regression of the accuracy gap on the window features (without ``leave_out``'s windows), and
    its out-of-fold mean absolute error in accuracy points."""
    keep = synthetic.family != leave_out
    features, gap = synthetic.features[keep], synthetic.gap[keep]

    def regressor() -> GradientBoostingRegressor:
        return GradientBoostingRegressor(
            n_estimators=TREES,
            max_depth=DEPTH,
            learning_rate=LEARNING_RATE,
            subsample=SUBSAMPLE,
            init="zero",
            random_state=seed,
        )

    folds = KFold(n_splits=5, shuffle=True, random_state=seed)
    errors = np.abs(cross_val_predict(regressor(), features, gap, cv=folds) - gap)
    fitted = regressor().fit(features, gap)
    trees = [estimator.tree_ for estimator in fitted.estimators_[:, 0]]
    nodes = max(tree.node_count for tree in trees)

    def padded(attribute: Callable[..., np.ndarray], fill: float, dtype: type) -> np.ndarray:
        table: np.ndarray = np.full((len(trees), nodes), fill, dtype=dtype)
        for row, tree in enumerate(trees):
            table[row, : tree.node_count] = attribute(tree)
        return table

    regression = ShiftRegression(
        property_mean=synthetic.property_mean,
        property_std=synthetic.property_std,
        ood_threshold=synthetic.ood_threshold,
        feature=padded(lambda t: np.where(t.children_left >= 0, t.feature, -1), -1, np.int64),
        threshold=padded(lambda t: t.threshold, 0.0, np.float64),
        left=padded(lambda t: t.children_left, -1, np.int64),
        right=padded(lambda t: t.children_right, -1, np.int64),
        value=padded(lambda t: t.value[:, 0, 0], 0.0, np.float64),
        learning_rate=LEARNING_RATE,
        depth=DEPTH,
        residual_95=float(np.quantile(errors, 0.95)),
        families=tuple(sorted(set(synthetic.family[keep]) - {"none"})),
        feature_low=features.min(axis=0),
        feature_high=features.max(axis=0),
    )
    return regression, float(errors.mean() * 100)
