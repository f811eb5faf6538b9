"""Write .env for the docker-compose stack: every secret of .env.example, random, never reused.

    python -m deployments.stack.write_secrets [--env-file .env] [--force]

An existing file is kept unless --force: rotating database passwords needs the steps in README.
Beside it, ``.secrets/tls/`` holds nginx's TLS certificate (self-signed unless you put yours
there; deployments/stack/tls.py), and ``.secrets/model-signing-key.pem`` is the private key that signs published model
versions; .env gets its public half as ``MLOPS_SERVICE_MODEL_VERIFY_KEY``. The key pair is kept
even with --force: every version it signed would fail verification under a new one.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

from deployments.stack.tls import ensure_certificate, tls_folder
from tasks.core.signing import generate_private_key, load_private_key, public_key_text, write_private_key

ROOT = Path(__file__).resolve().parents[2]
SECRET_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=\s*$")
VERIFY_KEY = "MLOPS_SERVICE_MODEL_VERIFY_KEY"  # not a secret: the public half of the signing key
SIGNING_KEY_FILE = Path(".secrets") / "model-signing-key.pem"  # beside .env; docker-compose.yml mounts it


def secret_names(example: Path) -> list[str]:
    """The required variables: lines of .env.example with a name and no value."""
    return [m.group(1) for line in example.read_text().splitlines() if (m := SECRET_LINE.match(line))]


def signing_key_path(env_file: Path) -> Path:
    return env_file.parent / SIGNING_KEY_FILE


def verify_key_for(env_file: Path) -> str:
    """The public key of the signing key beside ``env_file``, creating the pair if there is none yet."""
    path = signing_key_path(env_file)
    if not path.exists():
        write_private_key(generate_private_key(), path)
    return public_key_text(load_private_key(path).public_key())


def write_env_file(path: Path) -> int:
    """A random value for each secret of .env.example, readable by the owner only; returns how many."""
    names = secret_names(ROOT / ".env.example")
    values = {name: secrets.token_urlsafe(32) for name in names} | {VERIFY_KEY: verify_key_for(path)}
    lines = [f"{name}={values[name]}" for name in names]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # the mode given to open() applies only to a file it creates
    with os.fdopen(descriptor, "w") as handle:
        handle.write("# Written by `make secrets`; see .env.example for what each one is.\n")
        handle.write("\n".join(lines) + "\n")
    return len(lines)


def complete_env_file(path: Path) -> bool:
    """Complete an .env written by an older release: a random value for each secret it lacks, and the
    verify key (with the key pair) if it has none; True when something was added. Existing values stay."""
    text = path.read_text()
    present = set(re.findall(r"^([A-Z][A-Z0-9_]*)=\S", text, re.MULTILINE))
    lines = [
        f"{name}={secrets.token_urlsafe(32)}" for name in secret_names(ROOT / ".env.example") if name not in present
    ]
    if VERIFY_KEY not in present:
        lines.append(f"{VERIFY_KEY}={verify_key_for(path)}")
    if not lines:
        return False
    with path.open("a") as handle:
        handle.write(("" if text.endswith("\n") or not text else "\n") + "\n".join(lines) + "\n")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args()
    if ensure_certificate(tls_folder(args.env_file)):
        print(f"wrote a self-signed TLS certificate to {tls_folder(args.env_file)} (replace it with yours)")
    if args.env_file.exists() and not args.force:
        if complete_env_file(args.env_file):
            print(f"added the secrets it lacked to {args.env_file}; signing key in {signing_key_path(args.env_file)}")
        print(f"{args.env_file} exists; kept (use --force to replace it)", file=sys.stderr)
        return 0
    count = write_env_file(args.env_file)
    print(f"wrote {count} secrets to {args.env_file} (mode 600); signing key in {signing_key_path(args.env_file)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
