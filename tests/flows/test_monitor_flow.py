"""The monitor flow under a real Prefect API, on predictions the real service logged: known drift and no drift."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from prefect.client.schemas.objects import FlowRun

from configs.schema import load_config
from services.dl_service.app import create_app
from tasks.core.settings import REPO_ROOT, Settings
from tasks.data.dataset import read_manifest
from tests.helpers.images import digit_pngs

pytestmark = pytest.mark.flow


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A real local HTTP receiver that records every JSON body posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def applied_retraining_deployment() -> UUID:
    """The full-flow deployment, applied with `prefect deploy` as the deploy flow applies it."""
    from prefect import get_client

    from tasks.deployment.prefect_deployments import apply_deployments, ensure_work_pool

    with get_client(sync_client=True) as prefect:
        api_url = str(prefect.api_url)
        ensure_work_pool("training", api_url)
        apply_deployments(["full-flow"], api_url, "0 6 * * 1")
        return prefect.read_deployment_by_name("full/full-flow").id


def retraining_runs(deployment_id: UUID) -> list[FlowRun]:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as prefect:
        return prefect.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def monitor_runs() -> list[FlowRun]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as prefect:
        return prefect.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["monitor"])))


def serve(client: TestClient, images: list[bytes], labels: list[str] | None = None) -> None:
    for index, content in enumerate(images):
        response = client.post("/predict", files={"file": ("x.png", content, "image/png")})
        assert response.status_code == 200
        if labels is not None:
            client.post(f"/feedback/{response.json()['prediction_id']}", json={"label": labels[index]})
    client.app.state.service.log.flush()  # type: ignore[attr-defined]


def test_monitor_flow_stays_quiet_on_fashion_and_flags_digits(
    prefect_api: None,
    service_env: dict[str, str],
    tiny_repo_template: tuple[Path, Path],
    webhook: tuple[str, list[dict]],
    model_storage: Path,
) -> None:
    from flows.monitor_flow import monitor_flow

    repo, _ = tiny_repo_template
    manifest = read_manifest(repo / "data")
    test_rows = manifest[manifest["split"] == "test"]
    fashion = [(repo / "data" / p).read_bytes() for p in test_rows["path"]]
    url, received = webhook
    config = load_config(
        REPO_ROOT / "configs" / "monitor_config.yaml",
        [
            "monitor.window_size=100",
            "monitor.min_labelled=50",
            "monitor.thresholds={}",
            f"monitor.webhook_url={url}",
            "monitor.retrain_on_drift=true",
        ],
        root=REPO_ROOT,
    )
    retraining = applied_retraining_deployment()
    earlier = {run.id for run in retraining_runs(retraining)}  # the session's server: other tests' runs
    with TestClient(create_app(Settings())) as client:
        serve(client, fashion, list(test_rows["label"]))
        quiet = monitor_flow(config=config)
        runs_after_quiet = [run for run in retraining_runs(retraining) if run.id not in earlier]
        serve(client, digit_pngs(100))
        alarmed = monitor_flow(config=config)

    assert runs_after_quiet == [] and not quiet.retraining_triggered
    assert alarmed.retraining_triggered
    started = [run for run in retraining_runs(retraining) if run.id not in earlier]
    assert [run.state_name for run in started] == ["Scheduled"]  # waits for a training worker
    assert started[0].parameters["overrides"] == ["dataset.revision=latest"]  # learns from the newest reviews

    assert (quiet.window_rows, quiet.labelled_rows, quiet.drift) == (100, 100, False), quiet
    assert alarmed.drift and alarmed.p_value < 0.001 and alarmed.labelled_rows == 0
    assert [body["drift"] for body in received] == [False, True]
    report = Path(alarmed.reports["report.html"])
    assert report.is_file() and "Drift" in report.read_text()
    verdict = json.loads(Path(alarmed.reports["verdict.json"]).read_text())
    assert {t["name"] for t in verdict["tests"]} >= {"UAE embedding", "BBSD softmax", "class mix", "image properties"}
    assert "only 0 labelled predictions" in " ".join(verdict["violations"])
    # Before any label: the window's accuracy estimated by the version's shift regression, with its interval,
    # the confidence-based estimators beside it.
    low, high = verdict["estimated_accuracy_interval"]
    assert 0 <= low <= verdict["estimated_accuracy"] <= high <= 1 and verdict["estimator"] == "shift_regression"
    assert set(verdict["estimators"]) == {"shift_regression", "average_confidence", "atc"}
    # The quiet window had labels for every row: its sets' coverage of them is reported.
    assert quiet.set_coverage is not None and quiet.set_coverage > 0.5
    workspace = Path(service_env["MLOPS_HOME"]) / "evidently"
    assert any(workspace.rglob("*.json"))
    recorded = json.dumps([run.parameters for run in monitor_runs()], default=str)  # what the Prefect UI shows
    assert url not in recorded and '"webhook_url": "**********"' in recorded
