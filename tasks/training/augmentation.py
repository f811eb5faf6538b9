"""imgaug augmentation built from the YAML list of augmenters, applied to training batches only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from configs.schema import AugmenterConfig
from tasks.core.errors import ConfigError

if TYPE_CHECKING:
    import imgaug.augmenters as iaa


def import_imgaug() -> Any:
    """imgaug 0.4 reads ``np.bool`` and ``np.complex``, which numpy 1.24+ removed."""
    np.bool = bool  # type: ignore[attr-defined]
    np.complex = complex  # type: ignore[attr-defined]
    import imgaug.augmenters as iaa_module

    return iaa_module


def _as_imgaug_value(value: Any) -> Any:
    """YAML lists mean ranges in imgaug (tuples); nested mappings are passed through."""
    if isinstance(value, list):
        return tuple(_as_imgaug_value(item) for item in value)
    if isinstance(value, dict):
        return {key: _as_imgaug_value(item) for key, item in value.items()}
    return value


def build_augmenter(configs: Sequence[AugmenterConfig], seed: int) -> iaa.Sequential | None:
    """A seeded ``iaa.Sequential``; a bad name or parameter is a ConfigError naming the entry."""
    if not configs:
        return None
    iaa_module = import_imgaug()
    steps = []
    for position, config in enumerate(configs):
        key = f"train.augmentation[{position}]"
        cls = getattr(iaa_module, config.name, None)
        if not isinstance(cls, type) or not issubclass(cls, iaa_module.Augmenter):
            raise ConfigError(f"{key}.name: {config.name!r} is not an imgaug augmenter (e.g. Fliplr, Affine)")
        try:
            steps.append(cls(**{k: _as_imgaug_value(v) for k, v in config.params.items()}))
        except (TypeError, ValueError, AssertionError) as error:
            raise ConfigError(f"{key}.params: invalid for {config.name}: {error}") from None
    return iaa_module.Sequential(steps, seed=seed)


def augment_batch(augmenter: iaa.Sequential, images: np.ndarray, batch_seed: np.int64) -> np.ndarray:
    """Augment one uint8 batch with its own seed, so results do not depend on thread timing."""
    local = augmenter.deepcopy()
    local.seed_(int(batch_seed) & 0x7FFFFFFF)
    return np.asarray(local(images=images), dtype=np.uint8)
