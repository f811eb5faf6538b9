"""Run a flow from Python (a notebook, a script) with the checks `run_flow.py` and `mlops run` make.

    from flows import run
    result = run("configs/full_flow_config.yaml", overrides=["train.epochs=1"])
    result.deploy.promoted

The config is validated (key and file named on an error) and the dataset revision resolved before
Prefect is touched. The state folder's settings (``MLOPS_HOME``, default ``.mlops``) apply even
when a cell imported a flow first: Prefect 3 reads its home and database settings from the
environment when it first uses them, not when it is imported (tests/flows/test_runner.py). No
signal handler is installed, so it runs in any thread.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from configs.schema import FlowConfig, load_config
from tasks.core.errors import ConfigError
from tasks.core.settings import REPO_ROOT, get_settings, prepare_embedded_environment

FLOWS = {
    "train": "flows.train_flow",
    "evaluate": "flows.eval_flow",
    "deploy": "flows.deploy_flow",
    "full": "flows.full_flow",
    "monitor": "flows.monitor_flow",
    "add-reviews": "flows.add_reviews_flow",
}


def load_checked(config: str | Path, overrides: Sequence[str] = (), flow: str | None = None) -> FlowConfig:
    """The config with its overrides, validated, with the checks that need more than the schema."""
    extra = [f"flow={flow}"] if flow else []
    loaded = load_config(Path(config), [*overrides, *extra], root=REPO_ROOT)
    check_config(loaded)
    return loaded


def check_config(config: FlowConfig) -> None:
    """Checks that need more than the schema, still before any flow starts."""
    from tasks.data.repository import resolve_revision
    from tasks.training.augmentation import build_augmenter

    build_augmenter(config.train.augmentation, config.train.seed)
    if config.flow != "monitor":  # the monitor reads served predictions, never the dataset
        resolve_revision(config.dataset.path, config.dataset.revision)


def resolve_flow(name: str) -> Callable[..., Any]:
    """``train`` -> ``flows.train_flow.train_flow``, imported only now (Prefect reads its settings at import)."""
    module_name = FLOWS[name]
    return getattr(importlib.import_module(module_name), module_name.rsplit(".", 1)[-1])


def run(
    config: str | Path | FlowConfig,
    overrides: Sequence[str] = (),
    *,
    flow: str | None = None,
    force: bool = False,
) -> Any:
    """Run the config's flow (or ``flow``) and return its typed result (TrainResult, FullResult, ...).

    ``config`` is a YAML file (relative to the working directory) or a loaded FlowConfig;
    ``overrides`` are ``section.key=value`` strings as with ``--set``. ``force`` retrains even when
    the training cache would be reused (the flows that train only).
    """
    if isinstance(config, FlowConfig):
        if overrides or flow:
            raise ConfigError("overrides and flow apply to a config file; change a loaded FlowConfig with model_copy")
        return execute(config, "", force=force)
    return execute(load_checked(config, overrides, flow), str(config), force=force)


def execute(config: FlowConfig, config_file: str = "", *, force: bool = False) -> Any:
    """Run an already checked config's flow under the state folder's settings."""
    prepare_embedded_environment(get_settings())
    flow_function = resolve_flow(config.flow)
    if force and not takes_force(flow_function):
        caching = sorted(name for name in FLOWS if takes_force(resolve_flow(name)))
        raise ConfigError(f"force: the {config.flow} flow has no training cache to bypass (only {', '.join(caching)})")
    options = {"force": True} if force else {}
    return flow_function(config=config, config_file=config_file, **options)


def takes_force(flow_function: Callable[..., Any]) -> bool:
    return "force" in inspect.signature(getattr(flow_function, "fn", flow_function)).parameters
