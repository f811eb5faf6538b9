"""The app factory: settings in, a FastAPI app out; everything heavy happens in the lifespan.

uvicorn --factory services.dl_service.app:create_app --host 127.0.0.1 --port 4242
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.concurrency import run_in_threadpool

from services.dl_service import api_docs, review
from services.dl_service.api import router
from services.dl_service.batching import MicroBatcher
from services.dl_service.metrics import ServiceMetrics
from services.dl_service.model import ModelManager, limit_inference_threads, share_cores
from services.dl_service.service import PredictionService
from services.dl_service.shadow import ShadowRunner
from services.dl_service.store import PredictionLog
from tasks.core.errors import IntegrityError
from tasks.core.review_queue import ReviewQueue
from tasks.core.settings import Settings, get_settings
from tasks.core.signing import load_public_key

logger = logging.getLogger(__name__)

# The service exports Prometheus metrics itself. FastAPI's built-in OpenTelemetry hooks would
# otherwise look up providers in os.environ on every request: about 8% of the request path.
NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    config = settings.service
    limit_inference_threads(share_cores(config.inference_threads, config.workers))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = ServiceMetrics()
        manager = ModelManager(
            settings.central_storage_url,
            config.model_name,
            settings.cache_dir,
            on_change=lambda before, after: metrics.served_version_changed(config.model_name, before, after),
            verify_key=load_public_key(config.model_verify_key) if config.model_verify_key.strip() else None,
            on_shadow_change=lambda before, after: metrics.shadow_version_changed(config.model_name, before, after),
        )
        log = PredictionLog(
            settings.prediction_database_url, settings.spool_dir, config.log_flush_seconds, config.spool_stale_seconds
        )
        log.start()
        batcher = MicroBatcher(manager, config.batch_size, config.batch_wait_ms / 1000, config.max_queued_images)
        service = PredictionService(config, settings.central_storage_url, manager, batcher, log, metrics)
        batcher.record = service.record_batch  # each micro-batch is logged before any of it is answered
        batcher.timed = lambda stage, seconds: metrics.batch_stage.labels(stage).observe(seconds)
        shadow = ShadowRunner(log, metrics) if config.log_predictions else None  # its output is only ever logged
        batcher.shadow = shadow
        batcher.start()
        app.state.settings, app.state.manager, app.state.metrics, app.state.service = (
            settings,
            manager,
            metrics,
            service,
        )
        app.state.review_queue = ReviewQueue(log.engine, create_tables=False)  # the log creates them
        await _refresh(manager)
        _freeze_startup_objects()
        watcher = asyncio.get_running_loop().create_task(_watch_pointer(manager, config.pointer_poll_seconds))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await batcher.stop()
            try:
                if shadow is not None:
                    await run_in_threadpool(shadow.close)
            finally:
                service.close()
                await run_in_threadpool(log.close)

    app = FastAPI(
        title="dl_service",
        description="Image classification with Grad-CAM explanations, a durable prediction log and feedback.",
        version="1.0",
        lifespan=lifespan,
        telemetry=NO_OPENTELEMETRY,
        docs_url=None,  # FastAPI's pages load from a CDN; api_docs serves /docs from here
        redoc_url=None,
    )
    app.include_router(router)
    app.include_router(api_docs.router)
    app.include_router(review.router)
    return app


def _freeze_startup_objects() -> None:
    """Move the million objects TensorFlow and Keras create at import out of the collector's sight.

    Without this every full collection walks them all, stalling the event loop for a quarter of
    a second and stretching p99 latency under load (CPython's documented remedy, gc.freeze).
    """
    gc.collect()
    gc.freeze()


async def _refresh(manager: ModelManager) -> None:
    """Load the pointer's version if it changed; a failure keeps the current model serving."""
    try:
        await run_in_threadpool(manager.refresh)
    except IntegrityError:
        pass  # logged by the manager; the current model keeps serving
    except Exception:
        logger.exception("Could not check the production pointer")


async def _watch_pointer(manager: ModelManager, interval: float) -> None:
    """Every worker and replica converges on the pointer's version, reload request or not."""
    while True:
        await asyncio.sleep(interval)
        await _refresh(manager)
