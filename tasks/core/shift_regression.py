"""The accuracy of a window of predictions before labels, corrected for shifts that leave the model
confidently wrong.

Average confidence is right while the model stays calibrated; a brightness or contrast change
breaks that (the model loses 14 to 54 points and stays sure of itself). What the service logs for
every prediction does see such a change: the image properties (brightness, contrast, sharpness)
move, and so do the out-of-distribution scores and the shape of the confidence distribution.
At training time (tasks/training/synthetic_shifts.py) the calibration images are put through
synthetic acquisition shifts of random kind, severity and share of the window, with their labels,
and a gradient-boosted regression learns the gap between realized accuracy and average confidence
from those window statistics (the meta-dataset idea of Deng and Zheng, CVPR 2021). The monitor
applies it to the served window: estimate = average confidence + predicted gap.

Stored as plain arrays (``shift_regression.npz``, no pickle) and evaluated with numpy, so the
monitor needs no scikit-learn model object from a file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHIFT_REGRESSION_FILE = "shift_regression.npz"
FEATURE_PROPERTIES = ("brightness", "contrast", "sharpness")  # columns of the prediction log
FIRST_SHIFT_FEATURE = 5  # FEATURE_NAMES from here on describe the shift, not the confidences
OOD_CLIP = (-5.0, 50.0)  # a few extreme scores must not carry a window's mean
FEATURE_NAMES = (
    "mean confidence",
    "confidence q10",
    "confidence q25",
    "confidence q50",
    "mean margin",
    "mean ood score",
    "median ood score",
    "ood score q90",
    "share flagged ood",
    *(f"mean z {name}" for name in FEATURE_PROPERTIES),
    *(f"mean |z| {name}" for name in FEATURE_PROPERTIES),
    *(f"log std ratio {name}" for name in FEATURE_PROPERTIES),
)


def window_features(
    probabilities: np.ndarray,
    ood_scores: np.ndarray,
    properties: np.ndarray,
    property_mean: np.ndarray,
    property_std: np.ndarray,
    ood_threshold: float,
) -> np.ndarray:
    """One row of FEATURE_NAMES for a window: (N, C) calibrated probabilities, (N,) out-of-distribution
    scores and (N, 3) properties, standardised against the clean calibration images."""
    confidence = probabilities.max(axis=1)
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    ood = np.clip(ood_scores, *OOD_CLIP)
    z = (properties - property_mean) / property_std
    spread = np.log(properties.std(axis=0) / property_std + 1e-6)
    return np.concatenate(
        [
            [confidence.mean()],
            np.quantile(confidence, [0.1, 0.25, 0.5]),
            [(top_two[:, 1] - top_two[:, 0]).mean(), ood.mean(), np.median(ood), np.quantile(ood, 0.9)],
            [(ood_scores > ood_threshold).mean()],
            z.mean(axis=0),
            np.abs(z).mean(axis=0),
            spread,
        ]
    )


@dataclass(frozen=True)
class ShiftRegression:
    """Trees of a fitted gradient-boosted regression (init zero) over FEATURE_NAMES, as arrays."""

    property_mean: np.ndarray  # (3,) of the clean calibration images
    property_std: np.ndarray  # (3,)
    ood_threshold: float  # the version's flag threshold, for the "share flagged" feature
    feature: np.ndarray  # (T, M) split feature per node; -1 at leaves
    threshold: np.ndarray  # (T, M)
    left: np.ndarray  # (T, M) child index; -1 at leaves
    right: np.ndarray  # (T, M)
    value: np.ndarray  # (T, M) leaf values
    learning_rate: float
    depth: int
    residual_95: float  # 95th percentile of |out-of-fold error| on the synthetic windows
    families: tuple[str, ...]  # the shifts it learned from
    feature_low: np.ndarray  # (F,) the range of each feature over the synthetic windows:
    feature_high: np.ndarray  # outside it the regression extrapolates

    def features(self, probabilities: np.ndarray, ood_scores: np.ndarray, properties: np.ndarray) -> np.ndarray:
        return window_features(
            probabilities, ood_scores, properties, self.property_mean, self.property_std, self.ood_threshold
        )

    def gap(self, features: np.ndarray) -> np.ndarray:
        """Predicted (accuracy - average confidence) for each row of (W, F) window features."""
        features = features.astype(np.float32).astype(np.float64)  # as the fitted trees compared them
        trees = np.arange(self.feature.shape[0])[:, None]
        node = np.zeros((self.feature.shape[0], len(features)), dtype=np.int64)
        for _ in range(self.depth):
            split = self.feature[trees, node]
            inner = split >= 0
            goes_left = features[np.arange(len(features))[None, :], np.maximum(split, 0)] <= self.threshold[trees, node]
            child = np.where(goes_left, self.left[trees, node], self.right[trees, node])
            node = np.where(inner, child, node)
        return np.asarray(self.learning_rate * self.value[trees, node].sum(axis=0))

    def covers(self, features: np.ndarray) -> bool:
        """Whether the window's shift (its out-of-distribution scores and image properties) lies within the
        range of the shifts it was fitted on; beyond it the regression extrapolates. Its confidences may
        differ: easier or harder images are what the confidence features are for."""
        shift = slice(FIRST_SHIFT_FEATURE, None)
        return bool(
            np.all((features[shift] >= self.feature_low[shift]) & (features[shift] <= self.feature_high[shift]))
        )

    def estimate(self, probabilities: np.ndarray, ood_scores: np.ndarray, properties: np.ndarray) -> float:
        return self.estimate_from(self.features(probabilities, ood_scores, properties))

    def estimate_from(self, features: np.ndarray) -> float:
        """Average confidence (feature 0) plus the predicted gap, within [0, 1]."""
        return float(np.clip(features[0] + self.gap(features[None, :])[0], 0.0, 1.0))

    def save(self, path: Path) -> Path:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            **{
                name: getattr(self, name)
                for name in (
                    "property_mean",
                    "property_std",
                    "feature",
                    "threshold",
                    "left",
                    "right",
                    "value",
                    "feature_low",
                    "feature_high",
                )
            },
            ood_threshold=self.ood_threshold,
            learning_rate=self.learning_rate,
            depth=self.depth,
            residual_95=self.residual_95,
            families=np.array(self.families),
        )
        path.write_bytes(buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: Path) -> ShiftRegression:
        with np.load(path, allow_pickle=False) as saved:
            return cls(
                property_mean=saved["property_mean"].astype(np.float64),
                property_std=saved["property_std"].astype(np.float64),
                ood_threshold=float(saved["ood_threshold"]),
                feature=saved["feature"].astype(np.int64),
                threshold=saved["threshold"].astype(np.float64),
                left=saved["left"].astype(np.int64),
                right=saved["right"].astype(np.int64),
                value=saved["value"].astype(np.float64),
                learning_rate=float(saved["learning_rate"]),
                depth=int(saved["depth"]),
                residual_95=float(saved["residual_95"]),
                families=tuple(str(f) for f in saved["families"]),
                feature_low=saved["feature_low"].astype(np.float64),
                feature_high=saved["feature_high"].astype(np.float64),
            )
