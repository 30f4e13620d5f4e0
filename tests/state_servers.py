"""Session fixtures: a moto S3 server process and a throwaway PostgreSQL cluster (listening only
on a unix socket in its own temporary directory). Each test keeps to a bucket or a database of
its own.

The pytest-xdist workers of one run share them: the first worker that needs one starts it, under
a file lock in a directory of the run (named by xdist's id of the run), and writes there where it
listens and how to stop it; the others use it. A reaper (tests/server_reaper.py), started by the
first worker, stops them and removes the directory once no worker that used them is alive,
whether the run ended, was interrupted or crashed. A process outside xdist starts its own and
stops them at its end."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.pgstate.testing import (
    PostgresCluster,
    postgres_cluster,
    start_postgres_cluster,
    stop_postgres_command,
)
from providers.s3state.testing import MotoServer, moto_server, start_moto_server

REAPER = Path(__file__).with_name("server_reaper.py")


def _started(pid: int) -> str:
    """When process `pid` started (its start time in /proc): with the pid, it names the process."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


class RunServers:
    """The servers the workers of the run `run_id` share, described in a directory of the run."""

    def __init__(self, run_id: str) -> None:
        self.root = Path(tempfile.gettempdir()) / f"keyplan-test-servers-{run_id}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        while True:
            self.root.mkdir(mode=0o700, exist_ok=True)
            lock = self.root / "lock"
            with open(lock, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    current = os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino
                except FileNotFoundError:
                    current = False
                if current:
                    yield
                    return
            # the reaper removed the directory (every worker that used it had ended) while this
            # one waited for the lock: start over with a new one

    def server(self, kind: str, start: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The run's server of `kind` (where it listens, how to stop it), started by `start` if no
        worker started it yet; this worker is counted among its users."""
        with self._locked():
            workers = self.root / "workers"
            if not workers.exists():
                workers.mkdir()
                subprocess.Popen(
                    [sys.executable, "-I", str(REAPER), str(self.root)], start_new_session=True,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            (workers / str(os.getpid())).write_text(_started(os.getpid()))
            record = self.root / f"{kind}.json"
            if record.exists():
                found: dict[str, Any] = json.loads(record.read_text())
                return found
            started = start()
            record.write_text(json.dumps(started))
            return started


def _run_servers() -> RunServers | None:
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    return RunServers(run_id) if run_id else None


def _start_moto() -> dict[str, Any]:
    server = start_moto_server()
    assert server.process is not None
    return {"url": server.url, "pid": server.process.pid, "started": _started(server.process.pid)}


def _start_postgres() -> dict[str, Any]:
    cluster = start_postgres_cluster(max_connections=200)  # four workers' connections at once
    return {
        "directory": str(cluster.directory), "socket_dir": str(cluster.socket_dir), "port": cluster.port,
        "stop": stop_postgres_command(cluster.directory),
    }  # fmt: skip


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    shared = _run_servers()
    if shared is not None:
        yield MotoServer(url=shared.server("moto", _start_moto)["url"])
        return
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    shared = _run_servers()
    if shared is not None:
        found = shared.server("postgres", _start_postgres)
        yield PostgresCluster(Path(found["directory"]), Path(found["socket_dir"]), int(found["port"]))
        return
    with postgres_cluster() as cluster:
        yield cluster


class CuttableProxy:
    """A loopback TCP proxy in front of a server that can drop every connection and refuse new
    ones (`cut`), then let them through again (`restore`): a network outage between keyplan and
    its state store, with the store itself and what it holds untouched."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.open = True
        self._sockets: list[socket.socket] = []
        self._guard = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._guard:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open = False
        with self._guard:
            sockets, self._sockets = self._sockets, []
        for end in sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
                end.close()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()
