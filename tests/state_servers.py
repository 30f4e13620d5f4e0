"""Session fixtures: a moto S3 server process and a throwaway PostgreSQL cluster, one per test
worker (pytest-xdist workers each start their own; the cluster listens only on a unix socket in
its own temporary directory, so workers never share a port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.pgstate.testing import PostgresCluster, postgres_cluster
from providers.s3state.testing import MotoServer, moto_server


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    with postgres_cluster() as cluster:
        yield cluster
