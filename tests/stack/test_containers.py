"""The production stack in real containers on a real Docker engine: images built here (a base from
the machine's apt sources when no registry answers), `up` until every container is healthy, the
demo (training on a worker that shares nothing with the stack but its network, traffic and a
rollout through nginx, the monitor run by its worker), then `down`. Its own project name, env file
and state folder; images are shared with `make stack-images` (Docker's build cache)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.core.settings import REPO_ROOT
from tests.helpers.grafana import dashboard, expand_sql, targets

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.timeout(3600)]
PROJECT = "onprem-mlops-test"
# One stack at a time per Docker engine: the published ports (127.0.0.1:4200, :8080, ...) are the
# machine's, so a second run of this test (another checkout) waits here instead of colliding.
ENGINE_LOCK = Path("/tmp/onprem-mlops-containers.lock")


def stack(env: dict[str, str], *action: str, timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deployments.stack.containers", *action]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout


def output_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"{result.args[-1]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    lines = result.stdout.splitlines()
    start = next(number for number, line in enumerate(lines) if line.startswith("{"))  # after progress lines
    return json.loads("\n".join(lines[start:]))


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("no Docker engine answers: install docker.io and start dockerd (.ci/run does)")
    folder = tmp_path_factory.mktemp("containers")
    with ENGINE_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from stack_env_while_locked(folder)


def stack_env_while_locked(folder: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "MLOPS_HOME": str(folder / "state"),
        "MLOPS_STACK_PROJECT": PROJECT,
        "MLOPS_STACK_ENV_FILE": str(folder / ".env"),
        "MLOPS_DEMO_DATASET_SIZE": "small",
    }
    # A run killed before its teardown leaves containers and volumes behind: start from none.
    assert stack(env, "down", "--volumes", timeout=600).returncode == 0
    images = stack(env, "images", timeout=3000)
    env["IMAGES_RECORD"] = json.dumps(output_json(images))
    yield env
    down = stack(env, "down", "--volumes", timeout=600)
    assert down.returncode == 0, down.stderr
    assert f"{PROJECT}-" not in docker("ps", "--all", "--format", "{{.Names}}")


def test_stack_comes_up_healthy_and_runs_the_demo_end_to_end(stack_env: dict[str, str]) -> None:
    record = json.loads(stack_env["IMAGES_RECORD"])
    # No registry here: every third-party service runs as its Debian stand-in, Grafana not at all.
    assert set(record["third_party"]) == {"postgres", "minio", "nginx", "prometheus", "grafana"}

    up = output_json(stack(stack_env, "up"))
    containers = up["containers"]
    assert sum(name.startswith(f"{PROJECT}-service-") for name in containers) == 3
    assert containers[f"{PROJECT}-storage-init-1"] == "completed"
    assert all(state in ("healthy", "completed", "running") for state in containers.values())

    # The serving replicas mount nothing: models come from the object store.
    for index in (1, 2, 3):
        mounts = json.loads(docker("inspect", "--format", "{{json .Mounts}}", f"{PROJECT}-service-{index}"))
        assert mounts == []
    # The slim serving image has no flow, tracking or test libraries.
    missing = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", "onprem-mlops-serve:latest", "-c", "import prefect"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode != 0 and "No module named 'prefect'" in missing.stderr

    # nginx answers on 127.0.0.1 with its security headers; the admin routes need a token there.
    page = httpx.get("http://127.0.0.1:8080/", timeout=10)
    assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.post("http://127.0.0.1:8080/admin/reload", timeout=10).status_code == 401
    # The API reference's Swagger UI is in the slim image: nothing to fetch from a CDN.
    bundle = httpx.get("http://127.0.0.1:8080/docs/assets/swagger-ui-bundle.js", timeout=10)
    assert bundle.status_code == 200 and len(bundle.content) > 1_000_000
    # HTTPS with the certificate `up` wrote beside the env file (self-signed, for 127.0.0.1 too).
    certificate = Path(stack_env["MLOPS_STACK_ENV_FILE"]).parent / ".secrets" / "tls" / "tls.crt"
    secure = httpx.get("https://127.0.0.1:8443/health", verify=str(certificate), timeout=10)
    assert secure.status_code == 200 and secure.headers["strict-transport-security"] == "max-age=31536000"

    demo = output_json(stack(stack_env, "demo"))
    first, second, monitor = demo["flow_runs"]
    assert demo["training_pool_concurrency_limit"] == 1  # two trainings never share a working copy
    # Training ran on the worker of "another host", started through the Prefect API.
    assert first["state"] == second["state"] == "COMPLETED"
    assert first["worker"] == second["worker"] == "training-host-2"
    assert monitor["state"] == "COMPLETED"
    # Every worker process of every replica served version 1, then version 2 after the rollout.
    for served, version in ((demo["served_after_first_deploy"], "1"), (demo["served_after_rollout"], "2")):
        assert len(served) == 3
        assert all(len(pids) == 2 and set(pids.values()) == {version} for pids in served.values())
    rollout = demo["rollout"]
    assert rollout["failed"] == 0 and rollout["requests"] > 100, rollout
    assert rollout["answers_by_version"].get("2", 0) > 0, rollout
    # The monitor saw the digits half of the traffic as drift.
    assert demo["monitor_verdict"]["drift"] is True

    # The dashboards' queries, as Grafana would send them to the stack's data sources: PromQL to
    # Prometheus (which scraped the replicas during the demo), SQL to PostgreSQL as Grafana's read-only role.
    prometheus = "http://127.0.0.1:9090/api/v1/query"
    for title, target in targets(dashboard("dl_service.json"), "prometheus"):
        answer = httpx.get(prometheus, params={"query": target["expr"]}, timeout=10).json()
        assert answer["status"] == "success", (title, answer)
    served = httpx.get(prometheus, params={"query": "dl_service_requests_total"}, timeout=10).json()
    assert served["data"]["result"], "Prometheus scraped no request counts from the replicas"
    for title, target in targets(dashboard("monitor.json"), "predictions"):
        sql = expand_sql(target["rawSql"], {"model": "fashion-cnn"})
        rows = psql_as_dashboards(sql)
        assert rows.returncode == 0 and rows.stdout.strip(), f"panel {title!r}: {rows.stderr or 'no rows'}"
    denied = psql_as_dashboards("DELETE FROM monitor_runs")
    assert "permission denied" in denied.stderr  # Grafana's login can only read


def psql_as_dashboards(sql: str) -> subprocess.CompletedProcess[str]:
    """psql in the stack's postgres container as Grafana's role, over TCP, with the password compose gave it."""
    script = 'PGPASSWORD="$DASHBOARDS_DB_PASSWORD" psql -h 127.0.0.1 -U dashboards -d predictions -At -c "$0"'
    command = ["docker", "exec", f"{PROJECT}-postgres-1", "sh", "-c", script, sql]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
