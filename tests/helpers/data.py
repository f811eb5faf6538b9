"""The tiny real Fashion-MNIST repository the flow tests run on, and configs sized for it."""

from __future__ import annotations

from pathlib import Path

from configs.schema import FlowConfig, load_config
from tasks.core.settings import REPO_ROOT
from tasks.data.demo import SMALL_SIZES, SMALL_TRAINING

TINY_SIZES = SMALL_SIZES
TINY_TRAINING = SMALL_TRAINING


def tiny_config(repo: Path, *overrides: str, config: str = "full_flow_config.yaml") -> FlowConfig:
    """A shipped config pointed at ``repo`` and sized for it, with ``overrides`` last."""
    path = REPO_ROOT / "configs" / config
    return load_config(path, [f"dataset.path={repo}", *TINY_TRAINING, *overrides], root=REPO_ROOT)
