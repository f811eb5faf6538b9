"""Signed model versions: an Ed25519 signature over the exact bytes of a version's ``SHA256SUMS``.

``SHA256SUMS`` pins every file of a version, so signing it signs the version. The checksums catch
corruption; the signature also catches a change made by someone who can write storage but does
not hold the private key. The signature file is one line::

    ed25519 <key id> <base64 signature>

The key id is a short fingerprint of the public key, so an operator can tell which key signed a
version. The private key (a PEM file) stays with whoever publishes versions; services hold only
the public key, as the base64 of its 32 raw bytes, one line that fits an environment variable.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tasks.core.errors import ConfigError, IntegrityError

ALGORITHM = "ed25519"
KEY_ID_CHARS = 16  # hex characters of the public key's sha256: enough to tell keys apart at a glance
_SIGNATURE_LINE = re.compile(rf"{ALGORITHM} ([0-9a-f]{{{KEY_ID_CHARS}}}) ([A-Za-z0-9+/]{{86}}==)\n")  # 64 bytes


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_private_key(private_key: Ed25519PrivateKey, path: Path) -> None:
    """Save the key as unencrypted PKCS#8 PEM that only its owner can read; an existing file is never replaced,
    because every version it signed would then fail verification."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The signing key from its PEM file, with an error that says what to set when it cannot be used."""
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"cannot read the signing key {path} ({error.strerror}): MLOPS_SIGNING_KEY_FILE must name a PEM file "
            "this user can read (`make secrets` writes .secrets/model-signing-key.pem; containers run as MLOPS_UID)"
        ) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{path} is not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """The form services are configured with: base64 of the 32 raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key from the base64 of its 32 raw bytes (``MLOPS_SERVICE_MODEL_VERIFY_KEY``)."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True))
    except ValueError:  # not base64 (binascii.Error is one), or not 32 bytes
        raise ConfigError(
            "MLOPS_SERVICE_MODEL_VERIFY_KEY is not the base64 of a 32-byte Ed25519 public key: "
            "copy it from the .env `make secrets` wrote"
        ) from None


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of the public key, written into every signature it checks."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_CHARS]


def sign_checksums(private_key: Ed25519PrivateKey, sums: bytes) -> str:
    """The text of the signature file for these exact ``SHA256SUMS`` bytes."""
    signature = base64.b64encode(private_key.sign(sums)).decode("ascii")
    return f"{ALGORITHM} {key_id(private_key.public_key())} {signature}\n"


def signed_by(signature_text: str, where: str) -> str:
    """The key id a signature file names (not yet checked: ``verify_signature`` does that)."""
    return _parse(signature_text, where)[0]


def verify_signature(public_key: Ed25519PublicKey, sums: bytes, signature_text: str | None, where: str) -> None:
    """Refuse ``sums`` unless ``signature_text`` is a valid signature of them by ``public_key``.

    ``signature_text`` is None for an unsigned version; ``where`` names the signature file in messages.
    """
    if signature_text is None:
        raise IntegrityError(
            f"{where} is missing: the version is unsigned; publish a new one with MLOPS_SIGNING_KEY_FILE set"
        )
    signer, signature = _parse(signature_text, where)
    expected = key_id(public_key)
    if signer != expected:
        raise IntegrityError(
            f"{where} is signed by key {signer}, not by the configured key {expected} "
            "(MLOPS_SERVICE_MODEL_VERIFY_KEY): the version was published with another signing key"
        )
    try:
        public_key.verify(signature, sums)
    except InvalidSignature:
        raise IntegrityError(
            f"{where}: bad signature: SHA256SUMS was changed after it was signed, or the signature was"
        ) from None


def _parse(signature_text: str, where: str) -> tuple[str, bytes]:
    match = _SIGNATURE_LINE.fullmatch(signature_text)
    if match is None:
        raise IntegrityError(
            f"{where} is malformed: expected one line '{ALGORITHM} <key id> <base64 signature>', "
            f"found {signature_text[:120]!r}"
        )
    return match.group(1), base64.b64decode(match.group(2))
