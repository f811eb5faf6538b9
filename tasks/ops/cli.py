"""`mlops`: the platform from a shell. The operations live here (also `python -m tasks.ops`);
flows/cli.py adds the commands that run flows (`mlops run`, `mlops monitor`) and is the entry point.

    mlops run --config FILE [--set K=V ...] [--flow NAME] [--force]   a flow, as run_flow.py
    mlops status [--json]          the model in production: version, metrics, data and code
    mlops models [--json]          every registered version, its aliases and whether it is published
    mlops promote V [--yes]        put version V in production (pointer, alias, services told)
    mlops rollback [--to V] [--yes]
    mlops history [--json]         the audit trail of promotions, rollbacks and refusals, verified
    mlops trace PREDICTION_ID      the version behind a logged prediction, its provenance, who deployed it
    mlops shadow start V | stop | report [--json]
                                   run a version beside production on live traffic, and compare the two
    mlops review status [--json]   the review queue: open, agreed, added, disagreements
    mlops dataset add-reviews [--min-labels N] [--json]
                                   agreed reviews -> a new tagged dataset revision, with provenance
    mlops monitor                  the monitor flow once, now
    mlops serve                    the serving service on 127.0.0.1:4242
    mlops ui                       Prefect, MLflow and Evidently UIs over the state folder
    mlops deployments apply        every flow as a Prefect deployment (the UI's Run button)

Exit codes: 0 done, 1 the work failed, 2 bad input (config, version, a refused confirmation).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tasks.core.errors import MlopsError
from tasks.core.settings import REPO_ROOT, Settings, get_settings, prepare_embedded_environment
from tasks.ops.console import (
    BAD_INPUT,
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    YesOption,
    confirm,
    context,
    echo,
    fail,
)
from tasks.ops.dataset_cli import dataset_app, review_app
from tasks.ops.shadow_cli import shadow_app

# MLflow, TensorFlow and Prefect are imported by the commands that use them, so `mlops --help`
# and bad input answer at once.
if TYPE_CHECKING:
    from tasks.core.audit import Event
    from tasks.core.pointer import ProductionPointer

app = typer.Typer(
    name="mlops",
    help="On-premises MLOps for image classification: run flows, inspect and move the production model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(shadow_app, name="shadow")
app.add_typer(dataset_app, name="dataset")
app.add_typer(review_app, name="review")


def _metadata(settings: Settings, name: str, version: str) -> dict[str, Any]:
    from tasks.core.storage import read_metadata

    return read_metadata(settings.central_storage_url, name, version)


def status_of(settings: Settings, name: str) -> dict[str, Any]:
    """The champion as data: what `mlops status --json` prints."""
    from tasks.core import tracking
    from tasks.core.pointer import read_pointer
    from tasks.core.shadow_pointer import read_shadow

    pointer = read_pointer(settings.central_storage_url, name)
    if pointer is None:
        return {"model": name, "production": None}
    shadow = read_shadow(settings.central_storage_url, name)
    client = tracking.mlflow_client(settings)
    meta = _metadata(settings, name, pointer.version)
    return {
        "model": name,
        "production": {
            "version": pointer.version,
            "registry_champion": tracking.alias_version(client, name, tracking.CHAMPION_ALIAS),
            "deployed_at": str(pointer.deployed_at),
            "reason": pointer.reason,
            "previous_version": pointer.previous_version,
            "metrics": pointer.metrics,
            "dataset": meta.get("dataset", {}),
            "code": meta.get("code", {}),
        },
        "shadow": shadow.model_dump(include={"version", "sample", "started_at", "reason"}) if shadow else None,
    }


def show_status(settings: Settings, name: str) -> str:
    status = status_of(settings, name)
    production = status["production"]
    if production is None:
        return f"{name}: nothing in production yet (run the full flow)"
    data, code = production["dataset"], production["code"]
    metrics = production["metrics"]
    lines = [
        f"model       {name}",
        f"version     {production['version']} (registry alias champion -> {production['registry_champion']})",
        f"deployed    {production['deployed_at']}: {production['reason']}",
        f"previous    {production['previous_version'] or '-'}",
        f"data        {data.get('path', '?')} {data.get('revision', '?')} (commit {str(data.get('commit', '?'))[:10]})",
        f"code        {str(code.get('commit', '?'))[:10]}{' (dirty)' if code.get('dirty') else ''}",
        "metrics     " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if "/" not in k),
    ]
    shadow = status["shadow"]
    if shadow:
        lines.append(f"shadow      {shadow['version']} since {shadow['started_at']}, {shadow['sample']:.0%} of batches")
    return "\n".join(lines)


def models_of(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Every registered version as data: what `mlops models --json` prints."""
    from tasks.core import tracking
    from tasks.core.storage import list_versions

    client = tracking.mlflow_client(settings)
    published = set(list_versions(settings.central_storage_url, name))
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    aliases_of: dict[str, list[str]] = {}
    if versions:  # search results carry no aliases; the registered model has them all
        for alias, number in client.get_registered_model(name).aliases.items():
            aliases_of.setdefault(str(number), []).append(alias)
    return [
        {
            "version": str(version.version),
            "aliases": sorted(aliases_of.get(str(version.version), [])),
            "published": str(version.version) in published,
            "test_accuracy": float(version.tags["eval.test.accuracy"])
            if "eval.test.accuracy" in version.tags
            else None,
            "created": _iso(version.creation_timestamp // 1000),
        }
        for version in versions
    ]


def show_models(settings: Settings, name: str) -> str:
    versions = models_of(settings, name)
    rows = [f"{'version':>7}  {'aliases':<20} {'published':<9} {'test acc':>8}  created"]
    for version in versions:
        accuracy = "" if version["test_accuracy"] is None else f"{version['test_accuracy']:.4f}"
        aliases = ",".join(version["aliases"]) or "-"
        is_published = "yes" if version["published"] else "no"
        rows.append(f"{version['version']:>7}  {aliases:<20} {is_published:<9} {accuracy:>8}  {version['created']}")
    return "\n".join(rows) if versions else f"{name}: no registered versions"


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def move_production(
    settings: Settings, name: str, version: str, reason: str, reload_urls: list[str], event: Event = "promotion"
) -> ProductionPointer:
    """The deploy flow's release step, from the command line: pointer, alias, services, Prefect variable."""
    from tasks.core import tracking
    from tasks.core.pointer import read_pointer
    from tasks.deployment.notify import notify_services
    from tasks.deployment.release import release_version
    from tasks.deployment.tasks import record_variable

    client = tracking.mlflow_client(settings)
    current = read_pointer(settings.central_storage_url, name)
    metrics = (
        current.metrics
        if current and current.version == version
        else _metadata(settings, name, version).get("metrics", {})
    )
    pointer = release_version(client, settings.central_storage_url, name, version, reason, metrics, event)
    notify_services(reload_urls, settings.service.admin_token or None)
    record_variable(pointer)
    return pointer


def rollback_target(settings: Settings, name: str, to: str | None) -> str:
    from tasks.core.pointer import read_pointer

    if to is not None:
        return to
    pointer = read_pointer(settings.central_storage_url, name)
    if pointer is None or pointer.previous_version is None:
        raise MlopsError(f"{name}: no previous production version to roll back to; use --to VERSION")
    return pointer.previous_version


@app.command()
def status(config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False) -> None:
    """The model in production: version, when and why deployed, metrics, data revision, code commit."""
    _read_command(config, as_json, status_of, show_status)


@app.command()
def models(config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False) -> None:
    """Every registered version with its aliases, test accuracy and whether it is published."""
    _read_command(config, as_json, models_of, show_models)


def _read_command(
    config: Path, as_json: bool, data: Callable[[Settings, str], Any], text: Callable[[Settings, str], str]
) -> None:
    """A read command: the data as JSON, or the text for people; a failure exits 1 with its message."""
    settings, loaded = context(config)
    name = loaded.model.name
    try:
        echo(json.dumps(data(settings, name), indent=2) if as_json else text(settings, name))
    except MlopsError as error:
        raise fail(error, 1) from None


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="the registered, published version")],
    config: ConfigOption = DEFAULT_CONFIG,
    yes: YesOption = False,
) -> None:
    """Put a version in production: pointer, registry alias, Prefect variable; services reload."""
    settings, loaded = context(config)
    name = loaded.model.name
    confirm(f"Put {name} version {version} in production?", yes)
    _move(settings, name, version, "promote by operator", loaded.deploy.reload_urls, "promotion")


@app.command()
def rollback(
    to: Annotated[str | None, typer.Option("--to", help="this version (default: the previous one)")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    yes: YesOption = False,
) -> None:
    """Back to the previous production version (or --to V)."""
    settings, loaded = context(config)
    name = loaded.model.name
    try:
        version = rollback_target(settings, name, to)
    except MlopsError as error:
        raise fail(error) from None
    confirm(f"Roll {name} back to version {version}?", yes)
    _move(settings, name, version, "rollback by operator", loaded.deploy.reload_urls, "rollback")


def _move(settings: Settings, name: str, version: str, reason: str, reload_urls: list[str], event: Event) -> None:
    try:
        pointer = move_production(settings, name, version, reason, reload_urls, event)
    except MlopsError as error:
        raise fail(error) from None
    echo(f"{name} version {pointer.version} is in production (previous: {pointer.previous_version})")


def history_of(settings: Settings, name: str) -> dict[str, Any]:
    """The audit trail and its verification: what `mlops history --json` prints."""
    from tasks.core.audit import read_history, verify_chain

    entries = read_history(settings.central_storage_url, name)
    problems = verify_chain(settings.central_storage_url, name)
    return {"model": name, "intact": not problems, "problems": problems, "entries": [e.model_dump() for e in entries]}


def show_history(history: dict[str, Any]) -> str:
    lines = [f"{'#':>4}  {'when (UTC)':<25} {'event':<12} {'version':>7}  {'before':>6}  actor: reason"]
    for e in history["entries"]:
        before = e["previous_version"] or "-"
        row = f"{e['sequence']:>4}  {e['at']:<25} {e['event']:<12} {e['version']:>7}  {before:>6}"
        lines.append(f"{row}  {e['actor']}: {e['reason']}")
    if not history["entries"]:
        lines = [f"{history['model']}: no audit entries yet"]
    if history["problems"]:
        lines += ["", "THE AUDIT TRAIL IS NOT INTACT:", *(f"  {p}" for p in history["problems"])]
    else:
        lines += ["", f"chain intact: {len(history['entries'])} entries, each linked to the one before"]
    return "\n".join(lines)


def trace_of(settings: Settings, prediction_id: str) -> dict[str, Any]:
    """One logged prediction, the version that made it, that version's provenance, and the audit entry
    that put it in production: what `mlops trace --json` prints."""
    from sqlalchemy import create_engine, inspect, text

    from tasks.core.audit import production_entry, read_history, version_provenance

    # Plain SQL on the log's table: the log's module would import TensorFlow (its image properties),
    # seconds this lookup does not need.
    engine = create_engine(settings.prediction_database_url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("predictions"):
                raise MlopsError(f"no predictions have been logged yet ({settings.prediction_database_url})")
            query = text("SELECT * FROM predictions WHERE id = :id")
            row = connection.execute(query, {"id": prediction_id}).mappings().first()
    finally:
        engine.dispose()
    if row is None:
        raise MlopsError(f"no prediction {prediction_id!r} in the prediction log ({settings.prediction_database_url})")
    name, version = row["model_name"], row["model_version"]
    stamp = row["created_at"]  # SQLite hands back text, PostgreSQL a datetime
    created = datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp
    created = created if created.tzinfo else created.replace(tzinfo=UTC)
    entry = production_entry(read_history(settings.central_storage_url, name), version, created)
    return {
        "prediction": {
            "id": prediction_id,
            "at": created.isoformat(),
            "label": row["predicted_label"],
            "confidence": row["confidence"],
            "abstain": row.get("abstain"),
        },
        "model": name,
        "version": version,
        "provenance": version_provenance(settings.central_storage_url, name, version),
        "in_production_by": None
        if entry is None
        else {
            "sequence": entry.sequence,
            "event": entry.event,
            "at": entry.at,
            "actor": entry.actor,
            "reason": entry.reason,
        },
    }


def show_trace(trace: dict[str, Any]) -> str:
    prediction, provenance, moved = trace["prediction"], trace["provenance"], trace["in_production_by"]
    lines = [
        f"prediction  {prediction['id']} at {prediction['at']}: {prediction['label']} ({prediction['confidence']:.4f})",
        f"model       {trace['model']} version {trace['version']}",
        f"data        {provenance['data_path']} {provenance['data_revision']} "
        f"(commit {str(provenance['data_commit'])[:10]}, content {provenance['data_content_hash']})",
        f"code        {str(provenance['code_commit'])[:10]}{' (dirty)' if provenance['code_dirty'] else ''}",
        f"config      {provenance['config_hash']}",
        f"files       SHA256SUMS digest {provenance['sha256sums_digest']}",
    ]
    if moved is None:
        lines.append("production  no audit entry puts this version in production before the prediction")
    else:
        lines.append(f"production  {moved['event']} at {moved['at']} by {moved['actor']} (audit #{moved['sequence']}): "
                     f"{moved['reason']}")  # fmt: skip
    return "\n".join(lines)


@app.command()
def history(config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False) -> None:
    """The audit trail of promotions, rollbacks and refusals, its chain verified (exit 1 when broken)."""
    settings, loaded = context(config)
    try:
        found = history_of(settings, loaded.model.name)
    except MlopsError as error:
        raise fail(error, 1) from None
    echo(json.dumps(found, indent=2) if as_json else show_history(found))
    if not found["intact"]:
        raise typer.Exit(1)


@app.command()
def trace(
    prediction_id: Annotated[str, typer.Argument(help="the prediction_id a response carried")],
    as_json: JsonOption = False,
) -> None:
    """Which version answered a logged prediction, what made that version, and who put it in production."""
    settings = get_settings()
    prepare_embedded_environment(settings)
    try:
        found = trace_of(settings, prediction_id)
    except MlopsError as error:
        raise fail(error, 1) from None
    echo(json.dumps(found, indent=2, default=str) if as_json else show_trace(found))


deployments_app = typer.Typer(help="The Prefect deployments of every flow.", no_args_is_help=True)
app.add_typer(deployments_app, name="deployments")


@deployments_app.command("apply")
def apply_deployments(
    config: Annotated[Path, typer.Option("--config", help="the monitor's config: its deploy.monitor_cron")] = REPO_ROOT
    / "configs"
    / "monitor_config.yaml",
    as_json: JsonOption = False,
) -> None:
    """Register train, evaluate, deploy, full and the weekly monitor on their work pools.

    Against PREFECT_API_URL when set, else the state folder's own Prefect database, which
    `make prefect-server` then shows. Each takes a config file and overrides as parameters.
    """
    from tasks.deployment.tasks import apply_all_deployments

    _, loaded = context(config)
    try:
        applied = apply_all_deployments(os.environ.get("PREFECT_API_URL"), loaded.deploy.monitor_cron)
    except MlopsError as error:
        raise fail(error, 1) from None
    if as_json:
        echo(json.dumps({"deployments": applied, "monitor_cron": loaded.deploy.monitor_cron}, indent=2))
        return
    for name, pool in applied.items():
        echo(f"{name:<24} on work pool {pool}")
    echo(f"monitor/monitor-weekly runs on {loaded.deploy.monitor_cron!r} (UTC)")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 4242,
) -> None:
    """The serving service (embedded defaults: the state folder's storage and SQLite log)."""
    prepare_embedded_environment(get_settings())
    command = [sys.executable, "-m", "uvicorn", "--factory", "services.dl_service.app:create_app"]
    # uvicorn replaces this process: Ctrl-C and SIGTERM reach it directly, so it drains the
    # prediction log and exits 0 (a parent that waited would kill it on its own interrupt).
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, [*command, "--host", host, "--port", str(port)])


@app.command()
def ui(
    prefect_port: Annotated[int, typer.Option(help="Prefect UI and API")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow UI")] = 5000,
    evidently_port: Annotated[int, typer.Option(help="Evidently UI")] = 8001,
) -> None:
    """The Prefect, MLflow and Evidently UIs over the state folder, on 127.0.0.1, until Ctrl-C."""
    settings = get_settings()
    prepare_embedded_environment(settings)
    state, bin_dir = settings.state_dir, Path(sys.executable).parent
    servers = {
        f"Prefect   http://127.0.0.1:{prefect_port}": [
            str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)
        ],
        f"MLflow    http://127.0.0.1:{mlflow_port}": [
            str(bin_dir / "mlflow"), "ui", "--backend-store-uri", settings.mlflow_tracking_uri,
            "--host", "127.0.0.1", "--port", str(mlflow_port),
        ],
        f"Evidently http://127.0.0.1:{evidently_port}": [
            str(bin_dir / "evidently"), "ui", "--workspace", str(state / "evidently"),
            "--host", "127.0.0.1", "--port", str(evidently_port),
        ],
    }  # fmt: skip
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes = []
    for label, command in servers.items():
        log = (logs / f"ui-{command[0].rsplit('/', 1)[-1]}.log").open("ab")
        # The Prefect UI calls the API at this address from the browser; by default it assumes port 4200.
        env = dict(os.environ, PREFECT_SERVER_UI_API_URL=f"http://127.0.0.1:{prefect_port}/api")
        processes.append(subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=log, env=env))
        echo(label)
    echo(f"logs in {logs}; Ctrl-C stops them")
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(1)
        echo("a UI server exited; see its log", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code (tests call this; `mlops` is ``app``)."""
    try:
        # without standalone mode, click returns a command's exit code instead of exiting
        code = app(args=argv, prog_name="mlops", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except typer.Exit as done:
        return int(done.exit_code)
    except typer.Abort:
        return BAD_INPUT
    except Exception as error:  # click's usage errors
        import click

        if isinstance(error, click.ClickException):
            error.show()
            return int(error.exit_code)
        raise


if __name__ == "__main__":
    sys.exit(main())
