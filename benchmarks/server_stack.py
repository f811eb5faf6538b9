"""The HTTP server under the same FastAPI app, A/B: uvicorn (httptools, uvloop: the service's stack) against
granian (a Rust HTTP server, ASGI interface, uvloop), for the no-op upload and for /predict, multipart and raw
body, at concurrency 32, in interleaved paired rounds (benchmarks/serving.py's machinery).

    python benchmarks/server_stack.py [--seconds 8] [--rounds 4]        (about 7 min)

granian is not a dependency of the service: it is installed on first use into .mlops/bench/granian
(pip --target) and run with the service's own interpreter and packages.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import serving
from deployments.stack.servers import free_port

ROOT = serving.ROOT

GRANIAN_VERSION = "2.8.7"
SERVERS = ("uvicorn", "granian")


def granian_packages() -> Path:
    """A folder holding granian alone: its one dependency (click) is already the service's."""
    folder = ROOT / ".mlops" / "bench" / "granian"
    if not (folder / "granian").exists():
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        subprocess.run([*pip, "--target", str(folder), f"granian=={GRANIAN_VERSION}"], check=True)
    return folder


def granian(factory: str) -> list[str]:
    """The app under granian, one worker, uvloop as uvicorn uses; ``--port`` goes last."""
    options = ["--interface", "asgi", "--factory", "--host", "127.0.0.1", "--loop", "uvloop", "--workers", "1"]
    return [sys.executable, "-m", "granian", *options, "--log-level", "warning", "--no-ws", factory]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    serving.ROUNDS = args.rounds
    image, calibration = serving.test_images()
    packages = granian_packages()
    with tempfile.TemporaryDirectory(prefix="bench-server-stack-") as folder, contextlib.ExitStack() as servers:
        workdir = Path(folder)
        _, trusted, _, _ = serving.build_model(workdir, calibration)
        urls: dict[tuple[str, str], str] = {}
        for server_name in SERVERS:
            for app_name, factory, ready in (
                ("no-op", serving.NOOP_APP, "/docs"),
                ("/predict", serving.SERVICE_APP, "/ready"),
            ):
                state = workdir / f"{server_name}-{app_name.strip('/')}"
                env = serving.service_settings(state, trusted)
                if server_name == "granian":
                    env["PYTHONPATH"] = os.pathsep.join([str(packages), os.environ.get("PYTHONPATH", "")])
                    command = granian(factory)
                else:
                    command = serving.uvicorn(factory)
                port = free_port()
                log = workdir / f"{port}.log"
                servers.enter_context(serving.server([*command, "--port", str(port)], env, port, ready, log))
                urls[(server_name, app_name)] = f"http://127.0.0.1:{port}/predict"
        for body, field in (("multipart", "file"), ("raw body", "-")):
            contenders = {
                f"{app_name} on {server_name}, {body}": serving.Contender(url, field)
                for (server_name, app_name), url in urls.items()
            }
            rounds = serving.interleaved(contenders, image, 32, args.seconds)
            print(f"\nconcurrency 32, {body}, median of {args.rounds} interleaved rounds")
            serving.print_rounds(rounds, 34)
            for app_name in ("no-op", "/predict"):
                with_it, against = f"{app_name} on granian, {body}", f"{app_name} on uvicorn, {body}"
                serving.print_paired(f"granian / uvicorn, {app_name}", rounds[with_it], rounds[against])
    return 0


if __name__ == "__main__":
    sys.exit(main())
