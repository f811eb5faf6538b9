"""What the routes call: check, preprocess, batch, predict, explain, log. No HTTP in here."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import cv2
import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from services.dl_service import schemas
from services.dl_service.batching import BatchOutput, MicroBatcher, Outcome, Submitted
from services.dl_service.images import CheckedImage, ImageRejected, Opened, decode_checked, open_checked
from services.dl_service.metrics import ServiceMetrics
from services.dl_service.model import ModelManager, ServedModel
from services.dl_service.store import LogUnavailable, PredictionLog, utc_now
from tasks.core.preprocessing import InputSpec
from tasks.core.review_queue import is_uncertain
from tasks.core.settings import ServiceSettings
from tasks.core.storage import image_url, write_image_once

logger = logging.getLogger(__name__)

DISPLAY_SIZE = 224
# What is checked on the event loop, where a thread hop would cost more than the work: headers of
# uploads this small, and decoding when the headers say the pixels are this few (about 0.1 ms).
INLINE_CHECK_BYTES = 64 * 1024
INLINE_DECODE_PIXELS = 128 * 128
MAX_UNWRITTEN_IMAGES = 1024  # images waiting to be written to central storage; beyond, not kept


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
        self._unwritten, self._unwritten_lock = 0, threading.Lock()  # images handed to the writer, not yet written
        # Large images decode here, a few at a time: their memory is bounded by the pool's size.
        self._decoder = ThreadPoolExecutor(max_workers=config.decode_threads, thread_name_prefix="decode")

    def close(self) -> None:
        self._image_writer.shutdown(wait=True)
        self._decoder.shutdown(wait=True)

    def check_all(self, contents: list[bytes], spec: InputSpec | None) -> list[CheckedImage]:
        """Refuse bad input with a reason (naming which image); decode and measure the rest, one at a time."""
        return self._decode_all(contents, self._open_all(contents), spec)

    def _open_all(self, contents: list[bytes]) -> list[Opened]:
        """Headers only: limits are checked before any pixel is decoded."""
        opened = []
        for index, content in enumerate(contents):
            with _naming(index):
                opened.append(open_checked(content, self.config.max_upload_bytes, self.config.max_pixels))
        return opened

    def _decode_all(self, contents: list[bytes], opened: list[Opened], spec: InputSpec | None) -> list[CheckedImage]:
        checked = []
        for index, (content, image) in enumerate(zip(contents, opened, strict=True)):
            with _naming(index):
                checked.append(decode_checked(content, image, spec))
        return checked

    async def _checked(self, contents: list[bytes]) -> list[CheckedImage]:
        """Check on the event loop what is cheap by its header; decode anything larger in the decode pool."""
        spec = self.manager.current.input_spec if self.manager.loaded else None
        loop = asyncio.get_running_loop()
        if sum(len(content) for content in contents) > INLINE_CHECK_BYTES:
            return await loop.run_in_executor(self._decoder, self.check_all, contents, spec)
        opened = self._open_all(contents)
        if sum(image.width * image.height for image in opened) <= INLINE_DECODE_PIXELS:
            return self._decode_all(contents, opened, spec)
        return await loop.run_in_executor(self._decoder, self._decode_all, contents, opened, spec)

    async def predict(self, contents: list[bytes], request_id: str | None) -> list[dict[str, Any]]:
        """The answers, as ``schemas.Prediction`` bodies: built as plain data, without validating what this
        code just made (the hot path; the API serialises them as they are)."""
        started = time.perf_counter()
        checked = await self._checked(contents)
        outputs = await self.batcher.submit(checked, request_id, started)
        latency_ms = (time.perf_counter() - started) * 1000
        return [prediction_body(output, latency_ms, self.config.top_k) for output in outputs]

    async def explain(self, content: bytes, request_id: str | None) -> schemas.Explanation:
        started = time.perf_counter()
        checked = (await self._checked([content]))[0]
        output = (await self.batcher.submit([checked], request_id, started))[0]
        heatmap, overlay, view = await run_in_threadpool(explain_as_pngs, output.model, checked)
        prediction = prediction_body(output, (time.perf_counter() - started) * 1000, self.config.top_k)
        return schemas.Explanation(**prediction, heatmap_png=heatmap, overlay_png=overlay, image_png=view)

    def feedback(self, prediction_id: str, label: str) -> schemas.FeedbackOut:
        names = self.manager.current.class_names if self.manager.loaded else []
        if names and label not in names:
            raise UnknownLabel(f"label {label!r} is not a class of the model; one of: {', '.join(names)}")
        row = self.log.add_feedback(prediction_id, label)
        return schemas.FeedbackOut(prediction_id=prediction_id, label=label, recorded_at=row["created_at"].isoformat())

    def record_batch(self, submitted: list[Submitted], outcomes: list[Outcome]) -> list[Outcome]:
        """The micro-batch's group commit, in the batcher's record thread, before any of its requests is answered:
        a prediction the log cannot keep (a full disk) is answered 503 instead. What is answered is counted
        here too, once per batch rather than once per request on the event loop."""
        if not self.config.log_predictions:
            self._count(outcomes)
            return outcomes
        started = time.perf_counter()
        answered = self._log_batch(submitted, outcomes)
        self.metrics.batch_stage.labels("log").observe(time.perf_counter() - started)
        self._count(answered)
        return answered

    def _count(self, outcomes: list[Outcome]) -> None:
        outputs = [outcome for outcome in outcomes if isinstance(outcome, BatchOutput)]
        predicted = Counter((o.model.version, o.model.class_names[int(o.probabilities.argmax())]) for o in outputs)
        for (version, label), count in predicted.items():
            self.metrics.predictions.labels(version, label).inc(count)
        # Images per model call: a batch the model failed on was split, into calls of their own sizes.
        for size, images in Counter(output.batch_size for output in outputs).items():
            for _ in range(-(-images // size)):
                self.metrics.batch_size.observe(size)

    def _log_batch(self, submitted: list[Submitted], outcomes: list[Outcome]) -> list[Outcome]:
        now, ended = utc_now(), time.perf_counter()
        rows = [
            self._row(item, outcome, (ended - item.started) * 1000, now)
            for item, outcome in zip(submitted, outcomes, strict=True)
            if isinstance(outcome, BatchOutput)
        ]
        try:
            self.log.write(rows)
        except LogUnavailable as error:
            self.metrics.unlogged.inc(len(rows))
            return [error if isinstance(outcome, BatchOutput) else outcome for outcome in outcomes]
        return outcomes

    def _row(self, item: Submitted, output: BatchOutput, latency_ms: float, now: datetime) -> dict[str, Any]:
        model, probabilities, image = output.model, output.probabilities, item.image
        index = int(probabilities.argmax())
        return {
            "id": output.prediction_id,
            "created_at": now,
            "model_name": model.name,
            "model_version": model.version,
            "predicted_label": model.class_names[index],
            "confidence": float(probabilities[index]),
            "probabilities": _rounded(probabilities),
            "uae": _rounded(output.features),
            **output.trust,
            **image.properties,
            "sha256": image.sha256,
            "latency_ms": latency_ms,
            "request_id": item.request_id,
            "image_uri": self._store_image(image) if self._keep_image(output) else None,
        }

    def _keep_image(self, output: BatchOutput) -> bool:
        """Every image when ``store_images``; else, when reviewers are configured, those the review queue
        may want: a random share, and every uncertain prediction (tasks/core/review_queue.py ranks them).
        Past ``MAX_UNWRITTEN_IMAGES`` waiting for the writer (a slow store, a flood of uncertain
        predictions under drift) an image is not kept rather than held in memory."""
        config = self.config
        if self._unwritten >= MAX_UNWRITTEN_IMAGES:
            self.metrics.images_not_kept.inc()
            return False
        if config.store_images:
            return True
        if not config.reviewers:
            return False
        if config.review_sample and random.random() < config.review_sample:
            return True
        if not config.review_uncertain:
            return False
        prediction_set = output.trust.get("prediction_set")
        size = len(prediction_set) if prediction_set is not None else None
        return is_uncertain(output.probabilities, size, output.trust.get("ood"))

    def _store_image(self, checked: CheckedImage) -> str:
        """Keep the upload by content hash in central storage; written off the request path."""
        uri = image_url(self.storage_url, checked.sha256)
        with self._unwritten_lock:
            self._unwritten += 1
        self._image_writer.submit(self._write_image, uri, checked.content)
        return uri

    def _write_image(self, uri: str, content: bytes) -> None:
        try:
            write_image_once(uri, content)
        except OSError:
            logger.exception("Could not store image %s", uri)
        finally:
            with self._unwritten_lock:
                self._unwritten -= 1


@contextmanager
def _naming(index: int) -> Iterator[None]:
    """A refusal says which image of the request it is about."""
    try:
        yield
    except ImageRejected as error:
        raise error.at(index) from None


def _rounded(values: np.ndarray) -> list[float]:
    return list(np.round(values.astype(np.float64), 7).tolist())


def prediction_body(output: BatchOutput, latency_ms: float, top_k: int) -> dict[str, Any]:
    """One ``schemas.Prediction``, as the plain data it serialises to."""
    model, names = output.model, output.model.class_names
    probabilities = output.probabilities.tolist()
    order = sorted(range(len(probabilities)), key=probabilities.__getitem__, reverse=True)[:top_k]
    return {
        "prediction_id": output.prediction_id,
        "model_name": model.name,
        "model_version": model.version,
        "label": names[order[0]],
        "confidence": probabilities[order[0]],
        "top_k": [{"label": names[i], "probability": probabilities[i]} for i in order],
        "probabilities": dict(zip(names, probabilities, strict=True)),
        **output.trust,
        "latency_ms": round(latency_ms, 3),
    }


def explain_as_pngs(model: ServedModel, checked: CheckedImage) -> tuple[str, str, str]:
    """Grad-CAM of the model that predicted, on the image as the model saw it, rendered: one thread hop."""
    pixels = model.input_of(checked)
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
