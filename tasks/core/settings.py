"""Where the system keeps its state and how its service runs: environment configures the deployment,
YAML configures the experiment.

Every environment variable the platform reads is a field of ``Settings`` (``MLOPS_*``; the serving
service's own as ``MLOPS_SERVICE_*``). In the embedded default everything lives under one state
folder (``.mlops/`` in the repository, or ``MLOPS_HOME``): Prefect's database, MLflow's store and
artifacts, central storage, the DVC remote, the prediction database and the Evidently workspace.
In the docker-compose stack the same variables point at real servers instead.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.core.errors import ConfigError
from tasks.core.signing import load_public_key

REPO_ROOT = Path(__file__).resolve().parents[2]

PLACEHOLDER_TOKENS = {"", "changeme", "change-me", "secret", "token", "admin", "password"}
MIN_PRODUCTION_TOKEN = 32  # characters: `make secrets` writes 43 random ones


class ServiceSettings(BaseModel):
    """The serving service (``MLOPS_SERVICE_*``): limits, micro-batching, the log, the admin token."""

    mode: Literal["development", "production"] = "development"
    model_name: str = "fashion-cnn"
    admin_token: str = Field("", description="bearer token of the admin routes (and of deploy's reload requests)")
    spool_dir: Path | None = Field(None, description="where rows wait while the database is unreachable")
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_pixels: int = Field(25_000_000, gt=0, description="refuse larger images (decompression bombs)")
    max_batch_images: int = Field(64, gt=0, description="images per /predict/batch request")
    max_request_bytes: int = Field(64 * 1024 * 1024, gt=0, description="all the images of one request together")
    max_queued_images: int = Field(512, gt=0, description="images taken, not yet answered; past it 503 + Retry-After")
    batch_size: int = Field(32, gt=0, description="micro-batch: most images per model call")
    batch_wait_ms: float = Field(
        2.0,
        ge=0,
        description="micro-batch: longest wait for company while the model is free, taken only while requests "
        "arrive closer together than this",
    )
    top_k: int = Field(3, gt=0)
    pointer_poll_seconds: float = Field(5.0, gt=0, description="how often the production pointer is checked")
    store_images: bool = Field(False, description="keep every uploaded image by sha256 in central storage")
    review_sample: float = Field(
        0.02, ge=0, le=1, description="share of predictions whose image is kept for the review queue at random"
    )
    review_uncertain: bool = Field(True, description="keep the image of every uncertain prediction for review")
    reviewers: dict[str, str] = Field(
        default_factory=dict, description='reviewer name -> token of the /review page (JSON: {"ana": "..."})'
    )
    log_predictions: bool = Field(True, description="off only to measure what the prediction log costs")
    log_flush_seconds: float = Field(0.2, gt=0, description="how often spooled rows are retried against the database")
    spool_stale_seconds: float = Field(
        300, gt=0, description="a spool file untouched this long belongs to a dead process and is taken over"
    )
    decode_threads: int = Field(2, gt=0, description="large images decoded at once; bounds decoding memory")
    workers: int = Field(1, gt=0, description="worker processes serving on this machine (gunicorn's, in the stack)")
    inference_threads: int = Field(
        0,
        ge=0,
        description="TensorFlow threads per worker process; 0: the machine's cores shared among the workers",
    )
    model_verify_key: str = Field(
        "", description="base64 Ed25519 public key; model versions must be signed by its private key to load"
    )

    @model_validator(mode="after")
    def _limits_fit_together(self) -> ServiceSettings:
        if self.max_request_bytes < self.max_upload_bytes:
            raise ValueError("MLOPS_SERVICE_MAX_REQUEST_BYTES must be at least MLOPS_SERVICE_MAX_UPLOAD_BYTES")
        if self.max_queued_images < self.max_batch_images:
            raise ValueError("MLOPS_SERVICE_MAX_QUEUED_IMAGES must be at least MLOPS_SERVICE_MAX_BATCH_IMAGES")
        return self


class Settings(BaseSettings):
    """Deployment settings read once from the environment (``get_settings``)."""

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_", env_nested_delimiter="_", env_nested_max_split=1, extra="ignore"
    )

    home: Path = Field(REPO_ROOT / ".mlops", description="the state folder of the embedded mode")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default: SQLite in home")
    registry_uri: str | None = Field(None, description="MLflow registry URI; default: tracking_uri")
    storage_url: str | None = Field(None, description="central storage (fsspec URL); default: home/storage")
    prediction_db_url: str | None = Field(None, description="SQLAlchemy URL of the prediction log; default: SQLite")
    mlflow_ui_url: str = Field("http://127.0.0.1:5000", description="where people open MLflow (links in Prefect)")
    signing_key_file: Path | None = Field(None, description="PEM private key that signs published model versions")
    service: ServiceSettings = Field(default_factory=ServiceSettings)

    @model_validator(mode="after")
    def _refuse_weak_token(self) -> Settings:
        token = self.service.admin_token.strip()
        if self.service.mode == "production" and (
            token.lower() in PLACEHOLDER_TOKENS or len(token) < MIN_PRODUCTION_TOKEN
        ):
            raise ValueError(
                f"MLOPS_SERVICE_ADMIN_TOKEN must be a random secret of at least {MIN_PRODUCTION_TOKEN} characters "
                "in production mode (`make secrets` writes one)"
            )
        return self

    @model_validator(mode="after")
    def _refuse_weak_reviewer_tokens(self) -> Settings:
        """A review is a label the next model learns from: who gave it must be known, in production for sure."""
        tokens = list(self.service.reviewers.values())
        if len(set(tokens)) < len(tokens):
            raise ValueError("MLOPS_SERVICE_REVIEWERS gives two reviewers the same token; each needs their own")
        for name, token in self.service.reviewers.items():
            if not token.strip() or not name.strip():
                raise ValueError("MLOPS_SERVICE_REVIEWERS: every reviewer needs a name and a token that is not blank")
            weak = token.strip().lower() in PLACEHOLDER_TOKENS or len(token.strip()) < MIN_PRODUCTION_TOKEN
            if self.service.mode == "production" and weak:
                raise ValueError(
                    f"MLOPS_SERVICE_REVIEWERS: the token of {name!r} must be a random secret of at least "
                    f"{MIN_PRODUCTION_TOKEN} characters in production mode"
                )
        return self

    @model_validator(mode="after")
    def _require_verify_key(self) -> Settings:
        """Production serves only signed versions, so it cannot start without the key that checks them."""
        key = self.service.model_verify_key.strip()
        if self.service.mode == "production" and not key:
            raise ValueError(
                "MLOPS_SERVICE_MODEL_VERIFY_KEY must be set in production mode: the base64 public key that checks "
                "the signature of every model version (`make secrets` writes one)"
            )
        if key:
            try:
                load_public_key(key)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return self

    @property
    def state_dir(self) -> Path:
        return self.home.resolve()

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.state_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_registry_uri(self) -> str:
        return self.registry_uri or self.mlflow_tracking_uri

    @property
    def mlflow_artifact_root(self) -> str:
        """Absolute artifact location: MLflow with SQLite would otherwise store relative paths."""
        return (self.state_dir / "mlflow" / "artifacts").as_uri()

    @property
    def central_storage_url(self) -> str:
        return self.storage_url or str(self.state_dir / "storage")

    @property
    def prediction_database_url(self) -> str:
        """The prediction log the service writes and the monitor reads."""
        return self.prediction_db_url or f"sqlite:///{self.state_dir / 'predictions.db'}"

    @property
    def spool_dir(self) -> Path:
        return self.service.spool_dir or self.state_dir / "spool"

    @property
    def dvc_remote_dir(self) -> Path:
        return self.state_dir / "dvc-remote"

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def prepare_embedded_environment(settings: Settings) -> None:
    """Create the state folder and point Prefect at it, before Prefect is first imported.

    Values already set in the environment win, so the same code runs against real servers.
    """
    for folder in (settings.state_dir, settings.prefect_home, settings.cache_dir):
        folder.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "mlflow").mkdir(exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_API_DATABASE_CONNECTION_URL": (f"sqlite+aiosqlite:///{settings.prefect_home / 'prefect.db'}"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOCAL_STORAGE_PATH": str(settings.prefect_home / "results"),
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # No component reports usage (on an isolated network it would only time out).
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
        "DISABLE_DEEPCHECKS_ANONYMOUS_TELEMETRY": "true",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
