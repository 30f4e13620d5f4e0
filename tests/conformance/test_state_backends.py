"""The state-backend conformance suite (keyplan.testing.state_suite) against every backend:
the local file, S3 (moto's server mode, a real server process reached through boto3) and
PostgreSQL (a throwaway cluster of the real server). Each harness can also rewrite its stored
audit trail the way someone with write access to the store could, to check tampering is found."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from keyplan.state.backend import AuditTrail
from keyplan.testing.state_suite import BackendHarness, StateBackendConformance
from providers.pgstate.testing import PostgresCluster
from providers.s3state.testing import MotoServer
from tests.state_servers import moto, postgres  # noqa: F401 - fixtures

Tampering = Callable[[AuditTrail], AuditTrail]


class TestLocalBackend(StateBackendConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[BackendHarness]:
        trail = tmp_path / ".keyplan" / "audit.jsonl"
        head = trail.with_name("audit.jsonl.head")

        def rewrite(change: Tampering) -> None:
            stored = AuditTrail(
                tuple(line for line in trail.read_bytes().splitlines() if line.strip()), head.read_bytes(), str(trail)
            )
            changed = change(stored)
            trail.write_bytes(b"".join(entry + b"\n" for entry in changed.entries))
            if changed.head is None:
                head.unlink()

        def lose(workspace: str) -> None:
            (tmp_path / "state" / "s.kpstate.json").unlink()

        harness = BackendHarness(
            "local", {"path": "state/s.kpstate.json"}, tmp_path, rewrite_audit=rewrite, lose_state=lose
        )
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
        bucket, prefix, head = str(attributes["bucket"]), "team/keyplan.kpstate.json.audit/", "team/keyplan.kpstate.json.audit.head"

        def rewrite(change: Tampering) -> None:
            client = moto.client()
            keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))
            stored = AuditTrail(
                tuple(client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys),
                client.get_object(Bucket=bucket, Key=head)["Body"].read(),
                prefix,
            )
            changed = change(stored)
            for key in keys:
                client.delete_object(Bucket=bucket, Key=key)
            for number, entry in enumerate(changed.entries, start=1):
                client.put_object(Bucket=bucket, Key=f"{prefix}{number:012d}", Body=entry)
            if changed.head is None:
                client.delete_object(Bucket=bucket, Key=head)

        def lose(workspace: str) -> None:  # in a versioned bucket: a delete marker over the versions
            moto.client().delete_object(Bucket=bucket, Key=str(attributes["key"]))

        harness = BackendHarness("s3", attributes, tmp_path, rewrite_audit=rewrite, lose_state=lose)
        yield harness
        harness.close()


class TestPgBackend(StateBackendConformance):
    @pytest.fixture
    def harness(self, postgres: PostgresCluster,  # noqa: F811
     tmp_path: Path) -> Iterator[BackendHarness]:
        conn_str = postgres.create_database(f"k{uuid.uuid4().hex[:12]}")

        def rewrite(change: Tampering) -> None:
            with psycopg.connect(conn_str, autocommit=True) as conn:
                rows = conn.execute("SELECT data FROM team_state.audit ORDER BY seq").fetchall()
                head = conn.execute("SELECT data FROM team_state.audit_head").fetchone()
                changed = change(AuditTrail(tuple(bytes(r[0]) for r in rows), bytes(head[0]) if head else None, ""))
                with conn.transaction():
                    conn.execute("DELETE FROM team_state.audit")
                    for number, entry in enumerate(changed.entries, start=1):
                        conn.execute("INSERT INTO team_state.audit (seq, data) VALUES (%s, %s)", (number, entry))
                    if changed.head is None:
                        conn.execute("DELETE FROM team_state.audit_head")

        def lose(workspace: str) -> None:
            with psycopg.connect(conn_str, autocommit=True) as conn:
                conn.execute("DELETE FROM team_state.states WHERE workspace = %s", (workspace,))

        harness = BackendHarness(
            "pg",
            {"conn_str_env": "KEYPLAN_TEST_PG", "schema_name": "team_state"},
            tmp_path,
            env={"KEYPLAN_TEST_PG": conn_str},
            rewrite_audit=rewrite,
            lose_state=lose,
        )
        yield harness
        harness.close()
