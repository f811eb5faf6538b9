"""Service settings from the environment (``MLOPS_SERVICE_*``), read once through ``get_service_settings``.

Outside the embedded development mode an admin token is required and a placeholder is refused,
so a production service never runs with a guessable reload token.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from fastapi.telemetry import TelemetryConfig
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.settings import get_settings

# The service exports Prometheus metrics itself. FastAPI's built-in OpenTelemetry hooks would
# otherwise look up providers in os.environ on every request: about 8% of the request path.
NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}

PLACEHOLDER_TOKENS = {"", "changeme", "change-me", "secret", "token", "admin", "password"}


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_SERVICE_", extra="ignore")

    mode: Literal["development", "production"] = "development"
    model_name: str = "fashion-cnn"
    admin_token: str = Field("", description="bearer token of the admin routes; required in production")
    storage_url: str | None = Field(None, description="central storage; default: MLOPS_STORAGE_URL or the state folder")
    database_url: str | None = Field(None, description="prediction log; default: SQLite in the state folder")
    spool_dir: Path | None = Field(None, description="where rows wait while the database is unreachable")
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_pixels: int = Field(25_000_000, gt=0, description="refuse larger images (decompression bombs)")
    max_batch_images: int = Field(64, gt=0, description="images per /predict/batch request")
    batch_size: int = Field(32, gt=0, description="micro-batch: most images per model call")
    batch_wait_ms: float = Field(2.0, ge=0, description="micro-batch: longest wait for company while the model is free")
    top_k: int = Field(3, gt=0)
    pointer_poll_seconds: float = Field(5.0, gt=0, description="how often the production pointer is checked")
    store_images: bool = Field(False, description="keep uploaded images by sha256 in central storage")
    log_predictions: bool = Field(True, description="off only to measure what the prediction log costs")
    log_flush_seconds: float = Field(0.2, gt=0)

    @model_validator(mode="after")
    def _refuse_placeholder_token(self) -> ServiceSettings:
        if self.mode == "production" and self.admin_token.strip().lower() in PLACEHOLDER_TOKENS:
            raise ValueError("MLOPS_SERVICE_ADMIN_TOKEN must be set to a real secret in production mode")
        return self

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or get_settings().central_storage_url

    @property
    def resolved_database_url(self) -> str:
        return (
            self.database_url
            or get_settings().prediction_db_url
            or f"sqlite:///{get_settings().state_dir / 'predictions.db'}"
        )

    @property
    def resolved_spool_dir(self) -> Path:
        return self.spool_dir or get_settings().state_dir / "spool"


@lru_cache(maxsize=1)
def get_service_settings() -> ServiceSettings:
    return ServiceSettings()
