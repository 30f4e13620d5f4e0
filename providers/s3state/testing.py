"""A real S3 implementation for tests and benchmarks: moto's server mode (`moto[server]`, in the
test extras) started as its own process on 127.0.0.1 and reached through boto3 over HTTP.

moto 5 checks `If-Match` / `If-None-Match: *` on PutObject and `If-Match` on DeleteObject, which
is what this backend's locking and compare-and-swap rely on. Unlike S3, moto checks the
condition and stores the object in two steps without a lock between them, so two requests
racing within microseconds could both pass; S3 itself evaluates the condition atomically. The
server is therefore started through `providers.s3state.moto_atomic`, which runs the requests
that may write one at a time: conditional writes are atomic, as in S3.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3


@dataclass
class MotoServer:
    """A moto server at `url`: started here (`process`), or by another process (None), which
    stops it."""

    url: str
    process: subprocess.Popen[bytes] | None = None

    def client(self) -> Any:
        return boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=self.url,
            aws_access_key_id="keyplan-local",
            aws_secret_access_key="keyplan-local",
        )

    def new_bucket(self, *, versioned: bool = False) -> str:
        name = f"keyplan-{uuid.uuid4().hex[:16]}"
        client = self.client()
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_moto_server(timeout: float = 30.0, environment: Mapping[str, str] | None = None) -> MotoServer:
    """Start moto's server (with atomic conditional writes) on a free loopback port and wait
    until it answers.
    `environment` adds moto settings, e.g. INITIAL_NO_AUTH_ACTION_COUNT to enforce IAM
    authentication after that many requests (the requests before it create users and keys)."""
    port = _free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true", **(environment or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "providers.s3state.moto_atomic", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode} before answering")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            return MotoServer(url=url, process=process)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"moto server did not answer on {url} within {timeout:g}s")


@contextlib.contextmanager
def moto_server(environment: Mapping[str, str] | None = None) -> Iterator[MotoServer]:
    server = start_moto_server(environment=environment)
    try:
        yield server
    finally:
        server.stop()
