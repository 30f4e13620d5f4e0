"""The PostgreSQL state backend against a throwaway cluster of the real server, beyond the
conformance suite: the rows and locks it leaves, and the errors users hit."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from keyplan.state import StateError, StateErrorKind
from keyplan.state.backend import LockInfo
from providers.pgstate import PLUGIN, PgBackend, PgSettings
from providers.pgstate.testing import PostgresCluster
from tests.state_servers import postgres  # noqa: F401 - fixture

# The advisory locks held in this test's own database: the cluster is shared by the test workers
# of the run, whose tests hold (and must keep) theirs in databases of their own.
_THIS_DATABASES_ADVISORY_LOCKS = (
    "locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _database(cluster: PostgresCluster) -> str:
    return cluster.create_database(f"k{uuid.uuid4().hex[:12]}")


def test_one_row_per_workspace_and_the_holder_beside_it(postgres: PostgresCluster) -> None:  # noqa: F811
    conn_str = _database(postgres)
    backend = PgBackend(PgSettings(schema_name="kp"), conn_str)
    try:
        backend.write("default", b"{}", None)
        backend.write("prod", b"{}", None)
        info = LockInfo.for_this_process("apply", "prod")
        assert backend.try_lock(info) is None
        with psycopg.connect(conn_str) as conn:
            assert conn.execute("SELECT workspace, version FROM kp.states ORDER BY 1").fetchall() == [
                ("default", 1), ("prod", 1),
            ]
            assert conn.execute("SELECT info->>'id' FROM kp.locks WHERE workspace = 'prod'").fetchone() == (info.id,)
            advisory = conn.execute(f"SELECT count(*) FROM pg_locks WHERE {_THIS_DATABASES_ADVISORY_LOCKS}").fetchone()
            assert advisory == (1,), "a session-level advisory lock is held while the operation runs"
    finally:
        backend.close()


def test_a_dropped_connection_while_holding_the_lock_stops_the_command(postgres: PostgresCluster) -> None:  # noqa: F811
    conn_str = _database(postgres)
    backend = PgBackend(PgSettings(), conn_str)
    try:
        assert backend.try_lock(LockInfo.for_this_process("apply")) is None
        with psycopg.connect(conn_str, autocommit=True) as admin:
            admin.execute(
                f"SELECT pg_terminate_backend(pid) FROM pg_locks WHERE {_THIS_DATABASES_ADVISORY_LOCKS}"
            )
        with pytest.raises(StateError) as caught:
            backend.append_journal("default", 1, b"line\n")
        assert caught.value.kind is StateErrorKind.UNREACHABLE
        assert "released the lock" in caught.value.detail
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"password": "wrong"}, StateErrorKind.AUTH),
        ({"database": "no_such_database"}, StateErrorKind.NOT_FOUND),
    ],
)
def test_login_problems_are_named(postgres: PostgresCluster, change: dict[str, str], kind: StateErrorKind) -> None:  # noqa: F811
    database = change.get("database", "postgres")
    conn_str = postgres.conn_str(database, password=change.get("password", "keyplan-test-password"))
    backend = PgBackend(PgSettings(), conn_str)
    with pytest.raises(StateError) as caught:
        backend.read("default")
    assert caught.value.kind is kind
    assert "keyplan-test-password" not in str(caught.value.diagnostics) and "wrong" not in caught.value.detail.split("(")[0]


def test_an_unreachable_server_and_a_missing_connection_string(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    backend = PgBackend(PgSettings(), f"host={tmp_path} port=1 dbname=x user=x")
    with pytest.raises(StateError) as caught:
        backend.read("default")
    assert caught.value.kind is StateErrorKind.UNREACHABLE
    monkeypatch.delenv("KEYPLAN_PG_CONN_STR", raising=False)
    with pytest.raises(StateError) as missing:
        PLUGIN.open(PgSettings(), None)  # type: ignore[arg-type]
    assert "KEYPLAN_PG_CONN_STR" in missing.value.summary
