"""Headless Chromium (Debian's package) for Playwright, and the screenshots the README shows.

A screenshot goes to the test's own folder; with ``MLOPS_SCREENSHOT_DIR`` set (``make screenshots``)
it is also copied there, under the name the README uses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without these Chromium reaches for the network at start-up; this machine has none.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium(what: str) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is needed for {what}: apt-get install chromium (.ci/run does)")


def screenshot(page: Any, folder: Path, name: str) -> Path:
    """The page as a PNG in ``folder``, and in MLOPS_SCREENSHOT_DIR when that is set."""
    path = folder / name
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"{name} is nearly empty"  # a blank page compresses to a few kB
    target = os.environ.get("MLOPS_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)
    return path
