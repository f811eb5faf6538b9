"""The docker-compose stack without containers: its real servers as processes on loopback.

    python -m deployments.stack.local_stack up   [--dir D]            # start, print the URLs, wait for Ctrl-C
    python -m deployments.stack.local_stack demo [--dir D] [--set K=V] # start, run the flows, check, stop

Commands and environment come from docker-compose.yml itself, resolved by Docker Compose v2 with
the secrets of ``D/.env``; only the container addresses are rewritten to loopback ports, and the
volumes and the object store's buckets to folders under ``D``. PostgreSQL is a private cluster
(password logins) set up by the compose file's own init script. So this proves the stack's
configuration, not a copy of it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deployments.stack.servers import PostgresCluster, compose_binary, free_port, prefect_api_headers
from deployments.stack.write_secrets import complete_env_file, signing_key_path, write_env_file
from services.dl_service.metrics import served_versions_by_pid
from tasks.core.settings import REPO_ROOT as ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
INIT_SCRIPT = ROOT / "deployments" / "postgres" / "init-databases.sh"
BIN = Path(sys.executable).parent
# Project services started as processes, with the path that says they are up.
PROCESSES = {
    "mlflow": "/health",
    "prefect-server": "/api/health",
    "worker-monitor": None,
    "worker-training": None,
    "service": "/health",
    "evidently": "/",
}
CONTAINER_PORTS = {"postgres": 5432, "mlflow": 5000, "prefect-server": 4200, "service": 8000, "evidently": 8000}
SIGNING_KEY_SECRET = "/run/secrets/model-signing-key"  # where compose mounts the signing key in a container


class StackError(RuntimeError):
    """A server of the local stack did not come up; the message carries its log."""


def resolved_compose(env_file: Path) -> dict[str, Any]:
    """docker-compose.yml as Compose itself resolves it with these secrets."""
    command = [str(compose_binary()), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    result = subprocess.run(
        [*command, "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)},
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"docker compose config failed:\n{result.stderr}")
    return json.loads(result.stdout)


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@dataclass
class LocalStack:
    folder: Path
    ports: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    compose: dict[str, Any] = field(default_factory=dict)
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = self.folder.resolve()
        self.logs = self.folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        env_file = self.folder / ".env"
        if not env_file.exists():
            write_env_file(env_file)
        complete_env_file(env_file)  # a folder made before model signing gets its key pair
        self.secrets = read_env_file(env_file)
        self.compose = resolved_compose(env_file)
        self.ports = {name: free_port() for name in CONTAINER_PORTS}
        self.postgres = PostgresCluster(
            self._postgres_folder(), self.ports["postgres"], self.secrets["POSTGRES_PASSWORD"]
        )

    # -- addresses -------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def localise(self, text: str) -> str:
        """A value from the compose file, with container addresses and volumes made local."""
        for name, port in CONTAINER_PORTS.items():
            text = text.replace(f"{name}:{port}", f"127.0.0.1:{self.ports[name]}")
        text = text.replace("/var/lib/mlops", str(self.folder / "state"))
        # the object store's buckets become folders (no MinIO here)
        text = text.replace("s3://mlops/storage", str(self.folder / "state" / "storage"))
        text = text.replace("s3://mlflow/artifacts", str(self.folder / "mlflow" / "artifacts"))
        text = text.replace(SIGNING_KEY_SECRET, str(signing_key_path(self.folder / ".env")))  # the pair of .env's key
        return text.replace("0.0.0.0", "127.0.0.1")

    def environment(self, service: str) -> dict[str, str]:
        """The service's environment as compose sets it, localised; plus PATH and HOME."""
        values = self.compose["services"][service].get("environment") or {}
        env = {key: self.localise(str(value)) for key, value in values.items() if value is not None}
        home, prefect_home = self.folder / "home", self.folder / "prefect-home" / service
        for folder in (home, prefect_home):
            folder.mkdir(parents=True, exist_ok=True)
        env |= {
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home),
            "PREFECT_HOME": str(prefect_home),
            "MLOPS_REPO_ROOT": str(ROOT),
        }
        if service == "service":
            env |= {
                "MLOPS_SERVICE_BIND": f"127.0.0.1:{self.ports['service']}",
                "PROMETHEUS_MULTIPROC_DIR": str(self.folder / "prometheus"),
            }
        return env

    def app_environment(self) -> dict[str, str]:
        """What a client of the stack (run_flow.py, a notebook) sees: the workers' environment."""
        return self.environment("worker-training")

    def command(self, service: str) -> list[str]:
        words = [self.localise(str(word)) for word in self.compose["services"][service]["command"]]
        if "--port" in words:  # each server listens on its own loopback port
            words[words.index("--port") + 1] = str(self.ports[service])
        return words

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._start_postgres()
        for name, ready in PROCESSES.items():
            self._start(name, ready)

    def stop(self) -> None:
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan servers
        try:
            self._stop_all()
        finally:
            signal.signal(signal.SIGINT, interrupt)

    def _stop_all(self) -> None:
        for process in reversed(list(self._processes.values())):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        self._processes.clear()
        self.postgres.stop(check=False)

    def _postgres_folder(self) -> Path:
        """Run as root, the server runs as `postgres`, which must reach the cluster's folder: under a
        private folder (a test's temporary one) the cluster lives outside it, linked from it."""
        link = self.folder / "postgres"
        if link.exists() or link.is_symlink() or os.geteuid() != 0:
            return link.resolve()
        reachable = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(self.folder)], check=False)
        if reachable.returncode == 0:
            return link
        outside = Path(tempfile.mkdtemp(prefix="mlops-stack-pg-"))
        link.symlink_to(outside)
        return outside

    def _start_postgres(self) -> None:
        self.postgres.init()
        self.postgres.start()
        # The compose file's init script, with the compose file's environment for postgres.
        env = {key: str(value) for key, value in self.compose["services"]["postgres"]["environment"].items()}
        env |= {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.ports["postgres"]),
            "PGPASSWORD": env["POSTGRES_PASSWORD"],
        }
        result = subprocess.run(["bash", str(INIT_SCRIPT)], capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise StackError(f"the init script failed:\n{result.stdout}{result.stderr}")

    def _start(self, name: str, ready_path: str | None) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            self.command(name), cwd=ROOT, env=self.environment(name), stdout=log, stderr=log, start_new_session=True
        )
        self._processes[name] = process
        if ready_path is not None:
            self._wait_until_up(name, f"{self.url(name)}{ready_path}", process)

    def _wait_until_up(self, name: str, url: str, process: subprocess.Popen[bytes], seconds: float = 240) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"{name} exited ({process.returncode}):\n{self.log_tail(name)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=3).status_code < 500:
                    return
            time.sleep(0.5)
        raise StackError(f"{name} did not answer {url} in {seconds:.0f} s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, characters: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-characters:] if path.exists() else "(no log)"

    def describe(self) -> str:
        return "\n".join(
            [
                f"PostgreSQL     127.0.0.1:{self.ports['postgres']} (databases mlflow, prefect, predictions)",
                f"MLflow         {self.url('mlflow')}",
                f"Prefect        {self.url('prefect-server')}  (workers on the monitor and training pools)",
                f"service        {self.url('service')}  (gunicorn, 2 worker processes)",
                f"Evidently UI   {self.url('evidently')}",
                f"logs           {self.logs}",
            ]
        )


@contextlib.contextmanager
def running_stack(folder: Path) -> Iterator[LocalStack]:
    stack = LocalStack(folder)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def served_versions(stack: LocalStack) -> dict[str, str]:
    """Worker pid -> version it serves, from the service's /metrics."""
    return served_versions_by_pid(httpx.get(f"{stack.url('service')}/metrics", timeout=10).text)


def wait_for_version(stack: LocalStack, version: str, workers: int = 2, seconds: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        served = served_versions(stack)
        if len(served) == workers and set(served.values()) == {version}:
            return served
        time.sleep(1)
    raise StackError(f"service workers serve {served_versions(stack)}, not version {version} on all {workers}")


def run_flow(stack: LocalStack, config: str, overrides: list[str]) -> None:
    command = [sys.executable, "run_flow.py", "--config", config, *(f"--set={o}" for o in overrides)]
    result = subprocess.run(command, cwd=ROOT, env=stack.app_environment(), capture_output=True, text=True, check=False)
    (stack.logs / f"run_flow-{Path(config).stem}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise StackError(f"{' '.join(command[1:4])} failed:\n{(result.stdout + result.stderr)[-4000:]}")


def run_deployment(stack: LocalStack, name: str, parameters: dict[str, str], seconds: float = 600) -> str:
    """Start a deployment's flow run on the Prefect server; a worker runs it; returns its final state."""
    api = f"{stack.url('prefect-server')}/api"
    headers = prefect_api_headers(stack.secrets.get("PREFECT_API_AUTH_STRING"))
    with httpx.Client(base_url=api, timeout=30, headers=headers) as client:
        flow_name, deployment_name = name.split("/")
        deployment = client.get(f"/deployments/name/{flow_name}/{deployment_name}").raise_for_status().json()
        run = client.post(f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters})
        run_id = run.raise_for_status().json()["id"]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            state = client.get(f"/flow_runs/{run_id}").raise_for_status().json()["state"]
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return str(state["type"])
            time.sleep(2)
    raise StackError(f"flow run of {name} did not finish in {seconds:.0f} s")


def demo(stack: LocalStack, data_dir: Path, overrides: list[str], monitor_overrides: list[str]) -> dict[str, Any]:
    """The full flow, traffic to the service, and the weekly monitor run by its worker."""
    started = time.monotonic()
    run_flow(stack, "configs/full_flow_config.yaml", overrides)
    trained = time.monotonic()
    from tasks.core.pointer import read_pointer

    pointer = read_pointer(str(stack.folder / "state" / "storage"), "fashion-cnn")
    if pointer is None:
        raise StackError("the full flow published no production model")
    served = wait_for_version(stack, pointer.version)
    for kind, count in (("fashion", 150), ("digits", 150)):
        traffic = [sys.executable, "datasets/send_traffic.py", "--url", stack.url("service"), "--kind", kind]
        traffic += ["--count", str(count), "--data", str(data_dir), "--feedback", "0.3"]
        subprocess.run(traffic, cwd=ROOT, env=stack.app_environment(), check=True, capture_output=True)
    monitor_config = stack.folder / "monitor_config.yaml"
    write_monitor_config(monitor_config, monitor_overrides)
    state = run_deployment(stack, "monitor/monitor-weekly", {"config_file": str(monitor_config)})
    if state != "COMPLETED":
        raise StackError(f"the monitor run by its worker ended {state}:\n{stack.log_tail('worker-monitor')}")
    return {
        "version": pointer.version,
        "workers_serving": served,
        "full_flow_seconds": round(trained - started, 1),
        "monitor_state": state,
        "seconds": round(time.monotonic() - started, 1),
    }


def write_monitor_config(path: Path, overrides: list[str]) -> None:
    """configs/monitor_config.yaml with overrides applied, for a deployment run (which takes a file)."""
    import yaml

    from configs.schema import load_config

    config = load_config(ROOT / "configs" / "monitor_config.yaml", overrides, root=ROOT)
    values = config.model_dump(mode="json", context={"reveal_secrets": True})  # a config file, not a display
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "demo"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".mlops" / "stack-local", help="state of the local stack")
    parser.add_argument("--data", type=Path, default=ROOT / "datasets" / "fashion-mnist" / "data")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="full-flow config override")
    parser.add_argument("--monitor-set", dest="monitor_overrides", action="append", default=[])
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    with running_stack(args.dir) as stack:
        print(stack.describe(), flush=True)
        if args.action == "demo":
            summary = demo(stack, args.data, args.overrides, args.monitor_overrides)
            print(json.dumps(summary, indent=2))
            return 0
        print("Running; Ctrl-C stops every server.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
