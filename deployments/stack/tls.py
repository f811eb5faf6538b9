"""The TLS certificate nginx serves: yours, or a self-signed one made here.

``make secrets`` writes ``.secrets/tls/tls.crt`` and ``tls.key`` when they are missing: an ECDSA
P-256 key and a certificate for localhost, 127.0.0.1, this machine's name and the names in
MLOPS_TLS_NAMES (comma-separated), valid for 825 days. Replace both files with a certificate from
your own authority to stop browsers warning; an existing pair is never overwritten.

The key is readable by everyone *inside* ``.secrets/`` (mode 700): nginx reads it as its own
non-root user through the bind mount, while on the host only the folder's owner gets in.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 825  # the longest validity browsers accept for a server certificate


def tls_folder(env_file: Path) -> Path:
    return env_file.parent / ".secrets" / "tls"


def certificate_names() -> list[str]:
    extra = [name.strip() for name in os.environ.get("MLOPS_TLS_NAMES", "").split(",") if name.strip()]
    return list(dict.fromkeys(["localhost", "127.0.0.1", socket.gethostname(), *extra]))


def ensure_certificate(folder: Path) -> bool:
    """Write a self-signed pair into ``folder`` unless one is there; True when written."""
    certificate_path, key_path = folder / "tls.crt", folder / "tls.key"
    if certificate_path.exists() and key_path.exists():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    folder.parent.chmod(0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    names = certificate_names()
    alternative = [_general_name(name) for name in names]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.write_bytes(pem_key)
    key_path.chmod(0o644)  # see the module's docstring: the folder, not the file, keeps it private
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return True


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
