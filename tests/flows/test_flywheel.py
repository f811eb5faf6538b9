"""The whole data flywheel on the tiny dataset: serve, queue, review in the page (headless Chromium),
add the reviews as a new tagged revision, train on it, and find that revision and its provenance in
the new version's metadata."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import mlflow
import pytest

from tasks.core.review_queue import ReviewQueue
from tasks.core.settings import get_settings
from tasks.core.storage import read_metadata
from tasks.data import repository
from tasks.data.dataset import read_manifest
from tasks.data.demo import CLASS_NAMES, load_source, png_bytes
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, screenshot
from tests.helpers.data import tiny_config
from tests.helpers.service import running_service

pytestmark = [pytest.mark.flow, pytest.mark.slow, pytest.mark.chromium]

LENIENT = ("evaluate.thresholds={}", "deploy.margin=1.0", "deploy.slice_margin=1.0")
TOKEN = "ana-reviewer-token-0123456789abcdef"
SERVED = range(5000, 5030)  # Fashion-MNIST test images the tiny dataset does not hold
# 200 training images: thirty reviews move the label mix more than they would on a full dataset.
REVIEWS = ("dataset.reviews.min_new_labels=10", "dataset.validation.max_label_drift=0.3")


def test_reviewed_served_images_become_a_revision_the_next_version_trains_on(
    flow_state: Path, tiny_repo: Path, fashion_source: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    require_chromium("the review page test")
    from playwright.sync_api import expect, sync_playwright

    from flows.add_reviews_flow import add_reviews_flow
    from flows.deploy_flow import deploy_flow
    from flows.train_flow import train_flow

    monkeypatch.setenv("MLOPS_SERVICE_REVIEWERS", json.dumps({"ana": TOKEN}))
    monkeypatch.setenv("MLOPS_SERVICE_REVIEW_SAMPLE", "1.0")
    monkeypatch.setenv("MLOPS_SERVICE_LOG_FLUSH_SECONDS", "0.05")
    get_settings.cache_clear()
    settings = get_settings()
    # Label screening of this first training set is left out, so the queue holds served images only.
    train_flow(config=tiny_config(tiny_repo, "train.screen_labels=false", config="train_config.yaml"))
    assert deploy_flow(config=tiny_config(tiny_repo, *LENIENT, config="deploy_config.yaml")).promoted
    images, labels = load_source(fashion_source)["test"]
    truth: dict[str, str] = {}

    with running_service({}, tmp_path / "server.log") as url:
        for index in SERVED:
            files = {"file": ("x.png", png_bytes(images[index]), "image/png")}
            answer = httpx.post(f"{url}/predict", files=files).json()
            truth[answer["prediction_id"]] = CLASS_NAMES[labels[index]]

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(url + "/review")
            page.fill("#token", "not-a-reviewer")
            page.press("#token", "Enter")
            expect(page.locator("#signin-status")).to_contain_text("unknown reviewer token")
            page.fill("#token", TOKEN)
            page.press("#token", "Enter")
            reviewed, confirmed = [], 0
            for number in range(len(SERVED)):
                expect(page.locator("#item")).to_be_visible()
                item = page.locator("#item").get_attribute("data-item-id")
                while item in reviewed:  # the page is still on the last image: wait for the next
                    page.wait_for_timeout(50)
                    item = page.locator("#item").get_attribute("data-item-id")
                assert item in truth and page.locator("#overlay").get_attribute("src").startswith("data:image/png")
                if number == 0:
                    screenshot(page, tmp_path, "review-page.png")  # the README's picture of the page
                reviewed.append(item)
                if page.locator("#predicted").inner_text() == truth[item]:
                    page.keyboard.press("Enter")  # the model is right
                    confirmed += 1
                else:  # the class's digit, as a reviewer types it
                    classes = page.locator("#classes button").evaluate_all("bs => bs.map(b => b.dataset.label)")
                    page.keyboard.press("1234567890"[classes.index(truth[item])])
            expect(page.locator("#empty")).to_be_visible()
            browser.close()

    queue = ReviewQueue.at(settings.prediction_database_url)
    assert sorted(reviewed) == sorted(truth) and queue.counts()["agreed"] == len(SERVED)
    assert [a.reviewers for a in queue.agreed()] == [["ana"]] * len(SERVED)
    assert {a.item.item_id: a.label for a in queue.agreed()} == truth  # every keypress landed as meant

    made = add_reviews_flow(config=tiny_config(tiny_repo, *REVIEWS, config="add_reviews_config.yaml"))
    assert made.revision == "v2.0-reviews-1" and made.added + made.sent_back == len(SERVED) and made.added >= 10
    assert repository.latest_tag(tiny_repo) == made.revision
    tracked = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    logged = [a.path for a in tracked.list_artifacts(made.run_id, "provenance")]
    assert logged == [f"provenance/{made.revision}.json"]
    assert tracked.get_run(made.run_id).data.tags["dataset.revision"] == made.revision
    manifest = read_manifest(tiny_repo / "data")
    assert (manifest["split"] == "reviewed").sum() == made.added

    trained = train_flow(config=tiny_config(tiny_repo, "dataset.revision=latest", config="train_config.yaml"))
    assert (trained.dataset_revision, trained.dataset_commit) == (made.revision, made.commit)
    metadata = read_metadata(settings.central_storage_url, "fashion-cnn", trained.version)
    dataset = metadata["dataset"]
    assert (dataset["revision"], dataset["requested_revision"], dataset["commit"]) == (
        made.revision,
        "latest",
        made.commit,
    )
    provenance = dataset["from_reviews"][0]
    assert provenance["revision"] == made.revision and provenance["images_added"] == made.added
    assert provenance["reviewers"] == ["ana"] and provenance["served_by_versions"] == ["1"]
    assert provenance["file"] == made.provenance_file
    run = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_run(trained.run_id)
    assert run.data.params["dataset.rows.reviewed"] == str(made.added)  # trained on them
    screened = [
        a.path
        for a in mlflow.MlflowClient(settings.mlflow_tracking_uri).list_artifacts(trained.run_id, "label_screening")
    ]
    assert "label_screening/likely_label_errors.csv" in screened
