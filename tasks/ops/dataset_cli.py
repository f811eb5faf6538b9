"""`mlops dataset` and `mlops review`: the data flywheel from the shell.

    mlops review status [--json]                    the review queue: open, agreed, added, disagreements
    mlops dataset add-reviews [--min-labels N]      agreed reviews -> a new tagged dataset revision

The add-reviews Prefect deployment runs the same job (flows/add_reviews_flow.py).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tasks.core.errors import MlopsError
from tasks.core.settings import REPO_ROOT
from tasks.ops.console import ConfigOption, JsonOption, context, echo, fail

ADD_REVIEWS_CONFIG = REPO_ROOT / "configs" / "add_reviews_config.yaml"

dataset_app = typer.Typer(help="Dataset revisions from reviewed labels.", no_args_is_help=True)
review_app = typer.Typer(help="The review queue.", no_args_is_help=True)


@dataset_app.command("add-reviews")
def add_reviews(
    config: ConfigOption = ADD_REVIEWS_CONFIG,
    min_labels: Annotated[int | None, typer.Option("--min-labels", min=1, help="instead of min_new_labels")] = None,
    as_json: JsonOption = False,
) -> None:
    """Agreed reviews since the newest revision become a new revision (screened, validated, DVC-committed, tagged)."""
    from tasks.core.review_queue import ReviewQueue
    from tasks.data.from_reviews import add_reviews as add
    from tasks.data.from_reviews import review_workdir

    settings, loaded = context(config)
    dataset = loaded.dataset
    if min_labels is not None:
        dataset = dataset.model_copy(
            update={"reviews": dataset.reviews.model_copy(update={"min_new_labels": min_labels})}
        )
    try:
        queue = ReviewQueue.at(settings.prediction_database_url)
        made = add(dataset, queue, settings.cache_dir, review_workdir(settings.state_dir))
    except MlopsError as error:
        raise fail(error, 1) from None
    if as_json:
        echo(json.dumps(made.__dict__, indent=2))
        return
    echo(
        f"dataset revision {made.tag} (commit {made.commit[:10]}) from {made.base_revision}: {made.added} reviewed "
        f"images added, {made.relabelled} relabelled, {made.sent_back} sent back for a second review; "
        f"provenance in {made.provenance_file}"
    )


@review_app.command("status")
def status(config: ConfigOption = ADD_REVIEWS_CONFIG, as_json: JsonOption = False) -> None:
    """How many items wait, are agreed (not yet in a revision), were added, and are disagreements."""
    from tasks.core.review_queue import ReviewQueue

    settings, _ = context(config)
    counts = ReviewQueue.at(settings.prediction_database_url).counts()
    echo(json.dumps(counts) if as_json else "  ".join(f"{name}: {count}" for name, count in counts.items()))
