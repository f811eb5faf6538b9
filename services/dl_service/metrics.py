"""Prometheus metrics, correct with several worker processes.

With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn), every process writes its samples there and
``/metrics`` aggregates them all; without it, the app keeps a private registry.
"""

from __future__ import annotations

import os
import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        registry = None if self.multiprocess else CollectorRegistry()
        self._registry = registry
        self.requests = Counter("dl_service_requests_total", "HTTP requests", ["endpoint", "status"], registry=registry)
        self.latency = Histogram(
            "dl_service_request_seconds", "Request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry
        )
        self.predictions = Counter(
            "dl_service_predictions_total",
            "Predictions by model version and class",
            ["model_version", "predicted_class"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "dl_service_batch_size", "Images per model call", buckets=(1, 2, 4, 8, 16, 32, 64), registry=registry
        )
        self.batch_stage = Histogram(
            "dl_service_batch_stage_seconds",
            "Seconds a micro-batch spends off the event loop, by stage: the model with its trust layer "
            "(inference), the prediction log's group commit (log); its requests wait for both",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.model_version = Gauge(
            "dl_service_model_version",
            "Version being served (1 for the served version)",
            ["model", "version"],
            registry=registry,
            multiprocess_mode="liveall",  # one series per live worker (pid): shows that all converged
        )
        self.spooled_rows = Gauge(
            "dl_service_spooled_rows",
            "Prediction rows waiting for the database",
            registry=registry,
            multiprocess_mode="livemax",  # every process sees the same spool folder
        )
        self.unlogged = Counter(
            "dl_service_unlogged_predictions_total",
            "Predictions refused with 503 because neither the database nor the spool could store them (a full disk)",
            registry=registry,
        )
        self.images_not_kept = Counter(
            "dl_service_images_not_kept_total",
            "Images the review queue or STORE_IMAGES wanted but not kept: too many were waiting to be written",
            registry=registry,
        )
        self.rejected_rows = Gauge(
            "dl_service_rejected_rows",
            "Prediction rows the database refused, set aside in the spool folder for an operator",
            registry=registry,
            multiprocess_mode="livemax",
        )

        self.shadow_predictions = Counter(
            "dl_service_shadow_predictions_total",
            "Predictions of the version in shadow, logged beside the answered ones",
            ["model_version"],
            registry=registry,
        )
        self.shadow_skipped = Counter(
            "dl_service_shadow_skipped_total",
            "Images the shadow did not predict or log: busy (it fell behind), failed, or unlogged",
            ["reason"],
            registry=registry,
        )
        self.shadow_version = Gauge(
            "dl_service_shadow_version",
            "Version run in shadow (1 for the shadowed version)",
            ["model", "version"],
            registry=registry,
            multiprocess_mode="liveall",
        )

    def shadow_version_changed(self, model: str, before: str | None, after: str | None) -> None:
        if before is not None:
            self.shadow_version.labels(model, before).set(0)
        if after is not None:
            self.shadow_version.labels(model, after).set(1)

    def served_version_changed(self, model: str, before: str | None, after: str) -> None:
        if before is not None:
            self.model_version.labels(model, before).set(0)
        self.model_version.labels(model, after).set(1)

    def exposition(self) -> tuple[bytes, str]:
        if self._registry is not None:
            return generate_latest(self._registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # every worker's samples, summed
        return generate_latest(registry), CONTENT_TYPE_LATEST


def served_versions_by_pid(exposition: str) -> dict[str, str]:
    """Worker pid -> the version it serves, from a multiprocess /metrics page (one series per worker)."""
    served = {}
    for labels in re.findall(r"dl_service_model_version\{([^}]*)\} 1\.0", exposition):
        pid, version = re.search(r'pid="(\d+)"', labels), re.search(r'version="([^"]+)"', labels)
        if pid and version:
            served[pid.group(1)] = version.group(1)
    return served
