"""Run a flow from a YAML config:  python run_flow.py --config configs/full_flow_config.yaml

The config is parsed and validated before anything heavy is imported, so a misspelt key fails
at once with the key and the file named. ``--set section.key=value`` overrides one setting.
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
from tasks.errors import MlopsError
from tasks.settings import get_settings, prepare_embedded_environment


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a train, evaluate, deploy, full or monitor flow.")
    parser.add_argument("--config", required=True, type=Path, help="YAML config file")
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
    from tasks.augmentation import build_augmenter
    from tasks.dataset_repo import resolve_revision

    build_augmenter(config.train.augmentation, config.train.seed)
    resolve_revision(config.dataset.path, config.dataset.revision)


def resolve_flow(module_name: str) -> Callable[..., Any]:
    """``flows.train_flow`` -> its ``train_flow`` function."""
    module = importlib.import_module(module_name)
    name = module_name.rsplit(".", 1)[-1]
    flow_function = getattr(module, name, None)
    if flow_function is None:
        raise MlopsError(f"flow_module {module_name!r} defines no flow named {name!r}")
    return flow_function


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        check_config(config)
    except MlopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect API call otherwise
    prepare_embedded_environment(get_settings())
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        flow_function = resolve_flow(config.flow_module)
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
