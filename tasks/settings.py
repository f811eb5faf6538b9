"""Where the system keeps its state: environment configures the deployment, YAML the experiment.

In the embedded default everything lives under one state folder (``.mlops/`` in the repository,
or ``MLOPS_HOME``): Prefect's database, MLflow's store and artifacts, central storage, the DVC
remote, the prediction database and the Evidently workspace. In the docker-compose stack the
same variables point at real servers instead.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class PlatformSettings(BaseSettings):
    """Deployment settings read from ``MLOPS_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    home: Path = Field(REPO_ROOT / ".mlops", description="the state folder of the embedded mode")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default: SQLite in home")
    registry_uri: str | None = Field(None, description="MLflow registry URI; default: tracking_uri")
    storage_url: str | None = Field(None, description="central storage (fsspec URL); default: home/storage")
    prediction_db_url: str | None = Field(None, description="SQLAlchemy URL of the prediction log")

    @property
    def state_dir(self) -> Path:
        return self.home.resolve()

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.state_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> str:
        """Absolute artifact location: MLflow with SQLite would otherwise store relative paths."""
        return (self.state_dir / "mlflow" / "artifacts").as_uri()

    @property
    def central_storage_url(self) -> str:
        return self.storage_url or str(self.state_dir / "storage")

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
def get_settings() -> PlatformSettings:
    return PlatformSettings()


def prepare_embedded_environment(settings: PlatformSettings) -> None:
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
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
