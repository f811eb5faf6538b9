"""What the routes call: check, preprocess, batch, predict, explain, log. No HTTP in here."""

from __future__ import annotations

import base64
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import fsspec
import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from services.dl_service import schemas
from services.dl_service.batching import BatchOutput, MicroBatcher
from services.dl_service.images import CheckedImage, ImageRejected, check_image
from services.dl_service.metrics import ServiceMetrics
from services.dl_service.model import ModelManager, ServedModel
from services.dl_service.store import PredictionLog, new_prediction_id, utc_now
from tasks.core.settings import ServiceSettings

logger = logging.getLogger(__name__)

DISPLAY_SIZE = 224
INLINE_CHECK_BYTES = 64 * 1024  # about 0.2 ms of checking: cheaper than a thread hop


class UnknownLabel(ValueError):
    """Feedback names a class the model does not have."""


class PredictionService:
    def __init__(
        self,
        config: ServiceSettings,
        storage_url: str,
        manager: ModelManager,
        batcher: MicroBatcher,
        log: PredictionLog,
        metrics: ServiceMetrics,
    ) -> None:
        self.config, self.storage_url = config, storage_url
        self.manager, self.batcher, self.log, self.metrics = manager, batcher, log, metrics
        self._image_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-store")

    def close(self) -> None:
        self._image_writer.shutdown(wait=True)

    def check_all(self, contents: list[bytes]) -> list[CheckedImage]:
        """Refuse bad input with a reason (naming which image); measure the rest (properties, content hash)."""
        checked = []
        for index, content in enumerate(contents):
            try:
                checked.append(check_image(content, self.config.max_upload_bytes, self.config.max_pixels))
            except ImageRejected as error:
                raise error.at(index) from None
        return checked

    async def _checked(self, contents: list[bytes]) -> list[CheckedImage]:
        """Small uploads are checked on the event loop (a thread hop costs more); large ones off it."""
        if sum(len(c) for c in contents) <= INLINE_CHECK_BYTES:
            return self.check_all(contents)
        return await run_in_threadpool(self.check_all, contents)

    async def predict(self, contents: list[bytes], request_id: str | None) -> list[schemas.Prediction]:
        started = time.perf_counter()
        checked = await self._checked(contents)
        outputs = await self.batcher.submit(contents)
        latency_ms = (time.perf_counter() - started) * 1000
        return [self._record(c, o, latency_ms, request_id) for c, o in zip(checked, outputs, strict=True)]

    async def explain(self, content: bytes, request_id: str | None) -> schemas.Explanation:
        started = time.perf_counter()
        checked = (await self._checked([content]))[0]
        output = (await self.batcher.submit([content]))[0]
        heatmap, overlay, view = await run_in_threadpool(explain_as_pngs, output.model, content)
        prediction = self._record(checked, output, (time.perf_counter() - started) * 1000, request_id)
        return schemas.Explanation(**prediction.model_dump(), heatmap_png=heatmap, overlay_png=overlay, image_png=view)

    def feedback(self, prediction_id: str, label: str) -> schemas.FeedbackOut:
        names = self.manager.current.class_names if self.manager.loaded else []
        if names and label not in names:
            raise UnknownLabel(f"label {label!r} is not a class of the model; one of: {', '.join(names)}")
        row = self.log.add_feedback(prediction_id, label)
        return schemas.FeedbackOut(prediction_id=prediction_id, label=label, recorded_at=row["created_at"].isoformat())

    def _record(
        self, checked: CheckedImage, output: BatchOutput, latency_ms: float, request_id: str | None
    ) -> schemas.Prediction:
        model, probabilities = output.model, output.probabilities
        index = int(probabilities.argmax())
        prediction_id = new_prediction_id()
        if self.config.log_predictions:
            self._log(prediction_id, index, checked, output, latency_ms, request_id)
        self.metrics.predictions.labels(model.version, model.class_names[index]).inc()
        self.metrics.batch_size.observe(output.batch_size)
        return _prediction(prediction_id, model, probabilities, latency_ms, self.config.top_k)

    def _log(
        self,
        prediction_id: str,
        index: int,
        checked: CheckedImage,
        output: BatchOutput,
        latency_ms: float,
        request_id: str | None,
    ) -> None:
        model, probabilities = output.model, output.probabilities
        self.log.record(
            {
                "id": prediction_id,
                "created_at": utc_now(),
                "model_name": model.name,
                "model_version": model.version,
                "predicted_label": model.class_names[index],
                "confidence": float(probabilities[index]),
                "probabilities": _rounded(probabilities),
                "uae": _rounded(output.features),
                **checked.properties,
                "sha256": checked.sha256,
                "latency_ms": latency_ms,
                "request_id": request_id,
                "image_uri": self._store_image(checked),
            }
        )

    def _store_image(self, checked: CheckedImage) -> str | None:
        """Keep the upload by content hash in central storage when configured; never on the request path."""
        if not self.config.store_images:
            return None
        uri = f"{self.storage_url.rstrip('/')}/images/{checked.sha256[:2]}/{checked.sha256}"
        self._image_writer.submit(_write_once, uri, checked.content)
        return uri


def _write_once(uri: str, content: bytes) -> None:
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        if not fs.exists(path):
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            fs.pipe_file(path, content)
    except OSError:
        logger.exception("Could not store image %s", uri)


def _rounded(values: np.ndarray) -> list[float]:
    return list(np.round(values.astype(np.float64), 7).tolist())


def _prediction(
    prediction_id: str, model: ServedModel, probabilities: np.ndarray, latency_ms: float, top_k: int
) -> schemas.Prediction:
    names = model.class_names
    order = np.argsort(-probabilities)[:top_k]
    return schemas.Prediction(
        prediction_id=prediction_id,
        model_name=model.name,
        model_version=model.version,
        label=names[int(order[0])],
        confidence=float(probabilities[order[0]]),
        top_k=[schemas.ClassProbability(label=names[int(i)], probability=float(probabilities[i])) for i in order],
        probabilities={name: float(p) for name, p in zip(names, probabilities, strict=True)},
        latency_ms=round(latency_ms, 3),
    )


def explain_as_pngs(model: ServedModel, content: bytes) -> tuple[str, str, str]:
    """Grad-CAM of the model that predicted, on the image as the model saw it, rendered: one thread hop."""
    pixels = model.preprocess(content)
    return render_explanation(pixels, model.explain(pixels))


def render_explanation(pixels: np.ndarray, heatmap: np.ndarray) -> tuple[str, str, str]:
    """Colour heat map (alpha follows heat), overlay and the model's view, as base64 PNGs."""
    size = (max(DISPLAY_SIZE, pixels.shape[1]), max(DISPLAY_SIZE, pixels.shape[0]))
    view = cv2.resize(pixels, size, interpolation=cv2.INTER_NEAREST)
    heat = cv2.resize(heatmap.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap((255 * heat).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    rgba = np.dstack([colour, (255 * np.clip(heat * 1.2, 0, 1)).astype(np.uint8)])
    overlay = (0.55 * view + 0.45 * colour).astype(np.uint8)
    return _png(rgba), _png(overlay), _png(view)


def _png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
