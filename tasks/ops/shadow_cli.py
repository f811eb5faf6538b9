"""`mlops shadow`: run a version beside production on live traffic, stop it, and compare the two.

    mlops shadow start V [--sample F] [--yes]   every replica also runs version V (never answering)
    mlops shadow stop [--yes]
    mlops shadow report [--json]                agreement, disagreements, paired accuracy on labels

The deploy flow does the same when ``deploy.shadow.enabled``; both land in the audit trail.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tasks.core.audit import actor
from tasks.core.errors import MlopsError
from tasks.core.shadow_pointer import read_shadow
from tasks.ops.console import DEFAULT_CONFIG, ConfigOption, JsonOption, YesOption, confirm, context, echo, fail

shadow_app = typer.Typer(help="A version beside production on live traffic, compared.", no_args_is_help=True)


@shadow_app.command("start")
def start(
    version: Annotated[str, typer.Argument(help="a published version other than the production one")],
    sample: Annotated[float, typer.Option(min=0.001, max=1.0, help="share of micro-batches it predicts")] = 1.0,
    config: ConfigOption = DEFAULT_CONFIG,
    yes: YesOption = False,
) -> None:
    """Put a version in shadow: services also run it on the images they answer, and log what it says."""
    from tasks.deployment.notify import notify_services
    from tasks.deployment.shadow import start_shadow

    settings, loaded = context(config)
    name = loaded.model.name
    confirm(f"Run {name} version {version} in shadow beside production?", yes)
    try:
        pointer, _ = start_shadow(
            settings.central_storage_url, name, version, sample, "shadow started by operator", actor(), None
        )
    except MlopsError as error:
        raise fail(error) from None
    notify_services(loaded.deploy.reload_urls, settings.service.admin_token or None)
    echo(f"{name} version {pointer.version} in shadow beside version {pointer.champion} ({pointer.sample:.0%})")


@shadow_app.command("stop")
def stop(config: ConfigOption = DEFAULT_CONFIG, yes: YesOption = False) -> None:
    """End the shadow; its logged predictions stay for the report."""
    from tasks.deployment.notify import notify_services
    from tasks.deployment.shadow import stop_shadow

    settings, loaded = context(config)
    name = loaded.model.name
    confirm(f"Stop the shadow of {name}?", yes)
    entry = stop_shadow(settings.central_storage_url, name, "shadow stopped by operator", actor(), None)
    if entry is None:
        raise fail(MlopsError(f"{name} has no version in shadow"), 1)
    notify_services(loaded.deploy.reload_urls, settings.service.admin_token or None)
    echo(f"{name} version {entry.version} is no longer in shadow")


@shadow_app.command("report")
def report(config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False) -> None:
    """What the shadow said since it started, against production on the same images, judged by deploy.shadow."""
    from tasks.deployment.shadow import describe_report, judge_shadow, shadow_report

    settings, loaded = context(config)
    name = loaded.model.name
    try:
        pointer = read_shadow(settings.central_storage_url, name)
        if pointer is None:
            raise MlopsError(f"{name} has no version in shadow; `mlops shadow start VERSION` starts one")
        found = shadow_report(
            settings.prediction_database_url, settings.central_storage_url, pointer, loaded.deploy.confidence
        )
    except MlopsError as error:
        raise fail(error, 1) from None
    judged = judge_shadow(found, loaded.deploy.shadow)
    echo(json.dumps(judged.as_dict(), indent=2) if as_json else describe_report(judged))
