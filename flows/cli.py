"""The `mlops` command: the operations of tasks/ops/cli.py plus the commands that run flows.

    mlops run --config FILE [--set K=V ...] [--flow NAME] [--force]
    mlops monitor [--config FILE]

`run_flow.py` shares ``run_from_command_line``: the config is checked before anything heavy is
imported, the result printed as JSON; exit codes 0 done, 1 the flow failed, 2 bad input.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from flows.runner import execute, load_checked
from tasks.core.errors import ConfigError, MlopsError
from tasks.core.settings import REPO_ROOT
from tasks.ops.cli import app, main

__all__ = ["app", "main", "run_from_command_line"]


def run_from_command_line(config: Path, overrides: list[str], flow: str | None, force: bool) -> int:
    """Run and print the result as JSON; exit codes: 0 done, 1 the flow failed, 2 bad input."""
    try:
        loaded = load_checked(config, overrides, flow)
    except MlopsError as error:  # the config, or the dataset revision it names
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        result = execute(loaded, str(config), force=force)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MlopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(result.model_dump_json(indent=2) if hasattr(result, "model_dump_json") else result)
    return 0


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect API call otherwise


def _exit_cleanly(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler, `kill`, a container stop) unwinds like Ctrl-C, so the temporary
    Prefect server of the embedded mode is stopped instead of left running."""
    raise SystemExit(128 + signum)


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", help="YAML config file")],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", metavar="SECTION.KEY=VALUE", help="override one setting (repeatable)")
    ] = None,
    flow: Annotated[str | None, typer.Option("--flow", help="train, evaluate, deploy, full or monitor")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="retrain even when the training cache would be reused")
    ] = False,
) -> None:
    """Run a flow from a YAML config (what run_flow.py does); prints its result as JSON."""
    raise typer.Exit(run_from_command_line(config, overrides or [], flow, force))


@app.command()
def monitor(config: Annotated[Path, typer.Option("--config")] = REPO_ROOT / "configs" / "monitor_config.yaml") -> None:
    """The monitor flow once, now: drift and live quality of what was served."""
    raise typer.Exit(run_from_command_line(config, [], "monitor", False))


if __name__ == "__main__":
    sys.exit(main())
