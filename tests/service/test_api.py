"""The service through FastAPI's TestClient, with a real model, real storage and a real SQLite log."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from PIL import Image

from services.dl_service import schemas
from services.dl_service.app import create_app
from services.dl_service.uploads import plain_form_file
from tasks.core.pointer import write_pointer
from tasks.core.settings import ServiceSettings, Settings
from tasks.core.signing import generate_private_key, public_key_text
from tests.helpers.models import MODEL_NAME, in_process_probabilities
from tests.helpers.service import settings_with, wait_until

ADMIN = {"Authorization": "Bearer test-token-1234"}


@pytest.fixture
def client(service_env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as test_client:
        yield test_client


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(content: bytes, name: str = "image.png") -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, content, "application/octet-stream")}


def db_rows(env: dict[str, str], query: str) -> list[tuple]:
    path = env["MLOPS_PREDICTION_DB_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


def wait_for_rows(env: dict[str, str], count: int) -> list[tuple]:
    query = "SELECT id, model_version, sha256, uae, probabilities, brightness FROM predictions"
    wait_until(lambda: len(db_rows(env, query)) >= count, f"expected {count} logged predictions", seconds=10)
    return db_rows(env, query)


def test_ready_and_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["model_version"] == "1"


def test_predict_matches_in_process_prediction_and_is_logged(
    client: TestClient, sample_images: list[Path], model_storage: Path, service_env: dict[str, str]
) -> None:
    image = sample_images[0]
    response = client.post("/predict", files=upload(image.read_bytes()), headers={"X-Request-ID": "req-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = in_process_probabilities(model_storage, "1", image)
    served = np.array(list(body["probabilities"].values()))
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert body["model_version"] == "1" and body["label"] == body["top_k"][0]["label"]
    assert (response.headers["X-Model-Name"], response.headers["X-Model-Version"]) == ("fashion-cnn", "1")
    rows = wait_for_rows(service_env, 1)
    assert rows[0][0] == body["prediction_id"] and rows[0][1] == "1"
    assert len(eval(rows[0][3])) == 8 and len(eval(rows[0][4])) == 10 and rows[0][5] > 0
    assert db_rows(service_env, "SELECT request_id FROM predictions") == [("req-1",)]  # the caller's id, kept


def test_predict_takes_the_image_as_the_request_body_too(
    client: TestClient, sample_images: list[Path], service_env: dict[str, str]
) -> None:
    content = sample_images[0].read_bytes()
    multipart = client.post("/predict", files=upload(content))
    raw = client.post("/predict", content=content, headers={"Content-Type": "image/png"})
    assert raw.status_code == multipart.status_code == 200, raw.text
    body = schemas.Prediction.model_validate(raw.json())  # the body the service builds is the documented one
    assert body.probabilities == multipart.json()["probabilities"]
    assert body.prediction_id != multipart.json()["prediction_id"]
    assert raw.headers["X-Model-Version"] == "1" and raw.headers["content-type"] == "application/json"
    assert {row[0] for row in wait_for_rows(service_env, 2)} == {body.prediction_id, multipart.json()["prediction_id"]}
    documented = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/png", "image/jpeg"} <= set(documented)
    parameters = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["parameters"]
    assert [(p["name"], p["in"]) for p in parameters] == [("X-Request-ID", "header")]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "reason"),
    [
        ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type text/plain is not"),
        ({"data": {"image": "x"}, "files": {"other": ("a.png", b"x", "image/png")}}, 422, "no 'file' field"),
        ({"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty upload"),
        ({"content": b"\x89PNG" + bytes(2000), "headers": {"Content-Type": "image/png"}}, 413, "limit is 1,000"),
    ],
    ids=["not-an-image-type", "no-file-field", "empty-body", "oversized-body"],
)
def test_a_request_without_a_usable_image_says_how_to_send_one(
    client: TestClient, request_kwargs: dict[str, object], status: int, reason: str
) -> None:
    client.app.state.settings.service.max_upload_bytes = 1000  # type: ignore[attr-defined]
    response = client.post("/predict", **request_kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]


def test_predict_batch_returns_one_prediction_per_image(client: TestClient, sample_images: list[Path]) -> None:
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in sample_images[:5]]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200
    assert len({p["prediction_id"] for p in response.json()["predictions"]}) == 5
    assert response.headers["X-Model-Version"] == "1"


def test_batch_with_a_bad_file_names_it(client: TestClient, sample_images: list[Path]) -> None:
    files = [
        ("files", ("good.png", sample_images[0].read_bytes(), "image/png")),
        ("files", ("bad.png", b"text", "image/png")),
    ]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 415 and "file 1 (bad.png)" in response.json()["detail"]


def test_explain_returns_heat_map_and_overlay(client: TestClient, sample_images: list[Path]) -> None:
    import base64

    response = client.post("/explain", files=upload(sample_images[1].read_bytes()))
    assert response.headers["X-Model-Version"] == "1"
    assert response.status_code == 200
    body = response.json()
    heat = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))
    assert heat.mode == "RGBA" and heat.size == overlay.size == (224, 224)
    assert np.asarray(heat)[..., 3].max() > 0  # some region is hot


def test_feedback_is_stored_and_checked(
    client: TestClient, sample_images: list[Path], service_env: dict[str, str]
) -> None:
    prediction = client.post("/predict", files=upload(sample_images[2].read_bytes())).json()
    label = prediction["top_k"][1]["label"]
    response = client.post(f"/feedback/{prediction['prediction_id']}", json={"label": label})
    assert response.status_code == 201
    assert db_rows(service_env, "SELECT prediction_id, label FROM feedback") == [(prediction["prediction_id"], label)]
    assert client.post("/feedback/00000000-0000-0000-0000-000000000000", json={"label": label}).status_code == 404
    wrong = client.post(f"/feedback/{prediction['prediction_id']}", json={"label": "spaceship"})
    assert wrong.status_code == 422 and "not a class of the model" in wrong.json()["detail"]


@pytest.mark.parametrize(
    ("content", "status", "reason"),
    [
        (b"", 400, "empty upload"),
        (b"hello, I am text", 415, "not an image"),
        (png(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))[:400], 422, "corrupt or truncated"),
        (png(np.zeros((28, 28), np.uint16) + 900), 415, "bit depth"),
        (png(np.zeros((3000, 3000), np.uint8)), 413, "pixels"),
    ],
    ids=["empty", "text", "truncated", "16-bit", "too-many-pixels"],
)
def test_bad_input_gets_a_4xx_with_a_reason(client: TestClient, content: bytes, status: int, reason: str) -> None:
    client.app.state.settings.service.max_pixels = 1_000_000  # type: ignore[attr-defined]
    response = client.post("/predict", files=upload(content))
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    assert client.get("/health").status_code == 200


def test_oversized_upload_is_413(client: TestClient) -> None:
    client.app.state.settings.service.max_upload_bytes = 1000  # type: ignore[attr-defined]
    response = client.post("/predict", files=upload(png(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))))
    assert response.status_code == 413 and "limit is 1,000" in response.json()["detail"]


def test_a_batch_larger_in_total_than_the_request_limit_is_413(
    service_env: dict[str, str], sample_images: list[Path]
) -> None:
    image = sample_images[0].read_bytes()
    limits = settings_with(max_upload_bytes=len(image), max_request_bytes=3 * len(image))
    with TestClient(create_app(limits)) as client:
        within = client.post("/predict/batch", files=[("files", (f"{i}.png", image, "image/png")) for i in range(3)])
        assert within.status_code == 200 and len(within.json()["predictions"]) == 3
        over = client.post("/predict/batch", files=[("files", (f"{i}.png", image, "image/png")) for i in range(4)])
    assert over.status_code == 413 and f"the limit is {3 * len(image):,}" in over.json()["detail"]


def test_past_the_queue_bound_a_request_gets_503_with_retry_after(
    client: TestClient, sample_images: list[Path]
) -> None:
    client.app.state.service.batcher.max_queued = 0  # type: ignore[attr-defined]  (as if the queue were full)
    response = client.post("/predict", files=upload(sample_images[0].read_bytes()))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert "not yet answered (the limit is 0); retry shortly" in response.json()["detail"]
    text = client.get("/metrics").text
    assert 'dl_service_requests_total{endpoint="predict",status="503"} 1.0' in text


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_upload_bytes": 2000, "max_request_bytes": 1000}, "MAX_REQUEST_BYTES must be at least"),
        ({"max_batch_images": 64, "max_queued_images": 32}, "MAX_QUEUED_IMAGES must be at least"),
    ],
)
def test_limits_that_contradict_each_other_are_refused(limits: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceSettings(**limits)


def test_cmyk_jpeg_is_refused(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.new("CMYK", (28, 28), (0, 0, 0, 0)).save(buffer, format="JPEG")
    response = client.post("/predict", files=upload(buffer.getvalue(), "x.jpg"))
    assert response.status_code == 415 and "CMYK" in response.json()["detail"]


def test_admin_reload_needs_the_token_and_loads_the_new_pointer(client: TestClient, model_storage: Path) -> None:
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
    write_pointer(str(model_storage), MODEL_NAME, "2", "test", {})
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200 and response.json()["version"] == "2" and response.json()["changed"]
    assert client.get("/ready").json()["model_version"] == "2"


def point_at(storage: Path, version: str, **fields: str) -> None:
    """Write production.json by hand, as someone with write access to storage could."""
    path = storage / "models" / MODEL_NAME / "production.json"
    pointer = json.loads(path.read_text())
    path.write_text(json.dumps({**pointer, "version": version, "sums_sha256": None, **fields}))


def rewrite_sums(folder: Path, change: Callable[[str], str]) -> None:
    (folder / "SHA256SUMS").write_text(change((folder / "SHA256SUMS").read_text()))


def without_model_line(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if "model.keras" not in line)


def replace_model_and_its_line(folder: Path) -> None:
    """A different model whose SHA256SUMS line was rewritten to match: only the released digest can tell."""
    (folder / "model.keras").write_bytes((folder / "uae_encoder.keras").read_bytes())
    digest = hashlib.sha256((folder / "model.keras").read_bytes()).hexdigest()
    rewrite_sums(folder, lambda text: re.sub(r"^[0-9a-f]{64}(?=  model\.keras$)", digest, text, flags=re.M))


TAMPERING: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty-sums": (lambda folder: rewrite_sums(folder, lambda text: ""), "SHA256SUMS is empty"),
    "binary-mode-sums": (lambda folder: rewrite_sums(folder, lambda t: t.replace("  ", " *")), "is not '<sha256>"),
    "model-not-listed": (lambda folder: rewrite_sums(folder, without_model_line), "does not list model.keras"),
    "unlisted-file": (lambda folder: (folder / "loader.py").write_text("import os\n"), "does not cover loader.py"),
    "modified-model": (lambda folder: (folder / "model.keras").write_bytes(b"tampered"), "model.keras: sha256"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERING))
def test_tampered_version_is_refused_and_current_model_kept(
    client: TestClient, model_storage: Path, tamper: str, caplog: pytest.LogCaptureFixture
) -> None:
    change, reason = TAMPERING[tamper]
    write_pointer(str(model_storage), MODEL_NAME, "2", "test", {})
    change(model_storage / "models" / MODEL_NAME / "2")
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 409 and reason in response.json()["detail"], response.json()
    assert client.get("/ready").json()["model_version"] == "1"
    assert any(reason in record.getMessage() for record in caplog.records)  # and the operator is told


@pytest.mark.parametrize(
    ("version", "fields", "reason"),
    [
        ("../../../tmp", {}, "not a valid production pointer"),
        ("../2", {}, "not a valid production pointer"),
        ("/etc", {}, "not a valid production pointer"),
        ("2", {"name": "other-model"}, "names model 'other-model'"),
    ],
)
def test_a_pointer_outside_storage_or_for_another_model_is_refused(
    client: TestClient, model_storage: Path, version: str, fields: dict[str, str], reason: str
) -> None:
    point_at(model_storage, version, **fields)
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 409 and reason in response.json()["detail"]
    assert client.get("/ready").json()["model_version"] == "1"


def test_a_version_changed_after_its_release_is_refused(client: TestClient, model_storage: Path) -> None:
    write_pointer(str(model_storage), MODEL_NAME, "2", "test", {})
    replace_model_and_its_line(model_storage / "models" / MODEL_NAME / "2")
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 409 and "recorded when it was released" in response.json()["detail"]
    assert client.get("/ready").json()["model_version"] == "1"


def test_service_follows_the_pointer_without_a_request(service_env: dict[str, str], model_storage: Path) -> None:
    with TestClient(create_app(settings_with(pointer_poll_seconds=0.2))) as client:
        write_pointer(str(model_storage), MODEL_NAME, "2", "test", {})
        wait_until(
            lambda: client.get("/ready").json()["model_version"] == "2", "the watcher did not load version 2", 10
        )


def test_no_model_means_503_with_a_reason(
    service_env: dict[str, str], tmp_path: Path, sample_images: list[Path]
) -> None:
    settings = Settings(storage_url=str(tmp_path / "empty-storage"))
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "no production model" in ready.json()["detail"]
        response = client.post("/predict", files=upload(sample_images[0].read_bytes()))
        assert response.status_code == 503 and "run the deploy flow" in response.json()["detail"]


def test_metrics_count_requests_and_served_version(client: TestClient, sample_images: list[Path]) -> None:
    label = client.post("/predict", files=upload(sample_images[0].read_bytes())).json()["label"]
    batch = client.post(
        "/predict/batch", files=[("files", ("a.png", p.read_bytes(), "image/png")) for p in sample_images[:3]]
    )
    assert batch.status_code == 200, batch.text
    text = client.get("/metrics").text
    assert 'dl_service_requests_total{endpoint="predict",status="200"} 1.0' in text
    counted = re.findall(r'dl_service_predictions_total\{model_version="1",predicted_class="([^"]+)"\} (\S+)', text)
    assert sum(float(count) for _, count in counted) == 4.0 and label in dict(counted)
    # Images per model call: the lone image, then the three of the batch request in one call.
    assert "dl_service_batch_size_count 2.0" in text and "dl_service_batch_size_sum 4.0" in text
    # Where the two batches spent their time off the event loop: the model call, then the log's commit.
    for stage in ("inference", "log"):
        assert f'dl_service_batch_stage_seconds_count{{stage="{stage}"}} 2.0' in text
        spent = re.search(rf'dl_service_batch_stage_seconds_sum\{{stage="{stage}"\}} (\S+)', text)
        assert spent is not None and 0 < float(spent.group(1)) < 60
    assert f'dl_service_model_version{{model="{MODEL_NAME}",version="1"}} 1.0' in text


@pytest.mark.parametrize("token", ["", "changeme", "a-31-character-token-xxxxxxxxxx"])
def test_production_mode_refuses_a_placeholder_or_short_token(token: str) -> None:
    with pytest.raises(ValueError, match="ADMIN_TOKEN must be a random secret of at least 32 characters"):
        Settings(service=ServiceSettings(mode="production", admin_token=token))
    Settings(service=ServiceSettings(mode="development", admin_token=token))  # the embedded mode takes any


def test_production_mode_takes_a_long_random_token() -> None:
    token = "x7Qk2-Lm9pZr4VtB8nWc3YfH6sJd1GaE0uKo"
    verify_key = public_key_text(generate_private_key().public_key())  # production also needs one
    service = ServiceSettings(mode="production", admin_token=token, model_verify_key=verify_key)
    assert Settings(service=service).service.admin_token == token


def test_web_page_and_openapi_docs_are_served(client: TestClient) -> None:
    assert "Heat map opacity" in client.get("/").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/explain", "/feedback/{prediction_id}"} <= set(paths)


def test_uploads_are_kept_by_hash_in_central_storage_when_configured(
    service_env: dict[str, str], sample_images: list[Path], model_storage: Path
) -> None:
    image = sample_images[0].read_bytes()
    with TestClient(create_app(settings_with(store_images=True))) as client:
        first = client.post("/predict", files=upload(image)).json()
        second = client.post("/predict", files=upload(image)).json()
    digest = hashlib.sha256(image).hexdigest()
    stored = model_storage / "images" / digest[:2] / digest
    assert stored.read_bytes() == image  # the exact upload, once, under its content hash
    rows = dict(db_rows(service_env, "SELECT id, image_uri FROM predictions"))
    assert rows[first["prediction_id"]] == rows[second["prediction_id"]] == str(stored)
    assert "image" not in {c[1] for c in db_rows(service_env, "PRAGMA table_info(predictions)")}  # no blobs


def test_uploads_are_not_kept_by_default(
    service_env: dict[str, str], sample_images: list[Path], model_storage: Path
) -> None:
    with TestClient(create_app(Settings())) as client:
        body = client.post("/predict", files=upload(sample_images[0].read_bytes())).json()
    assert not (model_storage / "images").exists()
    assert db_rows(service_env, f"SELECT image_uri FROM predictions WHERE id = '{body['prediction_id']}'") == [(None,)]


@pytest.mark.parametrize(
    ("settings", "threads"),
    [
        ({}, "0 0"),  # one worker: TensorFlow's own default (every core)
        ({"MLOPS_SERVICE_WORKERS": "2"}, f"{max(1, (os.cpu_count() or 1) // 2)} {max(1, (os.cpu_count() or 1) // 2)}"),
        ({"MLOPS_SERVICE_WORKERS": "2", "MLOPS_SERVICE_INFERENCE_THREADS": "3"}, "3 3"),
    ],
)
def test_worker_processes_share_the_cores_among_their_tensorflow_threads(
    settings: dict[str, str], threads: str, tmp_path: Path
) -> None:
    """Each worker process, as it starts, gives TensorFlow its share of the machine's cores."""
    script = (
        "import tensorflow as tf\n"
        "from services.dl_service.app import create_app\n"
        "create_app()\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads())\n"
    )
    env = {**os.environ, "MLOPS_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3", **settings}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == threads


def form(boundary: bytes, parts: list[tuple[bytes, bytes]], preamble: bytes = b"") -> bytes:
    """A multipart body written by hand: each part is (its header lines, its content)."""
    body = preamble
    for headers, content in parts:
        body += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


def file_part(content: bytes, extra: bytes = b"\r\nContent-Type: image/png", name: bytes = b"file") -> tuple:
    return (b'Content-Disposition: form-data; name="' + name + b'"; filename="shirt.png"' + extra, content)


FORMS: dict[str, tuple[Callable[[bytes], bytes], str, bool]] = {
    # name: (body from the image, Content-Type, read by the two-search path)
    "as curl -F sends it": (lambda image: form(b"xYz1", [file_part(image)]), "boundary=xYz1", True),
    "no part Content-Type": (lambda image: form(b"b", [file_part(image, b"")]), "boundary=b", True),
    "quoted boundary": (lambda image: form(b"a b", [file_part(image)]), 'boundary="a b"', True),
    "header names in capitals": (
        lambda image: form(b"q", [(b'CONTENT-DISPOSITION: form-data; name=file; filename="x"', image)]),
        "boundary=q",
        True,
    ),
    "a field before the file": (
        lambda image: form(b"f", [(b'Content-Disposition: form-data; name="note"', b"hi"), file_part(image)]),
        "boundary=f",
        False,
    ),
}


def starlette_request(body: bytes, content_type: str, declared: bool = True) -> Request:
    headers = [(b"content-type", content_type.encode())]
    if declared:
        headers.append((b"content-length", str(len(body)).encode()))

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/predict", "headers": headers}, receive)


@pytest.mark.parametrize("name", list(FORMS))
def test_every_form_carrying_one_image_is_read_as_its_raw_body_would_be(
    client: TestClient, sample_images: list[Path], name: str
) -> None:
    image = sample_images[0].read_bytes()
    make, boundary, plain = FORMS[name]
    body, content_type = make(image), f"multipart/form-data; {boundary}"
    read = asyncio.run(plain_form_file(starlette_request(body, content_type), 10 * 1024 * 1024))
    assert read == (image if plain else None)  # the two-search path, or the general parser for the rest
    response = client.post("/predict", content=body, headers={"Content-Type": content_type})
    raw = client.post("/predict", content=image, headers={"Content-Type": "image/png"})
    assert response.status_code == raw.status_code == 200, response.text
    assert response.json()["probabilities"] == raw.json()["probabilities"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (form(b"t", [file_part(b"\x89PNG-one"), file_part(b"\x89PNG-two")]), 400, "Too many files"),
        (form(b"n", [(b'Content-Disposition: form-data; name="file"', b"not a file")]), 422, "no 'file' field"),
        (form(b"p", [file_part(b"\x89PNG")], b"ignore me\r\n"), 400, "Invalid multipart data"),
    ],
    ids=["two-files", "file-without-filename", "preamble"],
)
def test_a_form_the_two_searches_decline_gets_the_general_parsers_answer(
    client: TestClient, body: bytes, status: int, reason: str
) -> None:
    client.app.state.settings.service.max_upload_bytes = 1000  # type: ignore[attr-defined]
    content_type = f"multipart/form-data; boundary={body[2:3].decode()}"
    assert asyncio.run(plain_form_file(starlette_request(body, content_type), 1000)) is None
    response = client.post("/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status and reason in response.json()["detail"], response.text


def test_a_form_without_a_declared_length_goes_to_the_general_parser() -> None:
    body = form(b"c", [file_part(b"\x89PNG")])
    request = starlette_request(body, "multipart/form-data; boundary=c", declared=False)
    assert asyncio.run(plain_form_file(request, 1000)) is None


@pytest.mark.parametrize("size", [2_000, 100_000])  # within the form framing allowed for, and beyond it
def test_an_oversized_image_in_a_form_is_refused_with_the_limit(client: TestClient, size: int) -> None:
    client.app.state.settings.service.max_upload_bytes = 1000  # type: ignore[attr-defined]
    body = form(b"o", [file_part(b"\x89PNG" + bytes(size))])
    response = client.post("/predict", content=body, headers={"Content-Type": "multipart/form-data; boundary=o"})
    assert response.status_code == 413 and "the limit is 1,000" in response.json()["detail"], response.text
