"""Write .env for the docker-compose stack: every secret of .env.example, random, never reused.

    python deployments/stack/write_secrets.py [--env-file .env] [--force]

An existing file is kept unless --force: rotating database passwords needs the steps in README.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=\s*$")


def secret_names(example: Path) -> list[str]:
    """The required variables: lines of .env.example with a name and no value."""
    return [m.group(1) for line in example.read_text().splitlines() if (m := SECRET_LINE.match(line))]


def write_env_file(path: Path) -> int:
    """A random value for each secret of .env.example, readable by the owner only; returns how many."""
    names = secret_names(ROOT / ".env.example")
    lines = [f"{name}={secrets.token_urlsafe(32)}" for name in names]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # the mode given to open() applies only to a file it creates
    with os.fdopen(descriptor, "w") as handle:
        handle.write("# Written by `make secrets`; see .env.example for what each one is.\n")
        handle.write("\n".join(lines) + "\n")
    return len(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args()
    if args.env_file.exists() and not args.force:
        print(f"{args.env_file} exists; kept (use --force to replace it)", file=sys.stderr)
        return 0
    count = write_env_file(args.env_file)
    print(f"wrote {count} secrets to {args.env_file} (mode 600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
