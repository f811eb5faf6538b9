"""The slices declared before any data is seen: each true class, and thirds of image brightness and
contrast (the property table's measures). The promotion gate judges them and the model card reports them."""

from __future__ import annotations

import numpy as np
import pandas as pd

PROPERTY_SLICES = ("brightness", "contrast")
TERCILES = ("low", "middle", "high")


def property_thirds(values: np.ndarray) -> np.ndarray:
    """0, 1 or 2 per row: the third of ``values`` it falls in."""
    return np.asarray(np.digitize(values, np.quantile(values, [1 / 3, 2 / 3])))


def slice_masks(labels: np.ndarray, class_names: list[str], properties: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """The pre-declared slices: each true class, and terciles of brightness and contrast."""
    masks = {f"class {name}": labels == index for index, name in enumerate(class_names)}
    if properties is not None:
        for column in PROPERTY_SLICES:
            which = property_thirds(properties[column].to_numpy(float))
            for tercile, name in enumerate(TERCILES):
                masks[f"{column} {name} third"] = which == tercile
    return masks
