"""Shadow before promotion, end to end: the deploy flow puts a passed challenger in shadow, a real service
runs it on live traffic, and later deploy runs refuse it or promote it on what it said there."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tasks.core.audit import read_history, verify_chain
from tasks.core.pointer import read_pointer
from tasks.core.settings import get_settings
from tasks.core.shadow_pointer import read_shadow
from tasks.data.dataset import read_manifest
from tasks.ops.cli import status_of
from tests.helpers.data import tiny_config
from tests.helpers.service import running_service, wait_until

pytestmark = [pytest.mark.flow, pytest.mark.slow]

LENIENT = ("evaluate.thresholds={}", "deploy.margin=1.0", "deploy.slice_margin=1.0")


def shadow_rows(database: Path) -> int:
    import sqlite3

    with sqlite3.connect(database) as connection:
        try:
            return int(connection.execute("SELECT count(*) FROM shadow_predictions").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_a_challenger_is_shadowed_on_live_traffic_then_refused_or_promoted_on_what_it_said(
    flow_state: Path,
    tiny_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from flows.deploy_flow import deploy_flow
    from flows.train_flow import train_flow

    monkeypatch.setenv("MLOPS_SERVICE_ADMIN_TOKEN", "test-token-1234")
    monkeypatch.setenv("MLOPS_SERVICE_LOG_FLUSH_SECONDS", "0.05")
    get_settings.cache_clear()
    settings = get_settings()
    storage, database = settings.central_storage_url, Path(settings.prediction_database_url.removeprefix("sqlite:///"))
    train_flow(config=tiny_config(tiny_repo, config="train_config.yaml"))
    assert deploy_flow(config=tiny_config(tiny_repo, *LENIENT, config="deploy_config.yaml")).promoted
    train_flow(config=tiny_config(tiny_repo, "train.seed=7", config="train_config.yaml"))
    manifest = read_manifest(tiny_repo / "data")
    images = [tiny_repo / "data" / p for p in manifest.loc[manifest["split"] == "test", "path"].head(40)]

    with running_service({}, tmp_path / "server.log") as url:

        def deploy(*rule: str):  # type: ignore[no-untyped-def]
            shadow = ("deploy.shadow.enabled=true", f"deploy.reload_urls=[{url}/admin/reload]", *rule)
            return deploy_flow(config=tiny_config(tiny_repo, *LENIENT, *shadow, config="deploy_config.yaml"))

        def traffic() -> None:
            before = shadow_rows(database)
            for image in images:
                answer = httpx.post(f"{url}/predict", files={"file": ("x.png", image.read_bytes(), "image/png")})
                assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
            wait_until(lambda: shadow_rows(database) == before + len(images), "the shadow's rows")

        # Passed offline: in shadow, not promoted, and every service now runs it beside version 1.
        started = deploy()
        assert not started.promoted and started.in_shadow and "in shadow beside version 1" in started.reason
        assert read_shadow(storage, "fashion-cnn").version == "2"  # type: ignore[union-attr]
        assert httpx.get(f"{url}/ready").json()["shadow_version"] == "2"
        status = status_of(settings, "fashion-cnn")  # what `mlops status --json` prints
        assert status["production"]["version"] == "1" and status["shadow"]["version"] == "2"
        traffic()

        waiting = deploy("deploy.shadow.min_predictions=1000")
        assert waiting.in_shadow and "40 of 1000 shadow predictions so far" in waiting.reason
        assert waiting.shadow is not None and waiting.shadow["predictions"] == 40

        # Agreement required beyond what the shadow showed: refused, and the shadow stops everywhere.
        refused = deploy("deploy.shadow.min_predictions=40", "deploy.shadow.min_agreement=0.999")
        assert not refused.promoted and not refused.in_shadow and refused.reason.startswith("failed in shadow")
        assert read_shadow(storage, "fashion-cnn") is None
        assert httpx.get(f"{url}/ready").json()["shadow_version"] is None

        # Deployed again, shadowed again on fresh traffic, and promoted on it.
        assert deploy().in_shadow
        traffic()
        promoted = deploy("deploy.shadow.min_predictions=40", "deploy.shadow.min_agreement=0.0")
        assert promoted.promoted and promoted.champion_after == "2" and "in shadow: agreement" in promoted.reason
        assert promoted.shadow is not None and promoted.shadow["predictions"] == 40  # this shadow's rows only
        assert read_pointer(storage, "fashion-cnn").version == "2"  # type: ignore[union-attr]
        assert read_shadow(storage, "fashion-cnn") is None
        ready = httpx.get(f"{url}/ready").json()
        assert (ready["model_version"], ready["shadow_version"]) == ("2", None)

    trail = read_history(storage, "fashion-cnn")
    assert [(e.event, e.version) for e in trail] == [
        ("promotion", "1"), ("shadow_start", "2"), ("shadow_stop", "2"), ("refused", "2"),
        ("shadow_start", "2"), ("promotion", "2"), ("shadow_stop", "2"),
    ]  # fmt: skip
    assert trail[3].evidence is not None and trail[3].evidence["shadow"]["status"] == "failed"
    assert trail[5].evidence is not None and trail[5].evidence["shadow"]["status"] == "ready"
    assert all(e.actor.startswith("flow run ") for e in trail) and verify_chain(storage, "fashion-cnn") == []
