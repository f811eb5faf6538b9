"""The stack's wiring with real servers as processes: PostgreSQL (password logins, databases made by
the compose file's init script), `mlflow server`, `prefect server` and its workers, the service under
gunicorn with two workers. The full flow and the monitor flow (run by its worker) go through them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, text

from deployments.stack.local_stack import demo, running_stack
from deployments.stack.servers import prefect_api_headers
from tests.helpers.data import TINY_TRAINING

pytestmark = [pytest.mark.flow, pytest.mark.slow]


def test_full_and_monitor_flows_run_against_the_real_servers(tiny_repo: Path, tmp_path: Path) -> None:
    overrides = [
        f"dataset.path={tiny_repo}",
        *TINY_TRAINING,
        "evaluate.thresholds={accuracy: [0.45, lower]}",  # a model that learned clears it; an untrained one not
        "deploy.margin=1.0",
        "deploy.slice_margin=1.0",
    ]
    monitor = ["monitor.window_size=200", "monitor.min_labelled=20", "monitor.thresholds={}"]
    with running_stack(tmp_path / "stack") as stack:
        summary = demo(stack, tiny_repo / "data", overrides, monitor)
        env = stack.app_environment()

        # Both gunicorn workers serve the deployed version, each saying so itself (demo waited for both).
        assert set(summary["workers_serving"].values()) == {"1"}
        # MLflow server: the registry holds the champion, its artifacts went through the server.
        registry = MlflowClient(tracking_uri=stack.url("mlflow"), registry_uri=stack.url("mlflow"))
        champion = registry.get_model_version_by_alias("fashion-cnn", "champion")
        assert champion.version == "1" and champion.source.startswith(("mlflow-artifacts:", "models:/"))
        assert any((tmp_path / "stack" / "mlflow" / "artifacts").rglob("*.keras"))
        # PostgreSQL: every prediction of both workers, under the service's own login.
        engine = create_engine(env["MLOPS_PREDICTION_DB_URL"])
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT count(*), count(DISTINCT model_version) FROM predictions")).one()
            labels = connection.execute(text("SELECT count(*) FROM feedback")).scalar_one()
        engine.dispose()
        assert tuple(rows) == (300, 1) and labels > 20
        # Prefect server: the deploy flow applied both deployments (demo checked the worker's monitor run).
        api = f"{stack.url('prefect-server')}/api"
        headers = prefect_api_headers(stack.secrets["PREFECT_API_AUTH_STRING"])
        assert httpx.get(f"{api}/deployments/filter", timeout=10).status_code == 401  # the API needs its login
        for name in ("monitor/monitor-weekly", "full/full-flow"):
            assert httpx.get(f"{api}/deployments/name/{name}", headers=headers, timeout=10).status_code == 200
        verdicts = list((tmp_path / "stack" / "state" / "storage").rglob("verdict.json"))
        assert len(verdicts) == 1 and '"drift": true' in verdicts[0].read_text()  # half the traffic was digits


@pytest.fixture(autouse=True)
def remove_cluster_outside(tmp_path: Path) -> Iterator[None]:
    """The cluster may live outside the test's folder (see LocalStack.postgres_data): remove it too."""
    yield
    link = tmp_path / "stack" / "postgres"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
