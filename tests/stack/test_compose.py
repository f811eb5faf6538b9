"""The docker-compose stack, validated where no Docker engine runs: the real Compose v2 parser,
the Dockerfile against the repository, commands against the image's install, secrets."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from deployments.stack.local_stack import read_env_file
from deployments.stack.servers import compose_binary
from deployments.stack.write_secrets import secret_names, write_env_file
from tasks.core.settings import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "deployments" / "docker" / "Dockerfile"
PROJECT_IMAGES = {
    "serve": ["requirements/serve.txt"],
    "app": ["requirements/app.txt"],
    "jupyter": ["requirements/app.txt", "deployments/docker/jupyter-requirements.txt"],
}


def compose(*args: str, env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    options = ["--env-file", str(env_file or "/dev/null")]  # never the checkout's own .env
    command = [str(compose_binary()), "--project-directory", str(REPO_ROOT), "-f", str(COMPOSE_FILE), *options, *args]
    clean_env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no secret leaks in from the caller's environment
    return subprocess.run(command, capture_output=True, text=True, env=clean_env, check=False)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stack") / ".env"
    write_env_file(path)
    return path


@pytest.fixture(scope="module")
def resolved(env_file: Path) -> dict[str, Any]:
    result = compose("config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_compose_config_is_valid_with_secrets_and_names_a_missing_one(env_file: Path) -> None:
    assert compose("config", "-q", env_file=env_file).returncode == 0
    missing = compose("config", "-q")
    assert missing.returncode != 0
    assert "is missing a value" in missing.stderr and "make secrets" in missing.stderr


def test_secrets_have_no_default_anywhere(env_file: Path) -> None:
    names = secret_names(REPO_ROOT / ".env.example")
    assert {"POSTGRES_PASSWORD", "MLOPS_SERVICE_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD", "JUPYTER_TOKEN"} <= set(names)
    text = COMPOSE_FILE.read_text()
    for name in names:
        uses = re.findall(r"\$\{" + name + r"(:?[-?]?)", text)
        assert uses and set(uses) == {":?"}, f"{name} must be required (${{{name}:?...}}) everywhere"
    written = read_env_file(env_file)
    assert set(written) == set(names) and len(set(written.values())) == len(names)
    assert all(len(value) >= 32 for value in written.values())
    listed = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    tracked = subprocess.run(listed, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    weak = re.compile(
        r"(?i)(password|passwd|secret|token)\w*['\"]?\s*[:=]\s*['\"]?(admin|changeme|password|postgres|secret|mlflow|prefect|grafana)\b"
    )
    for relative in tracked.split():
        path = REPO_ROOT / relative
        if relative.startswith("tests/") or path.suffix in {".png", ".gz", ".lock"} or not path.is_file():
            continue  # tests hold deliberately weak values, to check that they are refused
        for number, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            assert not weak.search(line), f"{relative}:{number} sets a guessable secret: {line.strip()}"


def test_stack_shape(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert {
        "postgres", "mlflow", "prefect-server", "worker-monitor", "worker-training", "service", "nginx",
        "evidently", "prometheus", "grafana", "jupyter",
    } <= set(services)  # fmt: skip
    assert "ports" not in services["postgres"] and "ports" not in services["service"]  # only behind nginx
    assert resolved["networks"]["backend"].get("internal") is True
    for name, service in services.items():
        assert "platform" not in service, f"{name} hard-codes a platform"
        image = service.get("image", "")
        if not image.startswith("onprem-mlops-"):
            pinned = re.search(r":(v?\d+\.\d+|RELEASE\.\d{4}-)", image)
            assert pinned, f"{name}: third-party image {image!r} is not pinned to a version"
    waits = {name: set(s.get("depends_on", {})) for name, s in services.items()}
    assert {"postgres", "mlflow", "prefect-server"} <= waits["worker-training"]
    assert services["nginx"]["depends_on"]["service"]["condition"] == "service_healthy"
    for name in ("postgres", "mlflow", "prefect-server", "service", "nginx", "prometheus", "grafana"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    volumes = {v["source"] for s in services.values() for v in s.get("volumes", []) if v["type"] == "volume"}
    assert {"pgdata", "minio-data", "mlops-state", "datasets", "prometheus-data", "grafana-data"} <= volumes
    # The service and the training worker share no volume with the stack: storage is the object store.
    assert not services["service"].get("volumes") and not services["worker-training"].get("volumes")
    assert services["service"]["environment"]["MLOPS_STORAGE_URL"].startswith("s3://")
    reviewers = json.loads(services["service"]["environment"]["MLOPS_SERVICE_REVIEWERS"])
    assert list(reviewers) == ["reviewer"] and len(reviewers["reviewer"]) >= 32  # the page works in production


def dockerfile_copies() -> list[tuple[int, str]]:
    sources = []
    for number, line in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        if not line.startswith("COPY "):
            continue
        words = shlex.split(line)
        if not any(w.startswith("--from") for w in words):
            sources += [(number, word) for word in words[1:-1] if not word.startswith("--")]
    return sources


def test_every_path_the_dockerfile_copies_exists() -> None:
    copies = dockerfile_copies()
    assert len(copies) >= 6
    for number, source in copies:
        assert (REPO_ROOT / source).exists(), f"Dockerfile line {number} copies {source}, which does not exist"


def test_the_build_context_holds_no_secret_or_state_and_everything_the_dockerfile_copies() -> None:
    """`docker compose build` sends the checkout to the engine: .env, the signing key and the venv stay out."""
    patterns = [
        line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")
    ]
    excluded = {pattern for pattern in patterns if not pattern.startswith("!")}
    assert {".env", ".secrets", ".venv", ".mlops", ".git"} <= excluded
    for number, source in dockerfile_copies():
        hits = [p for p in excluded if fnmatch.fnmatch(source, p) or source.startswith(p.rstrip("/") + "/")]
        assert not hits, f"Dockerfile line {number} copies {source}, which .dockerignore leaves out ({hits})"


def dockerfile_cmds() -> dict[str, list[str]]:
    """The CMD of each stage of the Dockerfile: what a service without a command runs."""
    cmds, stage = {}, ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM "):
            stage = line.split(" AS ")[-1].strip() if " AS " in line else stage
        elif line.startswith("CMD "):
            cmds[stage] = json.loads(line[4:])
    return cmds


def pinned_names(requirement_files: list[str]) -> set[str]:
    pinned = set()
    for relative in requirement_files:
        for line in (REPO_ROOT / relative).read_text().splitlines():
            if line and not line.startswith("#"):
                pinned.add(re.split(r"[=<>@ ]", line)[0].lower().replace("_", "-"))
    return pinned


def console_scripts(requirement_files: list[str]) -> set[str]:
    """Commands the image's install provides: console scripts of exactly the pinned distributions."""
    pinned = pinned_names(requirement_files)
    scripts = {"python"}
    for distribution in importlib.metadata.distributions():
        if distribution.metadata["Name"].lower().replace("_", "-") in pinned:
            scripts |= {e.name for e in distribution.entry_points if e.group == "console_scripts"}
    return scripts


def test_every_service_command_exists_in_its_image(resolved: dict[str, Any]) -> None:
    checked, cmds = 0, dockerfile_cmds()
    scripts = {target: console_scripts(files) for target, files in PROJECT_IMAGES.items()}
    pinned = {target: pinned_names(files) for target, files in PROJECT_IMAGES.items()}
    for name, service in resolved["services"].items():
        if "build" not in service:
            continue
        target = service["build"].get("target", "app")
        command = service.get("command") or cmds[target]
        script = REPO_ROOT / command[0]  # a script of the repository, copied into the image
        assert command[0] in scripts[target] or script.is_file(), f"{name}: {command[0]} is not installed"
        if command[0] == "jupyter":  # `jupyter lab` runs the jupyter-lab script of the jupyterlab package
            assert f"jupyter{command[1]}" in pinned[target], f"{name}: jupyter {command[1]}"
        checked += 1
    assert checked >= 7
    gunicorn = resolved["services"]["service"].get("command") or cmds["serve"]
    config = REPO_ROOT / gunicorn[gunicorn.index("--config") + 1]
    assert config.is_file()
    module, _, factory = gunicorn[1].partition(":")
    assert importlib.util.find_spec(module) is not None and factory == "create_app()"
    namespace: dict[str, Any] = {}
    with mock.patch.dict(os.environ):  # the file sets MLOPS_SERVICE_WORKERS for its workers: not for later tests
        exec(config.read_text(), namespace)  # the gunicorn settings file itself
    worker_module = namespace["worker_class"].rsplit(".", 1)[0]
    assert importlib.util.find_spec(worker_module) is not None, f"{namespace['worker_class']} is not installed"


def lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", line):
            pins[match.group(1).lower().replace("_", "-").replace(".", "-")] = match.group(2)
    return pins


def test_image_requirements_are_the_lock_pins_with_hashes() -> None:
    """requirements/*.txt (make lock-images) pin what requirements.lock pins, every file hashed."""
    lock = lock_pins(REPO_ROOT / "requirements.lock")
    # pip's own tools, and a backport pip needs below Python 3.11.3 (Debian bookworm has 3.11.2)
    not_in_lock = {"setuptools", "wheel", "async-timeout"}
    for name in ("serve.txt", "app.txt"):
        path = REPO_ROOT / "requirements" / name
        pins = lock_pins(path)
        differ = {
            key: (value, lock.get(key))
            for key, value in pins.items()
            if key not in not_in_lock and lock.get(key) != value
        }
        assert not differ, f"{name} differs from requirements.lock (make lock-images): {differ}"
        blocks = re.split(r"\n(?=[A-Za-z])", path.read_text().strip())
        assert all("--hash=sha256:" in block for block in blocks if "==" in block.split()[0])
    serve = lock_pins(REPO_ROOT / "requirements" / "serve.txt")
    assert {"fastapi", "gunicorn", "tensorflow-cpu", "s3fs"} <= set(serve)
    heavy = {"prefect", "mlflow", "dvc", "deepchecks", "evidently", "playwright", "mypy", "pytest", "moto"}
    assert not heavy & set(serve), heavy & set(serve)
    app = lock_pins(REPO_ROOT / "requirements" / "app.txt")
    assert {"prefect", "mlflow", "dvc-s3", "evidently"} <= set(app) and not {"playwright", "mypy", "pytest"} & set(app)


def test_prometheus_scrapes_the_service_and_itself() -> None:
    config = yaml.safe_load((REPO_ROOT / "deployments" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["dl_service"]["dns_sd_configs"][0] == {
        "names": ["service"], "type": "A", "port": 8000, "refresh_interval": "15s"
    }  # fmt: skip
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["localhost:9090"]


def test_nginx_limits_uploads_like_the_service_and_guards_admin_routes() -> None:
    from tasks.core.settings import ServiceSettings

    conf = (REPO_ROOT / "deployments" / "nginx" / "nginx.conf").read_text()
    settings = ServiceSettings()
    sizes = [int(size) * 1024 * 1024 for size in re.findall(r"client_max_body_size (\d+)m;", conf)]
    assert sizes == [settings.max_upload_bytes, settings.max_request_bytes]
    admin = conf[conf.index("location /admin/") :]
    assert "return 401" in admin.split("}")[0] + admin.split("}")[1]
    # Server-level headers reach every location only while no location sets its own.
    assert "add_header X-Content-Type-Options nosniff always;" in conf and "X-Frame-Options DENY" in conf
    assert 'Strict-Transport-Security "max-age=31536000" always' in conf and "listen 8443 ssl;" in conf
    assert conf.count("add_header") == 3


def test_secrets_write_a_tls_certificate_for_this_machine_and_keep_yours(tmp_path: Path) -> None:
    from cryptography import x509

    from deployments.stack.tls import ensure_certificate

    folder = tmp_path / ".secrets" / "tls"
    assert ensure_certificate(folder) is True
    certificate = x509.load_pem_x509_certificate((folder / "tls.crt").read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert str(names.get_values_for_type(x509.IPAddress)[0]) == "127.0.0.1"
    assert (tmp_path / ".secrets").stat().st_mode & 0o777 == 0o700  # the folder keeps the key private
    (folder / "tls.crt").write_text("yours")
    assert ensure_certificate(folder) is False and (folder / "tls.crt").read_text() == "yours"


def test_secrets_file_is_private_even_when_it_replaces_a_readable_one(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("OLD=1\n")
    path.chmod(0o644)
    write_env_file(path)  # what `make secrets --force` does
    assert path.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    assert values and all(len(value) >= 32 for value in values.values())


CONSOLES = {"mlflow", "prefect-server", "evidently", "prometheus", "grafana", "jupyter"}
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DISABLE_DEEPCHECKS_ANONYMOUS_TELEMETRY": "true",
}


def published_on(config: dict[str, Any]) -> dict[str, set[str]]:
    return {
        name: {port["host_ip"] for port in service.get("ports", [])}
        for name, service in config["services"].items()
        if service.get("ports")
    }


def test_serving_the_lan_opens_the_api_alone(env_file: Path, tmp_path: Path) -> None:
    """The Prefect API has no login and runs flows with the stack's secrets: it must not follow the API out."""
    assert published_on(resolved_with(env_file, tmp_path, {})) == {name: {"127.0.0.1"} for name in CONSOLES | {"nginx"}}
    lan = published_on(resolved_with(env_file, tmp_path, {"MLOPS_SERVICE_BIND_ADDRESS": "192.0.2.10"}))
    assert lan.pop("nginx") == {"192.0.2.10", "127.0.0.1"}
    nginx_ports = resolved_with(env_file, tmp_path, {"MLOPS_SERVICE_BIND_ADDRESS": "192.0.2.10"})["services"]["nginx"]
    by_port = {port["target"]: port["host_ip"] for port in nginx_ports["ports"]}
    assert by_port == {8443: "192.0.2.10", 8080: "127.0.0.1"}  # the LAN gets HTTPS only
    assert lan == {name: {"127.0.0.1"} for name in CONSOLES}


def resolved_with(env_file: Path, tmp_path: Path, extra: dict[str, str]) -> dict[str, Any]:
    changed = tmp_path / ".env"
    changed.write_text(env_file.read_text() + "".join(f"{key}={value}\n" for key, value in extra.items()))
    result = compose("config", "--format", "json", env_file=changed)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_no_component_reports_usage(resolved: dict[str, Any]) -> None:
    python_services = {
        name for name, service in resolved["services"].items() if str(service.get("image", "")).startswith("onprem-")
    }
    assert {"mlflow", "evidently", "prefect-server", "service", "jupyter"} <= python_services
    for name in python_services:
        environment = resolved["services"][name].get("environment") or {}
        assert TELEMETRY_OFF.items() <= environment.items(), name
    assert resolved["services"]["grafana"]["environment"]["GF_ANALYTICS_REPORTING_ENABLED"] == "false"


def test_notebooks_see_neither_the_env_file_nor_the_signing_key_file(resolved: dict[str, Any]) -> None:
    jupyter = resolved["services"]["jupyter"]
    masks = {volume["target"]: volume["source"] for volume in jupyter["volumes"] if volume["type"] == "bind"}
    assert masks["/home/mlops/project/.env"] == "/dev/null"
    assert "/home/mlops/project/.secrets" in jupyter["tmpfs"]
    assert jupyter["environment"]["MLOPS_SIGNING_KEY_FILE"] == "/run/secrets/model-signing-key"  # to publish
