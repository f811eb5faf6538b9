"""The production stack in containers: build its images, bring it up, drive it end to end, take it down.

    python -m deployments.stack.containers images   # make stack-images
    python -m deployments.stack.containers up       # make stack-up: waits until every container is healthy
    python -m deployments.stack.containers demo     # make stack-demo
    python -m deployments.stack.containers down    # make stack-down [--volumes]

Images: the project's own (serve, app, jupyter) from deployments/docker/Dockerfile on a Debian
bookworm base: the public slim Python image when it is on the machine or can be pulled, else one
bootstrapped here from the machine's apt sources (debootstrap, root). Third-party images
(PostgreSQL, MinIO, nginx, Prometheus, Grafana) are used when on the machine or pullable; where
neither, the test substitutes under tests/stack/standins are built from Debian packages, and a
service with no substitute (Grafana) is left out. What was chosen is kept in the state folder and
applied by `up` as a compose override file, so docker-compose.yml itself never changes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from deployments.stack.local_stack import read_env_file
from deployments.stack.servers import compose_binary, prefect_api_headers
from deployments.stack.tls import ensure_certificate, tls_folder
from deployments.stack.write_secrets import complete_env_file, signing_key_path, write_env_file
from services.dl_service.metrics import served_versions_by_pid
from tasks.core.settings import REPO_ROOT as ROOT
from tasks.core.settings import get_settings
from tasks.data.demo import SMALL_TRAINING

DOCKERFILE = ROOT / "deployments" / "docker" / "Dockerfile"
STANDINS = ROOT / "tests" / "stack" / "standins"
CA_FOLDER = ROOT / "deployments" / "docker" / "ca-certificates"
PUBLIC_BASE = "python:3.11-slim-bookworm"
BOOTSTRAPPED_BASE = "onprem-mlops-base:bookworm"
PROJECT_IMAGES = {"serve": "onprem-mlops-serve:latest", "app": "onprem-mlops-app:latest"}
JUPYTER_IMAGE = "onprem-mlops-jupyter:latest"
# compose service -> (its official image, the stand-in target in tests/stack/standins, or None)
THIRD_PARTY = {
    "postgres": "postgres",
    "minio": "s3",
    "nginx": "nginx",
    "prometheus": "prometheus",
    "grafana": None,
}
ONE_SHOT = {"storage-init"}
CONTAINER_ROOT = Path("/home/mlops/project")  # MLOPS_REPO_ROOT in the app image


class StackError(RuntimeError):
    """A step of the container stack failed; the message says which and shows its output."""


def run(command: list[str], *, env: dict[str, str] | None = None, timeout: float | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if result.returncode != 0:
        raise StackError(f"{' '.join(command[:6])} ... failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


def succeeds(command: list[str], timeout: float = 120) -> bool:
    with contextlib.suppress(subprocess.TimeoutExpired):
        return subprocess.run(command, capture_output=True, timeout=timeout, check=False).returncode == 0
    return False


def image_present(name: str) -> bool:
    return succeeds(["docker", "image", "inspect", name], timeout=30)


def obtain(name: str) -> bool:
    """True when the image is on the machine or a registry gave it."""
    return image_present(name) or succeeds(["docker", "pull", "--quiet", name], timeout=120)


# -- images ------------------------------------------------------------------------------------
def state_folder() -> Path:
    folder = get_settings().state_dir / "stack"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def apt_mirror() -> str:
    """The Debian mirror this machine installs from (deb822 or one-line sources)."""
    for path in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1:
                return words[1]
            if words[:1] == ["deb"]:
                return next(word for word in words[1:] if "://" in word)
    return "http://deb.debian.org/debian"


def bootstrap_base(name: str = BOOTSTRAPPED_BASE) -> str:
    """A minimal Debian bookworm image from the machine's apt sources (debootstrap + docker import)."""
    if image_present(name):
        return name
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise StackError(
            f"no base image: {PUBLIC_BASE} is not on this machine and cannot be pulled, and building one "
            "needs root and debootstrap (apt-get install debootstrap); or set MLOPS_BASE_IMAGE to a "
            "Debian bookworm image you have"
        )
    mirror = apt_mirror()
    with tempfile.TemporaryDirectory(prefix="mlops-rootfs-") as rootfs:
        run(["debootstrap", "--variant=minbase", "bookworm", rootfs, mirror], timeout=1200)
        security = mirror.replace("/debian", "/debian-security")
        sources = (
            f"deb {mirror} bookworm main\ndeb {mirror} bookworm-updates main\ndeb {security} bookworm-security main\n"
        )
        (Path(rootfs) / "etc" / "apt" / "sources.list").write_text(sources)
        archive = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-", name], stdin=archive.stdout, capture_output=True, check=False
        )
        archive.wait()
        if imported.returncode != 0:
            raise StackError(f"docker import failed: {imported.stderr.decode()[-2000:]}")
    return name


def pip_certificate() -> Path | None:
    """The CA bundle pip is configured with (`pip config list`, key cert), if any."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".cert") and value:
            path = Path(value.strip("'\""))
            if path.is_file():
                return path
    return None


def copy_site_certificates() -> None:
    certificate = pip_certificate()
    if certificate is not None:
        shutil.copyfile(certificate, CA_FOLDER / "pip-cert.crt")


def build(target: str, tag: str, base: str, dockerfile: Path = DOCKERFILE) -> None:
    env = dict(os.environ)
    if not succeeds(["docker", "buildx", "version"], timeout=30):
        env["DOCKER_BUILDKIT"] = "0"  # the classic builder: every Docker engine has it
    uid = os.environ.get("MLOPS_UID", "10001")
    command = ["docker", "build", "--file", str(dockerfile), "--target", target, "--tag", tag]
    command += ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"MLOPS_UID={uid}", str(ROOT)]
    started = time.monotonic()
    run(command, env=env, timeout=3600)
    print(f"  built {tag} ({target}) in {time.monotonic() - started:.0f} s, {image_size(tag)}", flush=True)


def image_size(tag: str) -> str:
    size = int(run(["docker", "image", "inspect", "--format", "{{.Size}}", tag]).strip())
    return f"{size / 1e6:,.0f} MB"


def official_images() -> dict[str, str]:
    """The third-party images docker-compose.yml names (literal there: no secrets needed to read them)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {name: compose["services"][name]["image"] for name in THIRD_PARTY}


def build_images() -> dict[str, Any]:
    started = time.monotonic()
    base = os.environ.get("MLOPS_BASE_IMAGE") or (PUBLIC_BASE if obtain(PUBLIC_BASE) else bootstrap_base())
    print(f"base image: {base}", flush=True)
    copy_site_certificates()
    for target, tag in {**PROJECT_IMAGES, "jupyter": JUPYTER_IMAGE}.items():
        build(target, tag, base)
    chosen: dict[str, str | None] = {}
    for service, official in official_images().items():
        standin = THIRD_PARTY[service]
        if obtain(official):
            chosen[service] = official
        elif standin is not None:
            tag = f"onprem-mlops-standin-{service}:latest"
            build(standin, tag, base if base != PUBLIC_BASE else "debian:bookworm-slim", STANDINS / "Dockerfile")
            chosen[service] = tag
        else:
            chosen[service] = None
        print(f"  {service}: {chosen[service] or 'not available here: the stack runs without it'}", flush=True)
    record = {"base": base, "third_party": chosen, "seconds": round(time.monotonic() - started)}
    (state_folder() / "images.json").write_text(json.dumps(record, indent=2))
    return record


# -- compose -----------------------------------------------------------------------------------
def project_name() -> str:
    return os.environ.get("MLOPS_STACK_PROJECT", "onprem-mlops")


def env_file() -> Path:
    return Path(os.environ.get("MLOPS_STACK_ENV_FILE", ROOT / ".env"))


def compose_env() -> dict[str, str]:
    """The caller's environment, with the signing key and TLS certificate kept beside the env file."""
    key = str(signing_key_path(env_file()).resolve())
    tls = str(tls_folder(env_file()).resolve())
    return {
        **os.environ,
        "MLOPS_UID": os.environ.get("MLOPS_UID", "10001"),
        "MLOPS_SIGNING_KEY_PATH": key,
        "MLOPS_TLS_DIR": tls,
    }


def override_file() -> Path | None:
    """Stand-ins and left-out services as a compose override, from what `images` chose."""
    record_path = state_folder() / "images.json"
    if not record_path.exists():
        return None
    chosen = json.loads(record_path.read_text())["third_party"]
    services: dict[str, Any] = {}
    for service, image in chosen.items():
        if image is None:
            services[service] = {"profiles": ["not-available-here"]}
        elif image.startswith("onprem-mlops-standin-"):
            services[service] = {"image": image}
    if not services:
        return None
    path = state_folder() / "compose.standins.yml"
    path.write_text(yaml.safe_dump({"services": services}, sort_keys=False))
    return path


def compose_command() -> list[str]:
    command = [str(compose_binary()), "--project-directory", str(ROOT), "--project-name", project_name()]
    command += ["-f", str(ROOT / "docker-compose.yml")]
    override = override_file()
    if override is not None:
        command += ["-f", str(override)]
    if env_file().exists():
        command += ["--env-file", str(env_file())]
    return command


def compose(*args: str, timeout: float = 600) -> str:
    return run([*compose_command(), *args], env=compose_env(), timeout=timeout)


def ensure_secrets() -> None:
    path = env_file()
    if not path.exists():
        write_env_file(path)
        print(f"wrote secrets to {path} (make secrets)", flush=True)
    complete_env_file(path)
    ensure_certificate(tls_folder(path))
    key = signing_key_path(path)
    uid = int(os.environ.get("MLOPS_UID", "10001"))
    if os.geteuid() == 0 and key.stat().st_uid == 0:
        os.chown(key, uid, -1)  # the containers read the compose secret as MLOPS_UID (mode 600)


def container_states() -> dict[str, list[dict[str, Any]]]:
    states: dict[str, list[dict[str, Any]]] = {}
    for line in compose("ps", "--all", "--format", "json").splitlines():
        entries = json.loads(line)
        for entry in entries if isinstance(entries, list) else [entries]:
            states.setdefault(entry["Service"], []).append(entry)
    return states


def wait_healthy(seconds: float = 1200) -> dict[str, str]:
    """Until every container is healthy (or, for one-shot jobs, exited 0); their states."""
    deadline = time.monotonic() + seconds
    while True:
        states = container_states()
        summary, pending = {}, []
        for service, entries in sorted(states.items()):
            for entry in entries:
                name, state, health = entry["Name"], entry["State"], entry.get("Health") or ""
                if service in ONE_SHOT and state == "exited":
                    if entry.get("ExitCode") != 0:
                        raise StackError(f"{name} failed:\n{compose('logs', '--tail', '60', service)}")
                    summary[name] = "completed"
                elif state == "running" and health in ("healthy", ""):
                    summary[name] = health or "running"
                elif state in ("exited", "dead") or health == "unhealthy":
                    raise StackError(f"{name} is {state} {health}:\n{compose('logs', '--tail', '60', service)}")
                else:
                    pending.append(f"{name} ({state} {health})".strip())
        if not pending and summary:
            return summary
        if time.monotonic() > deadline:
            raise StackError(f"not healthy after {seconds:.0f} s: {', '.join(pending)}")
        time.sleep(3)


def failing_logs() -> str:
    """The last lines of every container that is unhealthy or exited with an error: why `up` failed."""
    parts = []
    for service, entries in sorted(container_states().items()):
        for entry in entries:
            exited_badly = entry["State"] in ("exited", "dead") and entry.get("ExitCode") != 0
            if exited_badly or entry.get("Health") == "unhealthy":
                parts.append(f"--- {entry['Name']} ({entry['State']} {entry.get('Health') or ''})")
                parts.append(compose("logs", "--tail", "60", "--no-log-prefix", service))
    return "\n".join(parts)


def up() -> dict[str, Any]:
    ensure_secrets()
    started = time.monotonic()
    try:
        compose("up", "--detach", "--no-build", "--quiet-pull", timeout=900)
    except StackError as error:
        raise StackError(f"{error}\n{failing_logs()}") from None
    states = wait_healthy()
    return {"containers": states, "seconds": round(time.monotonic() - started)}


def down(volumes: bool) -> None:
    ensure_secrets()  # compose reads every secret even to stop; an older .env gets the new ones
    remove_remote_worker()
    compose("down", "--remove-orphans", *(["--volumes"] if volumes else []), timeout=300)


# -- demo --------------------------------------------------------------------------------------
def published_url(service: str, port: int) -> str:
    address = compose("port", service, str(port)).strip()
    return f"http://{address}"


def prefect(path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    url = published_url("prefect-server", 4200) + "/api" + path
    headers = prefect_api_headers(read_env_file(env_file()).get("PREFECT_API_AUTH_STRING"))
    response = httpx.request(method, url, json=body, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json() if response.content else None


def exec_in(service: str, *command: str, index: int = 1, timeout: float = 600) -> str:
    return compose("exec", "-T", "--index", str(index), service, *command, timeout=timeout)


def register_deployments() -> None:
    """The project's deployments (prefect.yaml) and a concurrency limit of 1 on the training pool."""
    script = (
        "prefect work-pool create training --type process --overwrite >/dev/null && "
        "prefect work-pool set-concurrency-limit training 1 >/dev/null && "
        "prefect work-pool create monitor --type process --overwrite >/dev/null && "
        "MLOPS_MONITOR_CRON='0 6 * * 1' prefect --no-prompt deploy --prefect-file deployments/prefect.yaml --all"
    )
    exec_in("worker-monitor", "bash", "-c", script)


def remote_worker_name() -> str:
    return f"{project_name()}-remote-training-worker"


def start_remote_worker() -> str:
    """A training worker sharing nothing with the stack but its network: no volume, addresses only.

    Its environment is the stack worker's, as `docker compose config` resolves it; the signing key
    is handed over as a file, as it would be copied to another host.
    """
    remove_remote_worker()
    resolved = json.loads(compose("config", "--format", "json"))
    environment = resolved["services"]["worker-training"]["environment"]
    environment["MLOPS_SIGNING_KEY_FILE"] = "/run/secrets/model-signing-key"
    network = f"{project_name()}_backend"
    command = ["docker", "run", "--detach", "--name", remote_worker_name(), "--network", network]
    command += ["--hostname", "training-host-2", "--label", f"com.docker.compose.project={project_name()}-remote"]
    for key, value in environment.items():
        command += ["--env", f"{key}={value}"]
    key = signing_key_path(env_file()).resolve()
    command += ["--volume", f"{key}:/run/secrets/model-signing-key:ro"]
    command += [PROJECT_IMAGES["app"], "prefect", "worker", "start", "--pool", "training", "--type", "process"]
    command += ["--name", "training-host-2"]
    run(command)
    return remote_worker_name()


def remove_remote_worker() -> None:
    succeeds(["docker", "rm", "--force", remote_worker_name()], timeout=60)


def run_deployment(name: str, parameters: dict[str, Any], seconds: float = 1200) -> dict[str, Any]:
    """Start a deployment's flow run through the Prefect API, as the UI does; wait for its end."""
    flow_name, deployment_name = name.split("/")
    deployment = prefect(f"/deployments/name/{flow_name}/{deployment_name}")
    flow_run = prefect(f"/deployments/{deployment['id']}/create_flow_run", "POST", {"parameters": parameters})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = prefect(f"/flow_runs/{flow_run['id']}")
        if state["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return {
                "deployment": name,
                "state": state["state"]["type"],
                "worker": worker_of(flow_run["id"]),
                "seconds": round(state.get("total_run_time") or 0),
            }
        time.sleep(3)
    raise StackError(f"the flow run of {name} did not finish in {seconds:.0f} s")


def worker_of(flow_run_id: str) -> str:
    """The worker that ran a flow run, from the run's own log ("Worker 'NAME' submitting flow run")."""
    query = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 20, "sort": "TIMESTAMP_ASC"}
    for entry in prefect("/logs/filter", "POST", query):
        if match := re.match(r"Worker '([^']+)' submitting flow run", entry["message"]):
            return match.group(1)
    return "unknown"


def served_versions() -> dict[str, dict[str, str]]:
    """Replica -> {worker pid: version}, each replica's own /metrics read inside its container."""
    served = {}
    replicas = len(container_states().get("service", []))
    read = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/metrics').read().decode())"
    for index in range(1, replicas + 1):
        served[f"service-{index}"] = served_versions_by_pid(exec_in("service", "python", "-c", read, index=index))
    return served


def wait_for_version(version: str, workers: int, seconds: float = 240) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + seconds
    while True:
        served = served_versions()
        if all(len(pids) == workers and set(pids.values()) == {version} for pids in served.values()):
            return served
        if time.monotonic() > deadline:
            raise StackError(f"replicas serve {served}, not version {version} on every worker")
        time.sleep(2)


@dataclass
class LoadUnderRollout:
    """Closed-loop uploads through nginx (the published port) from a few threads; counts failures."""

    url: str
    threads: int = 4
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> LoadUnderRollout:
        images = synthetic_pngs(32)
        for number in range(self.threads):
            worker = threading.Thread(target=self._send, args=(images[number :: self.threads],), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def _send(self, images: list[bytes]) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                for content in images:
                    try:
                        response = client.post("/predict", files={"file": ("x.png", content, "image/png")})
                        self.statuses[response.status_code] += 1
                        if response.status_code == 200:
                            self.versions[str(response.json().get("model_version"))] += 1
                    except httpx.HTTPError as error:
                        self.errors.append(repr(error))

    @property
    def failed(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != 200) + len(self.errors)


def synthetic_pngs(count: int) -> list[bytes]:
    import io

    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(0)
    images = []
    for _ in range(count):
        pixels = generator.integers(0, 256, size=(28, 28), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def flow_config(config: str, overrides: list[str]) -> dict[str, Any]:
    """A shipped config with overrides, as the `config` parameter of a deployment run."""
    from configs.schema import load_config

    loaded = load_config(ROOT / "configs" / config, overrides, root=CONTAINER_ROOT)
    return loaded.model_dump(mode="json", context={"reveal_secrets": True})


def production_version(model: str = "fashion-cnn") -> str:
    """The version the production pointer in central storage names, read inside the stack."""
    script = (
        "from tasks.core.pointer import read_pointer; from tasks.core.settings import get_settings; "
        f"pointer = read_pointer(get_settings().central_storage_url, {model!r}); "
        "print(pointer.version if pointer else '')"
    )
    version = exec_in("worker-monitor", "python", "-c", script).strip().splitlines()[-1:]
    if not version or not version[0]:
        raise StackError("the full flow published no production model")
    return version[0]


def latest_verdict() -> dict[str, Any]:
    script = (
        "import fsspec, json, os; fs, root = fsspec.core.url_to_fs(os.environ['MLOPS_STORAGE_URL']); "
        "paths = sorted(fs.glob(root + '/monitoring/*/*/*/verdict.json')); "
        "print(fs.cat_file(paths[-1]).decode() if paths else '{}')"
    )
    return json.loads(exec_in("worker-monitor", "python", "-c", script))


# Sized for the small demo dataset: seconds of training, a gate a model that learned clears.
DEMO_TRAINING = [
    *SMALL_TRAINING,
    "evaluate.thresholds={accuracy: [0.45, lower]}",
    "deploy.margin=1.0",
    "deploy.slice_margin=1.0",
]
DEMO_MONITOR = ["monitor.window_size=200", "monitor.min_labelled=20", "monitor.thresholds={}"]


def demo() -> dict[str, Any]:
    started = time.monotonic()
    workers_per_replica = int(os.environ.get("MLOPS_SERVICE_WORKERS", "2"))
    register_deployments()
    # Training happens on "another host": the stack's own training worker steps aside.
    compose("stop", "worker-training")
    start_remote_worker()
    first = run_deployment("full/full-flow", {"config": flow_config("full_flow_config.yaml", DEMO_TRAINING)})
    if first["state"] != "COMPLETED":
        raise StackError(f"the full flow ended {first['state']}:\n{remote_worker_logs()}")
    served_first = wait_for_version(production_version(), workers_per_replica)
    # Traffic through nginx from inside the network (the worker's clone holds the images)...
    traffic = "python datasets/send_traffic.py --url http://nginx:8080 --data datasets/fashion-mnist/data"
    for kind in ("fashion", "digits"):
        run(
            [
                "docker",
                "exec",
                remote_worker_name(),
                "bash",
                "-c",
                f"{traffic} --kind {kind} --count 150 --feedback 0.3",
            ]
        )
    monitor = run_deployment("monitor/monitor-weekly", {"config": flow_config("monitor_config.yaml", DEMO_MONITOR)})
    verdict = latest_verdict()
    # A second version rolled out while uploads go through the published port.
    nginx = published_url("nginx", 8080)
    second_config = flow_config("full_flow_config.yaml", [*DEMO_TRAINING, "train.seed=7"])
    served_second: dict[str, dict[str, str]] = {}
    with LoadUnderRollout(nginx) as load:
        second = run_deployment("full/full-flow", {"config": second_config, "force": True})
        if second["state"] == "COMPLETED":
            served_second = wait_for_version(production_version(), workers_per_replica)
        time.sleep(2)
    if second["state"] != "COMPLETED":
        raise StackError(f"the second full flow ended {second['state']}:\n{remote_worker_logs()}")
    return {
        "training_pool_concurrency_limit": prefect("/work_pools/training")["concurrency_limit"],
        "flow_runs": [first, second, monitor],
        "served_after_first_deploy": served_first,
        "served_after_rollout": served_second,
        "rollout": {
            "requests": sum(load.statuses.values()) + len(load.errors),
            "failed": load.failed,
            "answers_by_version": dict(load.versions),
            "errors": load.errors[:5],
        },
        "monitor_verdict": verdict,
        "seconds": round(time.monotonic() - started),
    }


def remote_worker_logs() -> str:
    result = subprocess.run(["docker", "logs", "--tail", "80", remote_worker_name()], capture_output=True, text=True)
    return result.stdout + result.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["images", "up", "demo", "down"])
    parser.add_argument("--volumes", action="store_true", help="down: delete the stack's volumes too")
    args = parser.parse_args()
    try:
        if args.action == "images":
            print(json.dumps(build_images(), indent=2))
        elif args.action == "up":
            print(json.dumps(up(), indent=2))
        elif args.action == "demo":
            summary = demo()
            print(json.dumps(summary, indent=2))
            if summary["rollout"]["failed"]:
                print(f"{summary['rollout']['failed']} requests failed during the rollout", file=sys.stderr)
                return 1
        else:
            down(args.volumes)
            print(f"stack {project_name()} is down")
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
