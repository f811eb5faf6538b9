"""Create or update the project's Prefect deployments from deployments/prefect.yaml.

The ``prefect deploy`` command line does the work, against the API the calling flow uses, with
the code taken from this checkout; its exit status and output are checked, not assumed.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tasks.core.errors import MlopsError
from tasks.core.settings import REPO_ROOT

PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
# Every deployment of deployments/prefect.yaml and the work pool it runs on.
DEPLOYMENT_POOLS = {
    "full/full-flow": "training",
    "train/train": "training",
    "evaluate/evaluate": "training",
    "deploy/deploy": "training",
    "add-reviews/add-reviews": "training",
    "monitor/monitor-weekly": "monitor",
}


class DeploymentError(MlopsError):
    """``prefect deploy`` failed; the message carries its output."""


def apply_all(api_url: str | None, cron: str) -> dict[str, str]:
    """Every deployment on its pool (pools created when missing); deployment -> pool.

    ``api_url`` None: the API the environment names, or, with none, the state folder's own database
    (what `make prefect-server` then shows)."""
    for pool in sorted(set(DEPLOYMENT_POOLS.values())):
        ensure_work_pool(pool, api_url)
    apply_deployments([name.split("/")[1] for name in DEPLOYMENT_POOLS], api_url, cron)
    return dict(DEPLOYMENT_POOLS)


def _environment(api_url: str | None, **extra: str) -> dict[str, str]:
    return {**os.environ, **({"PREFECT_API_URL": api_url} if api_url else {}), **extra}


def ensure_work_pool(name: str, api_url: str | None) -> None:
    """A process work pool named ``name`` (created when missing)."""
    env = _environment(api_url)
    inspect = subprocess.run(
        _prefect("work-pool", "inspect", name), env=env, capture_output=True, text=True, check=False
    )
    if inspect.returncode == 0:
        return
    created = subprocess.run(
        _prefect("work-pool", "create", name, "--type", "process"), env=env, capture_output=True, text=True, check=False
    )
    if created.returncode != 0:
        raise DeploymentError(f"could not create work pool {name!r}:\n{created.stdout}{created.stderr}")


def apply_deployments(names: list[str], api_url: str | None, cron: str) -> None:
    """``prefect deploy --name NAME ...`` from deployments/prefect.yaml; a failure carries its output."""
    env = _environment(api_url, MLOPS_REPO_ROOT=str(REPO_ROOT), MLOPS_MONITOR_CRON=cron)
    selected = [argument for name in names for argument in ("--name", name)]
    command = _prefect("--no-prompt", "deploy", "--prefect-file", str(PREFECT_FILE), *selected)
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DeploymentError(
            f"prefect deploy {' '.join(selected)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


def _prefect(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]
