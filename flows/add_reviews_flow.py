"""Add-reviews flow: agreed reviews since the newest dataset revision -> a new, tagged, validated revision."""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow
from pydantic import BaseModel

from configs.schema import FlowConfig, resolve_config
from tasks.core.settings import REPO_ROOT, get_settings
from tasks.core.tracking import tracking_run
from tasks.data.tasks import add_reviews_to_dataset


class AddReviewsResult(BaseModel):
    """The new revision (tasks/data/from_reviews.NewRevision, its tag as ``revision``) and its MLflow run."""

    revision: str
    commit: str
    base_revision: str
    added: int
    relabelled: int
    sent_back: int
    provenance_file: str
    run_id: str  # the MLflow run: provenance, doubted labels' thumbnails, validation reports


@flow(name="add-reviews")
def add_reviews_flow(
    config: FlowConfig | None = None, config_file: str = "", overrides: list[str] | None = None
) -> AddReviewsResult:
    config = resolve_config(config, config_file, REPO_ROOT, overrides)
    with tracking_run(config, "add-reviews", config_file) as run:  # a refused run keeps its reports folder
        made = add_reviews_to_dataset(config.dataset, get_settings().prediction_database_url, run)
    fields = asdict(made)
    return AddReviewsResult(revision=fields.pop("tag"), **fields, run_id=run.run_id)
