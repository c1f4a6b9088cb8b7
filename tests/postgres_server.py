"""A private PostgreSQL server for the tests: its own cluster in a temporary
directory, listening on 127.0.0.1 only, stopped when the session ends.

PostgreSQL and pgvector are installed by `make test` (scripts/setup-postgres.sh).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("RAGTUNE_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PostgresServer:
    base: Path
    port: int
    user: str = "ragtune"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def table_url(self, table: str) -> str:
        return f"{self.url}?table={table}"

    def stop(self) -> None:
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.base / "data"), "-m", "fast", "stop"])


def missing_reason() -> str | None:
    """Why no server can be started here, or None."""
    if not (PG_BIN / "postgres").exists():
        return f"PostgreSQL is not installed ({PG_BIN}); run `make test` as root"
    sharedir = subprocess.run(
        [str(PG_BIN / "pg_config"), "--sharedir"], capture_output=True, text=True
    ).stdout.strip()
    if not (Path(sharedir) / "extension" / "vector.control").exists():
        return "pgvector is not installed; run scripts/setup-postgres.sh as root"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL will not start as root"
    return None


def start_postgres(base: Path) -> PostgresServer:
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root; the Debian package made this user.
        shutil.chown(base, "postgres", "postgres")
        os.chmod(base, 0o700)
    port = _free_port()
    _run(
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(base / "data"),
            "-U",
            "ragtune",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ]
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run(
        [
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(base / "data"),
            "-l",
            str(base / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        ]
    )
    return PostgresServer(base, port)


def _run(command: list[str]) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
