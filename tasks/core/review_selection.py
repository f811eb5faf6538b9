"""Which served images are worth a reviewer's time: an uncertainty score, then a diversity step.

Pure numpy, shared by the review queue (tasks/core/review_queue.py) and the flywheel benchmark, so
the benchmark measures the rule the queue applies.

- **Priority**: an image the model flagged as out of distribution comes first (the model knows least
  there), then one whose conformal set holds several classes, then by how close the top two calibrated
  probabilities are (1 - margin). Without a trust layer the margin alone ranks.
- **Diversity**: among the ``pool_factor`` x ``count`` highest-priority candidates, a greedy
  priority-weighted k-centre: each next pick maximises priority x distance to the nearest image
  already picked, in the feature space the service logs for each prediction (the untrained
  autoencoder's encoding: close for near-identical images). A thousand near-copies of one hard image
  then cost one review, not a thousand.
"""

from __future__ import annotations

import numpy as np

OOD_WEIGHT = 2.0  # above any margin term: unknown inputs first
AMBIGUOUS_SET_WEIGHT = 1.0
POOL_FACTOR = 5


def review_priority(
    probabilities: np.ndarray, set_sizes: np.ndarray | None = None, ood: np.ndarray | None = None
) -> np.ndarray:
    """One score per row (higher = review sooner); ``probabilities`` are n x classes."""
    ranked = np.sort(probabilities, axis=1)
    priority = 1.0 - (ranked[:, -1] - ranked[:, -2])
    if set_sizes is not None:
        priority = priority + AMBIGUOUS_SET_WEIGHT * (np.nan_to_num(set_sizes.astype(float)) > 1)
    if ood is not None:
        priority = priority + OOD_WEIGHT * np.nan_to_num(ood.astype(float))
    return np.asarray(priority)


def select_diverse(priority: np.ndarray, features: np.ndarray, count: int, pool_factor: int = POOL_FACTOR) -> list[int]:
    """Indices of ``count`` rows to review, in review order (see the module docstring)."""
    if count <= 0 or len(priority) == 0:
        return []
    pool = np.argsort(-priority, kind="stable")[: max(count, pool_factor * count)]
    vectors = _unit_rows(features[pool].astype(np.float64))
    weight = priority[pool] - priority[pool].min() + 1e-3  # positive, so distance can still decide
    nearest = np.full(len(pool), np.inf)
    picked: list[int] = []
    for _ in range(min(count, len(pool))):
        value = weight * np.where(np.isinf(nearest), 1.0, nearest)
        value[picked] = -1.0
        choice = int(np.argmax(value))
        picked.append(choice)
        nearest = np.minimum(nearest, np.linalg.norm(vectors - vectors[choice], axis=1))
    return [int(pool[i]) for i in picked]


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.where(norms > 0, norms, 1.0))
