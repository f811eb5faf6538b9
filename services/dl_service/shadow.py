"""Shadow traffic: a challenger predicts the micro-batches the production version answered, off the response path.

The batcher hands each answered micro-batch (a sampled share of them) to ``ShadowRunner.offer``;
a thread of its own runs the shadowed version on the same decoded images and logs what it said
beside the production rows (``shadow_predictions``, joined on the prediction id). No request waits
for it. When the shadow falls behind, whole batches are skipped and counted rather than queued, so
the shadow can cost CPU but never memory or latency without bound.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np

from services.dl_service.images import CheckedImage
from services.dl_service.metrics import ServiceMetrics
from services.dl_service.model import Inference, ServedModel, Shadow
from services.dl_service.store import PredictionLog, utc_now

logger = logging.getLogger(__name__)

MAX_PENDING_BATCHES = 2  # one being predicted, one waiting: more would only queue behind a slow shadow


class ShadowRunner:
    def __init__(self, log: PredictionLog, metrics: ServiceMetrics, max_pending: int = MAX_PENDING_BATCHES) -> None:
        self.log, self.metrics, self.max_pending = log, metrics, max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._pending = 0
        self._lock = threading.Lock()

    def offer(
        self, shadow: Shadow, champion: str, images: list[CheckedImage], prediction_ids: list[str], arrived: float
    ) -> None:
        """Predict ``images`` with the shadow later, if the batch is sampled and the shadow keeps up."""
        if not images or random.random() >= shadow.sample:
            return
        with self._lock:
            if self._pending >= self.max_pending:
                self.metrics.shadow_skipped.labels("busy").inc(len(images))
                return
            self._pending += 1
        self._executor.submit(self._run, shadow.model, champion, images, prediction_ids, arrived)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def _run(
        self, model: ServedModel, champion: str, images: list[CheckedImage], prediction_ids: list[str], arrived: float
    ) -> None:
        try:
            inference = model.predict(np.stack([model.input_of(image) for image in images]))
            latency_ms = (time.perf_counter() - arrived) * 1000
            rows = shadow_rows(model, inference, champion, prediction_ids, utc_now(), latency_ms)
            if self.log.write_shadow(rows):
                self.metrics.shadow_predictions.labels(model.version).inc(len(rows))
            else:
                self.metrics.shadow_skipped.labels("unlogged").inc(len(rows))
        except Exception:
            logger.exception("The shadow version %s failed on a batch of %d", model.version, len(images))
            self.metrics.shadow_skipped.labels("failed").inc(len(images))
        finally:
            with self._lock:
                self._pending -= 1


def shadow_rows(
    model: ServedModel,
    inference: Inference,
    champion: str,
    prediction_ids: list[str],
    now: datetime,
    latency_ms: float,
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
        for prediction_id, index, score, row, fields in zip(
            prediction_ids, best.tolist(), confidence.tolist(), rounded, trust, strict=True
        )
    ]
