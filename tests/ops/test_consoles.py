"""After `make run`: the consoles a user opens, in headless Chromium over the state folder of a real run.

A full flow runs with the installed `mlops run` (embedded: the state folder holds Prefect's and MLflow's
databases), then `mlops ui` serves the consoles and the browser opens the Prefect flow run and the
MLflow training run as a user would. The screenshots are the README's (``make screenshots``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployments.stack.servers import free_port
from tasks.core.settings import REPO_ROOT
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, screenshot
from tests.helpers.data import TINY_TRAINING

pytestmark = [pytest.mark.chromium, pytest.mark.slow]
MLOPS = Path(sys.executable).parent / "mlops"


def user_environment(tmp_path: Path) -> dict[str, str]:
    """A shell with nothing of the test session's Prefect or state settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLOPS_", "PREFECT_"))}
    return env | {"MLOPS_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}


@pytest.fixture
def consoles(tmp_path: Path, tiny_repo: Path) -> Iterator[tuple[dict[str, int], dict]]:
    """A full flow run in a fresh state folder, then `mlops ui` over it; the ports and the run's result."""
    env = user_environment(tmp_path)
    sets = [f"dataset.path={tiny_repo}", *TINY_TRAINING, "evaluate.thresholds={accuracy: [0.45, lower]}"]
    config = str(REPO_ROOT / "configs" / "full_flow_config.yaml")
    command = [str(MLOPS), "run", "--config", config, *(arg for value in sets for arg in ("--set", value))]
    ran = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout[ran.stdout.index("{") :])

    ports = {"prefect": free_port(), "mlflow": free_port(), "evidently": free_port()}
    ui_command = [str(MLOPS), "ui", *(f"--{name}-port={port}" for name, port in ports.items())]
    ui = subprocess.Popen(ui_command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for name, path in (("prefect", "/api/health"), ("mlflow", "/health")):
            wait_for(f"http://127.0.0.1:{ports[name]}{path}")
        yield ports, result
    finally:
        ui.send_signal(signal.SIGINT)
        ui.wait(timeout=60)


def wait_for(url: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} did not answer in {seconds:.0f} s")


def test_the_prefect_flow_run_and_the_mlflow_run_open_in_a_browser(
    consoles: tuple[dict[str, int], dict], tmp_path: Path
) -> None:
    require_chromium("the console screenshots")
    from playwright.sync_api import expect, sync_playwright

    ports, result = consoles
    prefect = f"http://127.0.0.1:{ports['prefect']}"
    (full_run,) = httpx.post(f"{prefect}/api/flow_runs/filter", json={"flows": {"name": {"any_": ["full"]}}}).json()
    mlflow = f"http://127.0.0.1:{ports['mlflow']}"
    training = httpx.get(f"{mlflow}/api/2.0/mlflow/runs/get", params={"run_id": result["train"]["run_id"]}).json()
    experiment = training["run"]["info"]["experiment_id"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        page.goto(f"{prefect}/runs/flow-run/{full_run['id']}")
        expect(page.get_by_text(full_run["name"]).first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Completed").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(2_000)  # the timeline's animation settles
        screenshot(page, tmp_path, "prefect-flow-run.png")

        page.goto(f"{mlflow}/#/experiments/{experiment}/runs/{result['train']['run_id']}")
        expect(page.get_by_text("test_accuracy").first).to_be_visible(timeout=60_000)
        assistant = page.locator("[aria-label='Close']").or_(page.get_by_role("button", name="Close"))
        if assistant.count():  # MLflow's chat side panel, of no use without a model server
            assistant.first.click()
        page.get_by_role("tab", name="Model metrics").click()
        # The training curves: MLflow draws its charts as they scroll into view, so this waits for the
        # section (its "Add chart" button) rather than for one chart's title.
        expect(page.get_by_role("button", name="Add chart").first).to_be_visible(timeout=60_000)
        page.get_by_placeholder("Search metric charts").fill("accuracy")  # the curves, not calibration's figures
        expect(page.get_by_text("val_accuracy").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(3_000)
        screenshot(page, tmp_path, "mlflow-run.png")
        browser.close()
