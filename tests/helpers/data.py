"""The tiny real Fashion-MNIST repository the flow tests run on, and configs sized for it."""

from __future__ import annotations

from pathlib import Path

from configs.schema import FlowConfig, load_config
from tasks.core.settings import REPO_ROOT
from tasks.data.demo import SplitSizes

TINY_SIZES = SplitSizes(train_v1=100, train_v2=200, validation=60, test=100)
# Settings that make a real flow run take seconds on the tiny repository; three epochs are enough
# for the model to learn (0.56-0.66 test accuracy, against 0.10-0.20 untrained).
TINY_TRAINING = [
    "train.epochs=3",
    "train.batch_size=32",
    "train.drift.reference_rows=40",
    "train.drift.uae_dim=8",
    "dataset.validation.max_property_drift=0.5",
    "dataset.validation.max_label_drift=0.5",
]


def tiny_config(repo: Path, *overrides: str, config: str = "full_flow_config.yaml") -> FlowConfig:
    """A shipped config pointed at ``repo`` and sized for it, with ``overrides`` last."""
    path = REPO_ROOT / "configs" / config
    return load_config(path, [f"dataset.path={repo}", *TINY_TRAINING, *overrides], root=REPO_ROOT)
