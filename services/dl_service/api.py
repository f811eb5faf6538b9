"""HTTP routes: thin, each turning the service's errors into the status code HTTP means."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, File, Header, HTTPException, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from services.dl_service import schemas
from services.dl_service.batching import Overloaded
from services.dl_service.images import ImageRejected
from services.dl_service.model import ModelManager, ModelUnavailable
from services.dl_service.service import PredictionService, UnknownLabel
from services.dl_service.store import LogUnavailable, StoreUnavailable, UnknownPrediction
from services.dl_service.uploads import PREDICT_REQUEST, read_image_upload
from tasks.core.errors import IntegrityError
from tasks.core.settings import Settings

STATIC = Path(__file__).resolve().parent / "static"
T = TypeVar("T")

router = APIRouter()


# Dependencies are async on purpose: FastAPI runs a plain `def` dependency in a worker thread,
# a thread hop per request that cost more than all of the image checks.
async def get_service(request: Request) -> PredictionService:
    return request.app.state.service


async def get_manager(request: Request) -> ModelManager:
    return request.app.state.manager


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


ServiceDep = Annotated[PredictionService, Depends(get_service)]
ManagerDep = Annotated[ModelManager, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RequestId = Annotated[str | None, Header(alias="X-Request-ID")]
ImageFile = Annotated[UploadFile, File(description="the image: PNG, JPEG, GIF or BMP")]
ImageFiles = Annotated[list[UploadFile], File(description="the images: PNG, JPEG, GIF or BMP")]


async def _measured(request: Request, endpoint: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run a handler, turning known errors into HTTP statuses and counting the outcome."""
    metrics = request.app.state.metrics
    started, status = time.perf_counter(), 200
    try:
        return await call()
    except ImageRejected as error:
        status = error.status_code
        raise HTTPException(error.status_code, error.reason) from None
    except (ModelUnavailable, StoreUnavailable, LogUnavailable) as error:
        status = 503
        raise HTTPException(503, str(error), headers={"Retry-After": "5"}) from None
    except Overloaded as error:
        status = 503
        raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from None
    except UnknownPrediction as error:
        status = 404
        raise HTTPException(404, str(error)) from None
    except UnknownLabel as error:
        status = 422
        raise HTTPException(422, str(error)) from None
    except Exception:
        status = 500  # counted as what the client gets
        raise
    finally:
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


async def _read(upload: UploadFile, limit: int) -> bytes:
    """Read at most limit + 1 bytes, so an oversized upload is refused without holding it all."""
    return await upload.read(limit + 1)


@router.post("/predict", response_model=schemas.Prediction, tags=["predictions"], openapi_extra=PREDICT_REQUEST)
async def predict(request: Request) -> Response:
    """Classify one image (PNG, JPEG, GIF or BMP): a multipart upload, or the image as the body."""
    # The hot path reads what it needs itself: FastAPI's dependency solving cost more per request than
    # the service's own image checks (BENCHMARKS.md); PREDICT_REQUEST documents the same parameters.
    service: PredictionService = request.app.state.service
    request_id = request.headers.get("x-request-id")

    async def call() -> list[dict[str, Any]]:
        return await service.predict([await read_image_upload(request, service.config.max_upload_bytes)], request_id)

    answer = (await _measured(request, "predict", call))[0]
    return _json(answer, [answer])


@router.post("/predict/batch", response_model=schemas.BatchPrediction, tags=["predictions"])
async def predict_batch(
    request: Request, service: ServiceDep, files: ImageFiles, x_request_id: RequestId = None
) -> Response:
    """Classify several images in one request; any bad image refuses the request, naming it."""
    config = service.config
    if len(files) > config.max_batch_images:
        raise HTTPException(413, f"{len(files)} images in one request; the limit is {config.max_batch_images}")
    contents: list[bytes] = []
    total = 0
    for upload in files:  # read one at a time, so the total is refused before it is all in memory
        contents.append(await _read(upload, config.max_upload_bytes))
        total += len(contents[-1])
        if total > config.max_request_bytes:
            raise HTTPException(
                413, f"the images total {total:,} bytes or more; the limit is {config.max_request_bytes:,}"
            )

    async def call() -> list[dict[str, Any]]:
        try:
            return await service.predict(contents, x_request_id)
        except ImageRejected as error:
            index = error.index or 0
            raise ImageRejected(error.status_code, f"file {index} ({files[index].filename}): {error.reason}") from None

    answers = await _measured(request, "predict_batch", call)
    return _json({"predictions": answers}, answers)


@router.post("/explain", response_model=schemas.Explanation, tags=["predictions"])
async def explain(
    request: Request, response: Response, service: ServiceDep, file: ImageFile, x_request_id: RequestId = None
) -> schemas.Explanation:
    """Classify one image and show, with Grad-CAM, which regions drove the decision."""
    content = await _read(file, service.config.max_upload_bytes)
    answer = await _measured(request, "explain", lambda: service.explain(content, x_request_id))
    response.headers.update(_version_headers([answer.model_dump(include={"model_name", "model_version"})]))
    return answer


def _json(body: dict[str, Any], answers: list[dict[str, Any]]) -> Response:
    """Answers the service built (``schemas.Prediction`` bodies), serialised as they are: validating
    what the service just made would cost more than the rest of the route (BENCHMARKS.md)."""
    return Response(to_json(body), media_type="application/json", headers=_version_headers(answers))


def _version_headers(answers: list[dict[str, Any]]) -> dict[str, str]:
    """X-Model-Name and X-Model-Version: which model answered, readable without parsing the body (a hot
    reload between the micro-batches of one request lists each version, in order)."""
    if not answers:
        return {}
    versions = ",".join(dict.fromkeys(answer["model_version"] for answer in answers))
    return {"X-Model-Name": answers[0]["model_name"], "X-Model-Version": versions}


@router.post("/feedback/{prediction_id}", response_model=schemas.FeedbackOut, status_code=201, tags=["feedback"])
async def feedback(
    request: Request, prediction_id: str, body: schemas.FeedbackIn, service: ServiceDep
) -> schemas.FeedbackOut:
    """Record the true label of an earlier prediction (used by monitoring for live accuracy)."""

    async def call() -> schemas.FeedbackOut:
        return await run_in_threadpool(service.feedback, prediction_id, body.label)

    return await _measured(request, "feedback", call)


@router.post("/admin/reload", response_model=schemas.ReloadOut, tags=["admin"])
async def reload_model(
    manager: ManagerDep, settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> schemas.ReloadOut:
    """Load the version the production pointer names now (also done by polling the pointer)."""
    _require_admin(settings, authorization)
    try:
        result = await run_in_threadpool(manager.refresh)
    except IntegrityError as error:
        raise HTTPException(409, f"refused, the current model is kept: {error}") from None
    return schemas.ReloadOut(
        version=result.version, changed=result.changed, detail=result.detail, shadow_version=manager.shadow_version
    )


def _require_admin(settings: Settings, authorization: str | None) -> None:
    token_wanted = settings.service.admin_token
    if not token_wanted:
        raise HTTPException(403, "admin routes are disabled: set MLOPS_SERVICE_ADMIN_TOKEN")
    if not bearer_matches(authorization, token_wanted):
        raise HTTPException(401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"})


def bearer_matches(authorization: str | None, token_wanted: str) -> bool:
    """``Authorization: Bearer <token>`` with this token, compared in constant time."""
    scheme, _, token = (authorization or "").partition(" ")
    return hmac.compare_digest(token.encode(), token_wanted.encode()) and scheme.lower() == "bearer"


@router.get("/health", tags=["operations"])
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", response_model=schemas.Readiness, tags=["operations"])
async def ready(manager: ManagerDep, settings: SettingsDep) -> JSONResponse:
    """Readiness: 200 once a model is loaded, 503 with the reason until then."""
    loaded = manager.loaded
    body = schemas.Readiness(
        ready=loaded,
        model_name=settings.service.model_name,
        model_version=manager.current.version if loaded else None,
        detail="serving" if loaded else manager.unavailable_reason,
        shadow_version=manager.shadow_version,
    )
    return JSONResponse(body.model_dump(), status_code=200 if loaded else 503)


@router.get("/metrics", tags=["operations"], include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state
    state.metrics.spooled_rows.set(state.service.log.pending_spool_rows())
    state.metrics.rejected_rows.set(state.service.log.rejected_rows())
    payload, content_type = state.metrics.exposition()
    return Response(payload, media_type=content_type)


# The page runs its own script and style only: no inline code, nothing from another origin (it
# must work on an isolated network anyway), never framed; images are the service's base64 PNGs.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PAGE_ASSETS = {"index.js": "text/javascript", "index.css": "text/css", "review.js": "text/javascript"}


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/static/{name}", include_in_schema=False)
async def page_asset(name: str) -> FileResponse:
    if name not in PAGE_ASSETS:
        raise HTTPException(404, f"no page asset {name!r}")
    return FileResponse(STATIC / name, media_type=PAGE_ASSETS[name], headers=PAGE_HEADERS)
