"""What every `mlops` command shares: its options, how it prints, fails and asks, and its context."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from configs.schema import load_config
from tasks.core.errors import MlopsError
from tasks.core.settings import REPO_ROOT, Settings, get_settings, prepare_embedded_environment

DEFAULT_CONFIG = REPO_ROOT / "configs" / "full_flow_config.yaml"
BAD_INPUT = 2

ConfigOption = Annotated[Path, typer.Option("--config", help="the experiment: names the model and reload URLs")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


def echo(text: str, err: bool = False) -> None:
    """To stdout, or stderr with ``err``."""
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def fail(error: MlopsError, code: int = BAD_INPUT) -> typer.Exit:
    echo(f"error: {error}", err=True)
    return typer.Exit(code)


def context(config: Path) -> tuple[Settings, Any]:
    """Settings with the state folder prepared, and the config (bad input exits 2 naming the key)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        loaded = load_config(config, root=REPO_ROOT)
    except MlopsError as error:
        raise fail(error) from None
    settings = get_settings()
    prepare_embedded_environment(settings)
    return settings, loaded


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        echo(f"error: {question} Confirm with --yes when not at a terminal.", err=True)
        raise typer.Exit(BAD_INPUT)
    if not typer.confirm(question):
        raise typer.Exit(BAD_INPUT)
