"""Signed versions: a version loads only with a valid signature of its SHA256SUMS by the configured key."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tasks.core.bundle import fetch_bundle
from tasks.core.errors import ConfigError, IntegrityError, PublishError
from tasks.core.settings import ServiceSettings, Settings
from tasks.core.signing import (
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    public_key_text,
    sign_checksums,
    verify_signature,
    write_private_key,
)
from tasks.core.storage import CHECKSUMS, SIGNATURE, publish_version, verify_version

SUMS = b"0" * 64 + b"  metadata.yaml\n"


@pytest.fixture(scope="module")
def signing_key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.fixture
def signed(bundle: Path, tmp_path: Path, signing_key: Ed25519PrivateKey) -> Path:
    """Version 1 of "demo", published with the signing key; returns the version's folder."""
    return Path(publish_version(bundle, str(tmp_path / "storage"), "demo", "1", signing_key))


def fetch(folder: Path, signing_key: Ed25519PrivateKey, tmp_path: Path) -> None:
    fetch_bundle(str(folder.parents[2]), "demo", "1", tmp_path / "cache", verify_key=signing_key.public_key())


def test_a_signature_verifies_the_exact_bytes_it_signed(signing_key: Ed25519PrivateKey) -> None:
    text = sign_checksums(signing_key, SUMS)
    assert re.fullmatch(r"ed25519 [0-9a-f]{16} [A-Za-z0-9+/]{86}==\n", text)
    assert text.split()[1] == key_id(signing_key.public_key())
    verify_signature(signing_key.public_key(), SUMS, text, "SHA256SUMS.sig")
    with pytest.raises(IntegrityError, match="bad signature"):
        verify_signature(signing_key.public_key(), SUMS.replace(b"0", b"1", 1), text, "SHA256SUMS.sig")


def test_a_signed_version_is_published_whole_and_loads(
    signed: Path, signing_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    assert sorted(p.name for p in signed.iterdir()) == sorted(
        [CHECKSUMS, SIGNATURE, "metadata.yaml", "model.keras", "reference_features.parquet", "uae_encoder.keras"]
    )
    check = subprocess.run(["sha256sum", "--check", "--strict", CHECKSUMS], cwd=signed, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr  # the signature changes nothing for sha256sum
    assert SIGNATURE not in verify_version(str(signed.parents[2]), "demo", "1").files
    verify_signature(
        signing_key.public_key(), (signed / CHECKSUMS).read_bytes(), (signed / SIGNATURE).read_text(), SIGNATURE
    )
    fetch(signed, signing_key, tmp_path)


def replace_model_and_its_line(folder: Path) -> None:
    """What someone who can write storage but holds no key could do: a new model, a matching SHA256SUMS."""
    (folder / "model.keras").write_bytes(b"other weights")
    digest = hashlib.sha256(b"other weights").hexdigest()
    text = re.sub(r"^[0-9a-f]{64}(?=  model\.keras$)", digest, (folder / CHECKSUMS).read_text(), flags=re.M)
    (folder / CHECKSUMS).write_text(text)


def altered_signature(folder: Path) -> None:
    algorithm, signer, signature = (folder / SIGNATURE).read_text().split()
    raw = bytearray(base64.b64decode(signature))
    raw[0] ^= 1
    (folder / SIGNATURE).write_text(f"{algorithm} {signer} {base64.b64encode(bytes(raw)).decode()}\n")


def signed_by_another_key(folder: Path) -> None:
    (folder / SIGNATURE).write_text(sign_checksums(generate_private_key(), (folder / CHECKSUMS).read_bytes()))


TAMPERING: dict[str, tuple[Callable[[Path], object], str]] = {
    "sums-rewritten": (replace_model_and_its_line, "bad signature: SHA256SUMS was changed after it was signed"),
    "signature-altered": (altered_signature, "bad signature"),
    "another-key": (signed_by_another_key, "not by the configured key"),
    "malformed": (lambda folder: (folder / SIGNATURE).write_text("signed, trust me\n"), "is malformed: expected"),
    "no-final-newline": (lambda f: (f / SIGNATURE).write_text((f / SIGNATURE).read_text().strip()), "is malformed"),
    "missing": (lambda folder: (folder / SIGNATURE).unlink(), "is missing: the version is unsigned"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERING))
def test_a_tampered_or_unsigned_version_is_refused_with_the_reason(
    signed: Path, signing_key: Ed25519PrivateKey, tmp_path: Path, tamper: str
) -> None:
    change, reason = TAMPERING[tamper]
    change(signed)
    with pytest.raises(IntegrityError, match=re.escape(reason)) as refused:
        fetch(signed, signing_key, tmp_path)
    assert f"models/demo/1/{SIGNATURE}" in str(refused.value)  # names the version


def test_without_a_key_the_signature_is_not_required(bundle: Path, tmp_path: Path) -> None:
    """The development mode without a verify key: unsigned versions load (the service warns)."""
    storage = str(tmp_path / "storage")
    publish_version(bundle, storage, "demo", "1")
    assert fetch_bundle(storage, "demo", "1", tmp_path / "cache").version == "1"


def test_a_remote_version_is_signed_and_verified(bundle: Path, signing_key: Ed25519PrivateKey, tmp_path: Path) -> None:
    storage = f"memory://{tmp_path.name}/storage"  # no atomic rename: files copied, SHA256SUMS last
    publish_version(bundle, storage, "demo", "1", signing_key)
    fetch_bundle(storage, "demo", "1", tmp_path / "cache", verify_key=signing_key.public_key())
    with pytest.raises(IntegrityError, match="not by the configured key"):
        fetch_bundle(storage, "demo", "1", tmp_path / "cache", verify_key=generate_private_key().public_key())


def test_the_signature_cannot_be_listed_in_sums_or_shipped_in_a_bundle(
    signed: Path, bundle: Path, signing_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    digest = hashlib.sha256((signed / SIGNATURE).read_bytes()).hexdigest()
    lines = [*(signed / CHECKSUMS).read_text().splitlines(keepends=True), f"{digest}  {SIGNATURE}\n"]
    lines.sort(key=lambda line: line.split("  ")[1])  # by name, as sha256sum lists them
    (signed / CHECKSUMS).write_text("".join(lines))
    with pytest.raises(IntegrityError, match=rf"lists {re.escape(SIGNATURE)}, which it cannot cover"):
        verify_version(str(signed.parents[2]), "demo", "1")
    (bundle / SIGNATURE).write_text(sign_checksums(signing_key, SUMS))
    with pytest.raises(PublishError, match=f"publishing writes {re.escape(SIGNATURE)} itself"):
        publish_version(bundle, str(tmp_path / "other-storage"), "demo", "1", signing_key)


def test_the_private_key_file_is_private_and_never_replaced(signing_key: Ed25519PrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    write_private_key(signing_key, path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert key_id(load_private_key(path).public_key()) == key_id(signing_key.public_key())
    with pytest.raises(FileExistsError):
        write_private_key(generate_private_key(), path)


def test_an_unusable_private_key_file_says_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the signing key .* MLOPS_SIGNING_KEY_FILE must name"):
        load_private_key(tmp_path / "absent.pem")
    (tmp_path / "not.pem").write_text("hello\n")
    with pytest.raises(ConfigError, match="is not an unencrypted PEM private key"):
        load_private_key(tmp_path / "not.pem")
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ec.pem").write_bytes(ec_key)
    with pytest.raises(ConfigError, match="not an Ed25519 private key"):
        load_private_key(tmp_path / "ec.pem")


def test_the_public_key_round_trips_as_base64_and_a_bad_one_is_refused(signing_key: Ed25519PrivateKey) -> None:
    text = public_key_text(signing_key.public_key())
    assert len(base64.b64decode(text)) == 32
    assert key_id(load_public_key(text)) == key_id(signing_key.public_key())
    for bad in ("", "not base64!", base64.b64encode(b"x" * 31).decode()):
        with pytest.raises(ConfigError, match="not the base64 of a 32-byte Ed25519 public key"):
            load_public_key(bad)


TOKEN = "x7Qk2-Lm9pZr4VtB8nWc3YfH6sJd1GaE0uKo"


def test_production_settings_require_a_valid_verify_key(signing_key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match=r"MODEL_VERIFY_KEY must be set in production mode.*`make secrets`"):
        Settings(service=ServiceSettings(mode="production", admin_token=TOKEN))
    with pytest.raises(ValueError, match="not the base64 of a 32-byte Ed25519 public key"):
        Settings(service=ServiceSettings(mode="development", model_verify_key="abc"))
    key = public_key_text(signing_key.public_key())
    production = ServiceSettings(mode="production", admin_token=TOKEN, model_verify_key=key)
    assert Settings(service=production).service.model_verify_key == key
    assert Settings(service=ServiceSettings(mode="development")).service.model_verify_key == ""
