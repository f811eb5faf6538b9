"""With a signing key configured, the train flow publishes a version that verifies against its public key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.bundle import fetch_bundle
from tasks.core.settings import get_settings
from tasks.core.signing import generate_private_key, key_id, write_private_key
from tasks.core.storage import SIGNATURE
from tests.helpers.data import tiny_config

pytestmark = [pytest.mark.flow, pytest.mark.slow]


def test_train_flow_signs_what_it_publishes(
    flow_state: Path, tiny_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.train_flow import train_flow

    key = generate_private_key()
    write_private_key(key, tmp_path / "keys" / "signing.pem")
    monkeypatch.setenv("MLOPS_SIGNING_KEY_FILE", str(tmp_path / "keys" / "signing.pem"))
    get_settings.cache_clear()
    result = train_flow(config=tiny_config(tiny_repo, config="train_config.yaml"), config_file="train.yaml")
    assert (Path(result.storage_uri) / SIGNATURE).read_text().split()[1] == key_id(key.public_key())
    settings = get_settings()
    bundle = fetch_bundle(
        settings.central_storage_url, "fashion-cnn", result.version, settings.cache_dir, verify_key=key.public_key()
    )
    assert bundle.version == result.version
