"""`make secrets` writes the model signing key pair, and the stack gives each half only to whom it belongs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from deployments.stack.local_stack import read_env_file, resolved_compose
from deployments.stack.write_secrets import (
    VERIFY_KEY,
    complete_env_file,
    secret_names,
    signing_key_path,
    write_env_file,
)
from tasks.core.settings import REPO_ROOT
from tasks.core.signing import load_private_key, public_key_text

PUBLISHERS = {"worker-training", "jupyter"}  # the containers that run the train flow, which publishes


def public_key_of(env_file: Path) -> str:
    return public_key_text(load_private_key(signing_key_path(env_file)).public_key())


def test_secrets_come_with_a_private_signing_key_and_its_public_half_in_env(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    write_env_file(env_file)
    key_file = signing_key_path(env_file)
    assert key_file == tmp_path / ".secrets" / "model-signing-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert read_env_file(env_file)[VERIFY_KEY] == public_key_of(env_file)


def test_the_key_pair_is_kept_when_secrets_are_rewritten(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    write_env_file(env_file)
    pem = signing_key_path(env_file).read_bytes()
    write_env_file(env_file)  # what --force does: new passwords, the same signing key
    assert signing_key_path(env_file).read_bytes() == pem
    assert read_env_file(env_file)[VERIFY_KEY] == public_key_of(env_file)


def test_an_env_file_from_an_older_release_gets_what_it_lacks_once(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWORD=kept")  # no signing key, no newer secrets, no final newline
    assert complete_env_file(env_file) and not complete_env_file(env_file)
    values = read_env_file(env_file)
    assert values["POSTGRES_PASSWORD"] == "kept" and values[VERIFY_KEY] == public_key_of(env_file)
    assert set(secret_names(REPO_ROOT / ".env.example")) <= set(values)
    assert all(len(value) >= 32 for name, value in values.items() if name != "POSTGRES_PASSWORD")


def test_only_publishing_containers_get_the_private_key_and_every_app_container_the_public_one(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    write_env_file(env_file)
    resolved = resolved_compose(env_file)  # docker-compose.yml as Compose v2 resolves it
    assert resolved["secrets"]["model-signing-key"]["file"] == str(REPO_ROOT / ".secrets" / "model-signing-key.pem")
    services = resolved["services"]
    holders = {name for name, service in services.items() if service.get("secrets")}
    assert holders == PUBLISHERS
    for name in PUBLISHERS:
        target = services[name]["secrets"][0]["target"]
        assert services[name]["environment"]["MLOPS_SIGNING_KEY_FILE"] == target
    service = services["service"]
    assert "MLOPS_SIGNING_KEY_FILE" not in service["environment"]
    assert service["environment"]["MLOPS_SERVICE_MODEL_VERIFY_KEY"] == public_key_of(env_file)
    assert all(".secrets" not in volume.get("source", "") for volume in service.get("volumes", []))


def test_the_private_key_is_never_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".secrets/model-signing-key.pem"], cwd=REPO_ROOT, check=False
    )
    assert ignored.returncode == 0
