"""Run a flow from a YAML config:  python run_flow.py --config configs/full_flow_config.yaml

The config is parsed and validated before anything heavy is imported, so a misspelt key fails
at once with the key and the file named. ``--flow NAME`` runs another flow on the same
experiment; ``--set section.key=value`` overrides one setting.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from configs.schema import FlowConfig, load_config
from tasks.core.errors import MlopsError
from tasks.core.settings import REPO_ROOT, get_settings, prepare_embedded_environment

FLOWS = {
    name: f"flows.{module}"
    for name, module in {
        "train": "train_flow",
        "evaluate": "eval_flow",
        "deploy": "deploy_flow",
        "full": "full_flow",
        "monitor": "monitor_flow",
    }.items()
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a train, evaluate, deploy, full or monitor flow.")
    parser.add_argument("--config", required=True, type=Path, help="YAML config file")
    parser.add_argument("--flow", choices=sorted(FLOWS), help="run this flow instead of the config's `flow`")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting, e.g. --set train.epochs=1 (repeatable)",
    )
    parser.add_argument("--force", action="store_true", help="retrain even when the training cache would be reused")
    return parser.parse_args(argv)


def check_config(config: FlowConfig) -> None:
    """Checks that need more than the schema, still before any flow starts."""
    from tasks.data.repository import resolve_revision
    from tasks.training.augmentation import build_augmenter

    build_augmenter(config.train.augmentation, config.train.seed)
    resolve_revision(config.dataset.path, config.dataset.revision)


def resolve_flow(name: str) -> Callable[..., Any]:
    """``train`` -> ``flows.train_flow.train_flow``, imported only now (Prefect reads its settings at import)."""
    module_name = FLOWS[name]
    return getattr(importlib.import_module(module_name), module_name.rsplit(".", 1)[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        overrides = [*args.overrides, *([f"flow={args.flow}"] if args.flow else [])]
        config = load_config(args.config, overrides, root=REPO_ROOT)
        check_config(config)
    except MlopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect API call otherwise
    prepare_embedded_environment(get_settings())
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        flow_function = resolve_flow(config.flow)
        options = {"force": True} if args.force else {}
        result = flow_function(config=config, config_file=str(args.config), **options)
    except MlopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(result.model_dump_json(indent=2) if hasattr(result, "model_dump_json") else result)
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler, `kill`, a container stop) unwinds like Ctrl-C, so the temporary
    Prefect server of the embedded mode is stopped instead of left running."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
