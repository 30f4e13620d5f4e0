"""The state-backend conformance suite (keyplan.testing.state_suite) against every backend:
the local file, S3 (moto's server mode, a real server process reached through boto3) and
PostgreSQL (a throwaway cluster of the real server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyplan.testing.state_suite import BackendHarness, StateBackendConformance
from providers.pgstate.testing import PostgresCluster
from providers.s3state.testing import MotoServer
from tests.state_servers import moto, postgres  # noqa: F401 - fixtures


class TestLocalBackend(StateBackendConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[BackendHarness]:
        harness = BackendHarness("local", {"path": "state/s.kpstate.json"}, tmp_path)
        yield harness
        harness.close()


class TestS3Backend(StateBackendConformance):
    @pytest.fixture
    def harness(self, moto: MotoServer,  # noqa: F811
     tmp_path: Path) -> Iterator[BackendHarness]:
        attributes: dict[str, object] = {
            "bucket": moto.new_bucket(versioned=True),
            "key": "team/keyplan.kpstate.json",
            "endpoint": moto.url,
            "credentials": "local",
            "region": "us-east-1",
        }
        harness = BackendHarness("s3", attributes, tmp_path)
        yield harness
        harness.close()


class TestPgBackend(StateBackendConformance):
    @pytest.fixture
    def harness(self, postgres: PostgresCluster,  # noqa: F811
     tmp_path: Path) -> Iterator[BackendHarness]:
        conn_str = postgres.create_database(f"k{uuid.uuid4().hex[:12]}")
        harness = BackendHarness(
            "pg", {"conn_str_env": "KEYPLAN_TEST_PG", "schema_name": "team_state"}, tmp_path, env={"KEYPLAN_TEST_PG": conn_str}
        )
        yield harness
        harness.close()
