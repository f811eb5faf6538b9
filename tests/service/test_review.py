"""The review routes through the app: who may review, what the queue serves, how reviews settle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.dl_service.app import create_app
from tasks.core.settings import Settings
from tests.service.test_api import db_rows, upload, wait_for_rows

ANA = {"Authorization": "Bearer ana-token-0123456789"}
BEN = {"Authorization": "Bearer ben-token-0123456789"}
CLEO = {"Authorization": "Bearer cleo-token-012345678"}
REVIEWERS = '{"ana": "ana-token-0123456789", "ben": "ben-token-0123456789", "cleo": "cleo-token-012345678"}'


@pytest.fixture
def reviewing(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("MLOPS_SERVICE_REVIEWERS", REVIEWERS)
    monkeypatch.setenv("MLOPS_SERVICE_REVIEW_SAMPLE", "1.0")  # every served image is kept for review
    with TestClient(create_app(Settings())) as client:
        yield client


def serve(client: TestClient, images: list[Path], env: dict[str, str]) -> list[str]:
    ids = [client.post("/predict", files=upload(p.read_bytes())).json()["prediction_id"] for p in images]
    wait_for_rows(env, len(ids))
    return ids


def test_review_routes_need_a_reviewer_token(reviewing: TestClient) -> None:
    assert reviewing.get("/review/next").status_code == 401
    wrong = reviewing.get("/review/next", headers={"Authorization": "Bearer ana-token-0123456788"})
    assert wrong.status_code == 401 and "reviewer token" in wrong.json()["detail"]
    assert reviewing.post("/review/x", json={"label": "bag"}, headers={"Authorization": "ana"}).status_code == 401
    page = reviewing.get("/review")
    assert (
        page.status_code == 200
        and "review.js" in page.text
        and "script-src 'self'" in page.headers["content-security-policy"]
    )


def test_review_is_closed_without_reviewers(service_env: dict[str, str]) -> None:
    with TestClient(create_app(Settings())) as client:
        response = client.get("/review/next", headers=ANA)
    assert response.status_code == 403 and "MLOPS_SERVICE_REVIEWERS" in response.json()["detail"]


def test_the_queue_serves_each_kept_image_once_per_reviewer_with_its_heat_map(
    reviewing: TestClient, sample_images: list[Path], service_env: dict[str, str]
) -> None:
    served = serve(reviewing, sample_images[:4], service_env)
    assert all(uri for (uri,) in db_rows(service_env, "SELECT image_uri FROM predictions"))
    seen = []
    while (response := reviewing.get("/review/next", headers=ANA)).status_code == 200:
        task = response.json()
        assert task["model_version"] == "1" and len(task["classes"]) == 10 and task["reviews_so_far"] == 0
        assert task["overlay_png"] and task["image_png"] and task["reason"]
        seen.append(task["item_id"])
        assert reviewing.post(f"/review/{task['item_id']}", json={"label": "bag"}, headers=ANA).status_code == 201
    assert response.status_code == 204 and sorted(seen) == sorted(served)
    again = reviewing.post(f"/review/{seen[0]}", json={"label": "bag"}, headers=ANA)
    assert again.status_code == 409  # settled, and ana reviewed it already


def test_two_reviewers_who_disagree_mark_the_item_and_a_third_settles_it(
    reviewing: TestClient, sample_images: list[Path], service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(reviewing, sample_images[:1], service_env)
    item = reviewing.get("/review/next", headers=ANA).json()["item_id"]
    queue = reviewing.app.state.review_queue  # type: ignore[attr-defined]
    from tasks.core.review_queue import DoubtedLabel

    # Label screening doubts ana's answer: the item needs a second opinion.
    first = reviewing.post(f"/review/{item}", json={"label": "bag"}, headers=ANA).json()
    assert first["status"] == "agreed"
    queue.send_back([DoubtedLabel(item, "bag", "sandal", "0" * 64, "unused")])
    assert reviewing.get("/review/next", headers=ANA).status_code == 204  # not ana again
    second = reviewing.post(f"/review/{item}", json={"label": "sandal"}, headers=BEN).json()
    assert (second["status"], second["disagreement"]) == ("open", True)
    third = reviewing.post(f"/review/{item}", json={"label": "bag"}, headers=CLEO).json()
    assert (third["status"], third["agreed_label"], third["disagreement"]) == ("agreed", "bag", True)
    agreed = queue.agreed()
    assert [(a.item.item_id, a.label, a.reviewers) for a in agreed] == [(item, "bag", ["ana", "cleo"])]


def test_a_review_names_a_class_of_the_model(
    reviewing: TestClient, sample_images: list[Path], service_env: dict[str, str]
) -> None:
    serve(reviewing, sample_images[:1], service_env)
    item = reviewing.get("/review/next", headers=ANA).json()["item_id"]
    response = reviewing.post(f"/review/{item}", json={"label": "giraffe"}, headers=ANA)
    assert response.status_code == 422 and "one of:" in response.json()["detail"]
    assert reviewing.post("/review/no-such-item", json={"label": "bag"}, headers=ANA).status_code == 404


def test_images_are_kept_only_for_review_when_asked(
    service_env: dict[str, str], sample_images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_SERVICE_REVIEWERS", REVIEWERS)  # reviewing is on: the two settings decide
    monkeypatch.setenv("MLOPS_SERVICE_REVIEW_SAMPLE", "0")
    monkeypatch.setenv("MLOPS_SERVICE_REVIEW_UNCERTAIN", "false")
    with TestClient(create_app(Settings())) as client:
        serve(client, sample_images[:3], service_env)
    assert [uri for (uri,) in db_rows(service_env, "SELECT image_uri FROM predictions")] == [None] * 3


def test_an_image_gone_from_storage_is_set_aside_and_the_next_one_served(
    reviewing: TestClient, sample_images: list[Path], service_env: dict[str, str]
) -> None:
    served = serve(reviewing, sample_images[:2], service_env)
    reviewing.app.state.service.close()  # type: ignore[attr-defined]  # every kept image written
    uris = dict(db_rows(service_env, "SELECT id, image_uri FROM predictions"))
    Path(uris[served[0]]).unlink()
    shown = []
    while (task := reviewing.get("/review/next", headers=ANA)).status_code == 200:
        shown.append(task.json()["item_id"])
        reviewing.post(f"/review/{shown[-1]}", json={"label": "bag"}, headers=ANA)
    assert task.status_code == 204 and shown == [served[1]]  # never shown, never blocking the queue
    queue = reviewing.app.state.review_queue  # type: ignore[attr-defined]
    gone = queue.get(served[0])
    assert gone.status == "unreadable" and "image unreadable" in gone.reason
