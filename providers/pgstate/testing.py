"""A real, throwaway PostgreSQL server for tests and benchmarks.

`postgres_cluster()` runs `initdb` in a fresh temporary directory, starts `postgres` listening
only on a unix socket in that directory (no TCP port, so parallel test workers never collide),
with password authentication, and removes everything when done. When running as root (which
PostgreSQL refuses), the server runs as the unprivileged `nobody` user through `runuser`.
The binaries come from Debian's `postgresql` package (`make test` installs it when missing).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

SUPERUSER = "keyplan"
PASSWORD = "keyplan-test-password"


def postgres_bindir() -> Path | None:
    """Where initdb and postgres are: PATH, then Debian's versioned directories (newest first)."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]), reverse=True)
    return Path(candidates[0]).parent if candidates else None


@dataclass
class PostgresCluster:
    directory: Path
    socket_dir: Path
    port: int

    def conn_str(self, database: str = "postgres", *, user: str = SUPERUSER, password: str = PASSWORD) -> str:
        return f"host={self.socket_dir} port={self.port} dbname={database} user={user} password={password}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.conn_str(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.conn_str(name)


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "nobody", "--", *command]


def start_postgres_cluster(port: int = 5432, *, max_connections: int = 50) -> PostgresCluster:
    """initdb in a fresh temporary directory and the server started there, answering; stop it
    with `stop_postgres_cluster(cluster.directory)`."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql; `make test` installs it)")
    root = Path(tempfile.mkdtemp(prefix="keyplan-pg-"))
    data, sockets = root / "data", root / "sockets"
    try:
        sockets.mkdir()
        pwfile = root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            os.chmod(root, 0o755)
            for path in (root, sockets, pwfile):
                shutil.chown(path, "nobody")
        subprocess.run(
            _as_server_user(
                [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync", "--locale=C"]
            ),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        subprocess.run(
            _as_server_user(
                [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                 "-o", f"-c listen_addresses='' -c unix_socket_directories='{sockets}' -p {port} -c fsync=off "
                 f"-c max_connections={max_connections}",
                 "start"]
            ),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        cluster = PostgresCluster(directory=root, socket_dir=sockets, port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(cluster.conn_str(), connect_timeout=2).close()
                return cluster
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    except BaseException:
        stop_postgres_cluster(root)
        raise


def stop_postgres_command(directory: Path) -> list[str]:
    """The command that stops the server of the cluster in `directory` at once."""
    bindir = postgres_bindir()
    assert bindir is not None
    return _as_server_user([str(bindir / "pg_ctl"), "-D", str(directory / "data"), "-m", "immediate", "-w", "stop"])


def stop_postgres_cluster(directory: Path) -> None:
    """Stop the server of the cluster in `directory` (if it runs) and remove the cluster."""
    if (directory / "data" / "postmaster.pid").exists():
        subprocess.run(stop_postgres_command(directory), check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster(port: int = 5432) -> Iterator[PostgresCluster]:
    cluster = start_postgres_cluster(port)
    try:
        yield cluster
    finally:
        stop_postgres_cluster(cluster.directory)
