"""Run a flow from a YAML config:  python run_flow.py --config configs/full_flow_config.yaml

The config is parsed and validated before anything heavy is imported, so a misspelt key fails
at once with the key and the file named. ``--flow NAME`` runs another flow on the same
experiment; ``--set section.key=value`` overrides one setting. ``mlops run`` is the same command
(flows/cli.py), ``flows.run`` the same from Python.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli import run_from_command_line
from flows.runner import FLOWS


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_from_command_line(args.config, args.overrides, args.flow, args.force)


if __name__ == "__main__":
    sys.exit(main())
