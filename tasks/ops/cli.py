"""Operations on the deployed model:  python -m tasks.ops status|models|promote V|rollback [--to V]

status     the champion: version, metrics, data revision, code commit, when it was deployed
models     every registered version with its aliases, metrics and whether it is published
promote V  put version V in production (alias and pointer together), tell services
rollback   back to the previous production version (or --to V)
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from configs.schema import load_config
from tasks.core import tracking
from tasks.core.bundle import METADATA_FILE
from tasks.core.errors import MlopsError
from tasks.core.pointer import ProductionPointer, read_pointer
from tasks.core.settings import REPO_ROOT, Settings, get_settings, prepare_embedded_environment
from tasks.core.storage import list_versions, model_root
from tasks.deployment.notify import notify_services
from tasks.deployment.release import release_version
from tasks.deployment.tasks import record_variable


def _metadata(settings: Settings, name: str, version: str) -> dict[str, Any]:
    fs, root = model_root(settings.central_storage_url, name)
    path = f"{root}/{version}/{METADATA_FILE}"
    if not fs.exists(path):
        return {}
    with fs.open(path, "r") as handle:
        return yaml.safe_load(handle) or {}


def show_status(settings: Settings, name: str) -> str:
    pointer = read_pointer(settings.central_storage_url, name)
    if pointer is None:
        return f"{name}: nothing in production yet (run the full flow)"
    client = tracking.mlflow_client(settings)
    alias = tracking.alias_version(client, name, tracking.CHAMPION_ALIAS)
    meta = _metadata(settings, name, pointer.version)
    data, code = meta.get("dataset", {}), meta.get("code", {})
    lines = [
        f"model       {name}",
        f"version     {pointer.version} (registry alias champion -> {alias})",
        f"deployed    {pointer.deployed_at}: {pointer.reason}",
        f"previous    {pointer.previous_version or '-'}",
        f"data        {data.get('path', '?')} {data.get('revision', '?')} (commit {str(data.get('commit', '?'))[:10]})",
        f"code        {str(code.get('commit', '?'))[:10]}{' (dirty)' if code.get('dirty') else ''}",
        "metrics     " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(pointer.metrics.items()) if "/" not in k),
    ]
    return "\n".join(lines)


def show_models(settings: Settings, name: str) -> str:
    client = tracking.mlflow_client(settings)
    published = set(list_versions(settings.central_storage_url, name))
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    aliases_of: dict[str, list[str]] = {}
    if versions:  # search results carry no aliases; the registered model has them all
        for alias, number in client.get_registered_model(name).aliases.items():
            aliases_of.setdefault(str(number), []).append(alias)
    rows = [f"{'version':>7}  {'aliases':<20} {'published':<9} {'test acc':>8}  created"]
    for version in versions:
        number = str(version.version)
        accuracy = version.tags.get("eval.test.accuracy", "")[:6]
        aliases = ",".join(sorted(aliases_of.get(number, []))) or "-"
        is_published = "yes" if number in published else "no"
        created = _iso(version.creation_timestamp // 1000)
        rows.append(f"{number:>7}  {aliases:<20} {is_published:<9} {accuracy:>8}  {created}")
    return "\n".join(rows) if versions else f"{name}: no registered versions"


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def move_production(
    settings: Settings, name: str, version: str, reason: str, reload_urls: list[str]
) -> ProductionPointer:
    """The deploy flow's release step, from the command line: pointer, alias, services, Prefect variable."""
    client = tracking.mlflow_client(settings)
    current = read_pointer(settings.central_storage_url, name)
    metrics = (
        current.metrics
        if current and current.version == version
        else _metadata(settings, name, version).get("metrics", {})
    )
    pointer = release_version(client, settings.central_storage_url, name, version, reason, metrics)
    notify_services(reload_urls, settings.service.admin_token or None)
    record_variable(pointer)
    return pointer


def rollback_target(settings: Settings, name: str, to: str | None) -> str:
    if to is not None:
        return to
    pointer = read_pointer(settings.central_storage_url, name)
    if pointer is None or pointer.previous_version is None:
        raise MlopsError(f"{name}: no previous production version to roll back to; use --to VERSION")
    return pointer.previous_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.ops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=REPO_ROOT / "configs" / "full_flow_config.yaml",
        help="names the model and reload URLs (default: the shipped experiment)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status")
    commands.add_parser("models")
    promote = commands.add_parser("promote")
    promote.add_argument("version")
    rollback = commands.add_parser("rollback")
    rollback.add_argument("--to", dest="to", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = load_config(args.config, root=REPO_ROOT)
        settings = get_settings()
        prepare_embedded_environment(settings)
        name = config.model.name
        if args.command == "status":
            print(show_status(settings, name))
        elif args.command == "models":
            print(show_models(settings, name))
        else:
            version = args.version if args.command == "promote" else rollback_target(settings, name, args.to)
            pointer = move_production(settings, name, version, f"{args.command} by operator", config.deploy.reload_urls)
            print(f"{name} version {pointer.version} is in production (previous: {pointer.previous_version})")
    except MlopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
