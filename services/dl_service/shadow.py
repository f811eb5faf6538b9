"""Shadow traffic: a challenger predicts the micro-batches the production version answered, off the response path.

The batcher hands each answered micro-batch (a sampled share of them) to ``ShadowRunner.offer``;
a thread of its own runs the shadowed version on the same decoded images and logs what it said
beside the production rows (``shadow_predictions``, joined on the prediction id). No request waits
for it. When the shadow falls behind, whole batches are skipped and counted rather than queued, so
the shadow can cost CPU but never memory or latency without bound.

Its rows are written every ``flush_seconds`` in one transaction, not per micro-batch: each SQLite
transaction takes the database's single write lock, which the production rows' commit (on the
response path) would otherwise wait for about thirty times a second.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from services.dl_service.images import CheckedImage
from services.dl_service.metrics import ServiceMetrics
from services.dl_service.model import Inference, ServedModel, Shadow
from services.dl_service.store import PredictionLog, utc_now

logger = logging.getLogger(__name__)

MAX_QUEUED_IMAGES = 256  # waiting for the shadow: past it, batches are skipped (and counted), not queued
FLUSH_SECONDS = 0.5


@dataclass(frozen=True)
class _Offered:
    model: ServedModel
    champion: str
    images: list[CheckedImage]
    prediction_ids: list[str]
    arrived: float


class ShadowRunner:
    def __init__(
        self,
        log: PredictionLog,
        metrics: ServiceMetrics,
        max_queued: int = MAX_QUEUED_IMAGES,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.log, self.metrics, self.max_queued, self.flush_seconds = log, metrics, max_queued, flush_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._lock = threading.Lock()
        self._queue: list[_Offered] = []
        self._queued_images = 0
        self._draining = False  # a drain is scheduled and has not taken the queue yet
        self._rows: list[dict[str, Any]] = []  # predicted, not yet written
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_forever, name="shadow-log", daemon=True)
        self._writer.start()

    def offer(
        self, shadow: Shadow, champion: str, images: list[CheckedImage], prediction_ids: list[str], arrived: float
    ) -> None:
        """Predict ``images`` with the shadow later, if the batch is sampled and the shadow keeps up."""
        if not images or random.random() >= shadow.sample:
            return
        with self._lock:
            if self._queued_images + len(images) > self.max_queued:
                self.metrics.shadow_skipped.labels("busy").inc(len(images))
                return
            self._queue.append(_Offered(shadow.model, champion, images, prediction_ids, arrived))
            self._queued_images += len(images)
            if self._draining:
                return
            self._draining = True
        self._executor.submit(self._drain)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._stop.set()
        self._writer.join(timeout=10)  # a write hanging on the database must not hold the shutdown
        self._flush()

    def _drain(self) -> None:
        """Everything offered since the last drain, in one model call per version: under load the shadow's
        batches grow while it predicts, and with them what each call's fixed cost is spread over."""
        with self._lock:
            taken, self._queue, self._queued_images, self._draining = self._queue, [], 0, False
        groups: dict[tuple[int, str], list[_Offered]] = {}
        for offered in taken:
            groups.setdefault((id(offered.model), offered.champion), []).append(offered)
        for group in groups.values():
            self._predict(group)

    def _predict(self, group: list[_Offered]) -> None:
        model, champion = group[0].model, group[0].champion
        images = [image for offered in group for image in offered.images]
        try:
            inference = model.predict(np.stack([model.input_of(image) for image in images]), with_features=False)
            ended = time.perf_counter()
            latencies = [(ended - o.arrived) * 1000 for o in group for _ in o.images]
            ids = [prediction_id for offered in group for prediction_id in offered.prediction_ids]
            rows = shadow_rows(model, inference, champion, ids, utc_now(), latencies)
            with self._lock:
                self._rows.extend(rows)
        except Exception:
            logger.exception("The shadow version %s failed on %d images", model.version, len(images))
            self.metrics.shadow_skipped.labels("failed").inc(len(images))

    def _write_forever(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self._flush()
            except Exception:
                logger.exception("Shadow rows not written")

    def _flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        if not self.log.write_shadow(rows):
            self.metrics.shadow_skipped.labels("unlogged").inc(len(rows))
            return
        for version, count in Counter(row["model_version"] for row in rows).items():
            self.metrics.shadow_predictions.labels(version).inc(count)


def shadow_rows(
    model: ServedModel,
    inference: Inference,
    champion: str,
    prediction_ids: list[str],
    now: datetime,
    latencies_ms: list[float],
) -> list[dict[str, Any]]:
    """One ``shadow_predictions`` row per image: the shadow's answer as the service would have given it."""
    probabilities = inference.probabilities
    best = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(best)), best]
    rounded = np.round(probabilities.astype(np.float64), 7).tolist()
    trust = model.trust_fields(inference)
    return [
        {
            "prediction_id": prediction_id,
            "model_version": model.version,
            "created_at": now,
            "model_name": model.name,
            "champion_version": champion,
            "predicted_label": model.class_names[index],
            "confidence": score,
            "probabilities": row,
            "prediction_set": fields["prediction_set"],
            "ood_score": fields["ood_score"],
            "ood": fields["ood"],
            "abstain": fields["abstain"],
            "latency_ms": latency_ms,
        }
        for prediction_id, index, score, row, fields, latency_ms in zip(
            prediction_ids, best.tolist(), confidence.tolist(), rounded, trust, latencies_ms, strict=True
        )
    ]
