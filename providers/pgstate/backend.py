"""The PostgreSQL state backend: one row per workspace, a transaction per write, and a
session-level advisory lock held for the whole operation.

Tables, created on first use in `schema_name` (default `keyplan_state`):

    states  (workspace PRIMARY KEY, data, version)   the state document and its row version
    previous (workspace PRIMARY KEY, data, version)  each state as it was before its last write
    journal (workspace, sequence, data)               journal groups of an apply in progress
    locks   (workspace PRIMARY KEY, info)             who holds the lock (id, operation, who, where, when)
    audit   (seq PRIMARY KEY, data)                   the audit trail's entries (all workspaces)
    audit_head (one row: data)                        its head record: the last entry's number and hash

A write is one transaction: the row is copied to `previous`, then `UPDATE ... WHERE version =
<the version read>` (or an insert that must not find a row), then the workspace's journal rows are
deleted; a states row deleted by hand so leaves its copy for `keyplan plan` to find; zero rows updated means
someone else wrote first. The lock is `pg_try_advisory_lock` on a key derived from the schema
and workspace, taken on this backend's connection and kept until unlock, so the server drops it
the moment a killed keyplan's connection goes away; the `locks` row says who holds it. An audit
entry and the head record that names it are written in one transaction under a transaction-level
advisory lock, so concurrent writers chain one after the other and the trail never forks.
`force-unlock` ends the session still holding it (`pg_terminate_backend`), for a connection the
server has not noticed is dead yet. The connection string is read from the environment variable
named by `conn_str_env`, never from the configuration, so no password is written in HCL.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from keyplan.state.backend import (
    DEFAULT_WORKSPACE,
    AuditHead,
    AuditTrail,
    BackendContext,
    LockInfo,
    PreviousCopy,
    StateBackend,
    StateBackendPlugin,
    StateError,
    StateErrorKind,
    StoredState,
    audit_entry_hash,
    parse_audit_head,
)
from providers.pgstate.errors import classified
from providers.pgstate.settings import PgSettings


class _Unknown:
    """The audit head is not known here yet (or another writer moved it): read it."""


_UNKNOWN = _Unknown()


class PgBackend(StateBackend):
    locks_outlive_their_holder = False

    def __init__(self, settings: PgSettings, conn_str: str) -> None:
        self.settings = settings
        self._conn_str = conn_str
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.RLock()
        self._audit_conn: psycopg.Connection[Any] | None = None
        self._audit_mutex = threading.Lock()
        self._audit_head_seen: bytes | None | _Unknown = _UNKNOWN  # the head this backend last wrote or read
        self._held: dict[str, str] = {}  # workspace -> lock id this connection holds
        self._lost: set[str] = set()  # workspaces whose lock went with a dropped connection
        self._ready = False
        schema = sql.Identifier(settings.schema_name)
        self._states = sql.SQL("{}.states").format(schema)
        self._previous = sql.SQL("{}.previous").format(schema)
        self._journal = sql.SQL("{}.journal").format(schema)
        self._locks = sql.SQL("{}.locks").format(schema)
        self._audit = sql.SQL("{}.audit").format(schema)
        self._audit_head = sql.SQL("{}.audit_head").format(schema)

    # -- the connection -----------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            if self._held:
                raise self._dropped()
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> psycopg.Connection[Any]:
        """A new connection, with keyplan's tables made on first use."""
        try:
            conn = psycopg.connect(self._conn_str, autocommit=True, connect_timeout=10)
        except psycopg.Error as error:
            raise classified(error, self.settings, "connect to") from None
        if not self._ready:
            try:
                self._create_tables(conn)
            except StateError:
                conn.close()
                raise
        return conn

    def _create_tables(self, conn: psycopg.Connection[Any]) -> None:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_key("keyplan-schema", self.settings.schema_name),))
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.settings.schema_name)))
                conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (workspace text PRIMARY KEY, data bytea NOT NULL, "
                            "version bigint NOT NULL)").format(self._states)
                )
                conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (workspace text PRIMARY KEY, data bytea NOT NULL, "
                            "version bigint NOT NULL)").format(self._previous)
                )
                conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (workspace text NOT NULL, sequence bigint NOT NULL, "
                            "data bytea NOT NULL, PRIMARY KEY (workspace, sequence))").format(self._journal)
                )
                conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (workspace text PRIMARY KEY, info jsonb NOT NULL)").format(
                        self._locks
                    )
                )
                conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (seq bigint PRIMARY KEY, data bytea NOT NULL)").format(
                        self._audit
                    )
                )
                conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
                            "data bytea NOT NULL)").format(self._audit_head)
                )
        except psycopg.Error as error:
            raise classified(error, self.settings, "create keyplan's tables in") from None
        self._ready = True

    def _run(self, doing: str, work: Any) -> Any:
        """Run `work(connection)` under this backend's lock, turning driver errors into StateErrors."""
        with self._lock:
            conn = self._connection()
            try:
                return work(conn)
            except StateError:
                raise
            except psycopg.Error as error:
                if conn.closed or conn.broken:
                    self._conn = None
                    if self._held:
                        raise self._dropped() from None
                raise classified(error, self.settings, doing) from None

    # -- where things are ---------------------------------------------------------------------------

    def describe(self, workspace: str) -> str:
        return f"PostgreSQL {self.settings.schema_name}.states, workspace {workspace}"

    def workspaces(self) -> list[str]:
        def work(conn: psycopg.Connection[Any]) -> list[str]:
            rows = conn.execute(
                sql.SQL("SELECT workspace FROM {} UNION SELECT workspace FROM {}").format(self._states, self._journal)
            ).fetchall()
            return sorted({DEFAULT_WORKSPACE, *(str(row[0]) for row in rows)})

        result: list[str] = self._run("list the workspaces in", work)
        return result

    # -- documents ----------------------------------------------------------------------------------

    def read(self, workspace: str) -> StoredState:
        def work(conn: psycopg.Connection[Any]) -> StoredState:
            with conn.transaction():
                row = conn.execute(
                    sql.SQL("SELECT data, version FROM {} WHERE workspace = %s").format(self._states), (workspace,)
                ).fetchone()
                journal = conn.execute(
                    sql.SQL("SELECT data FROM {} WHERE workspace = %s ORDER BY sequence").format(self._journal),
                    (workspace,),
                ).fetchall()
            return StoredState(
                data=bytes(row[0]) if row else None,
                version=str(row[1]) if row else None,
                journal=tuple(bytes(r[0]) for r in journal),
                origin=self.describe(workspace),
            )

        result: StoredState = self._run("read the state from", work)
        return result

    def _still_locked(self, workspace: str) -> None:
        """After a dropped connection released our lock, this run writes no more to that
        workspace: someone else may hold it now (the next run replays the journal)."""
        if workspace in self._lost:
            raise self._dropped(workspace)

    def write(self, workspace: str, data: bytes, expected_version: str | None) -> str:
        self._still_locked(workspace)

        def work(conn: psycopg.Connection[Any]) -> str:
            with conn.transaction():
                if expected_version is None:
                    row = conn.execute(
                        sql.SQL("INSERT INTO {} (workspace, data, version) VALUES (%s, %s, 1) "
                                "ON CONFLICT (workspace) DO NOTHING RETURNING version").format(self._states),
                        (workspace, data),
                    ).fetchone()
                else:
                    conn.execute(
                        sql.SQL("INSERT INTO {} (workspace, data, version) SELECT workspace, data, version FROM {} "
                                "WHERE workspace = %s AND version = %s ON CONFLICT (workspace) DO UPDATE SET "
                                "data = EXCLUDED.data, version = EXCLUDED.version").format(self._previous, self._states),
                        (workspace, int(expected_version)),
                    )
                    row = conn.execute(
                        sql.SQL("UPDATE {} SET data = %s, version = version + 1 WHERE workspace = %s AND version = %s "
                                "RETURNING version").format(self._states),
                        (data, workspace, int(expected_version)),
                    ).fetchone()
                if row is None:
                    raise StateError(
                        StateErrorKind.CONFLICT,
                        "The state changed while this command ran",
                        f"The state of workspace {workspace} in {self.settings.schema_name}.states was written by "
                        "someone else since it was read, so this write was refused to keep their changes. Run "
                        "`keyplan plan` again to see the current state.",
                    )
                conn.execute(sql.SQL("DELETE FROM {} WHERE workspace = %s").format(self._journal), (workspace,))
            return str(row[0])

        result: str = self._run("write the state to", work)
        return result

    def previous_copy(self, workspace: str) -> PreviousCopy | None:
        def work(conn: psycopg.Connection[Any]) -> PreviousCopy | None:
            row = conn.execute(
                sql.SQL("SELECT version FROM {} WHERE workspace = %s").format(self._previous), (workspace,)
            ).fetchone()
            if row is None:
                return None
            schema = self.settings.schema_name
            quoted = workspace.replace("'", "''")
            return PreviousCopy(
                f"PostgreSQL {schema}.previous, workspace {workspace} (row version {row[0]})",
                f'INSERT INTO "{schema}".states (workspace, data, version) SELECT workspace, data, version FROM '
                f"\"{schema}\".previous WHERE workspace = '{quoted}'",
            )

        result: PreviousCopy | None = self._run("look for a previous copy of the state in", work)
        return result

    def append_journal(self, workspace: str, sequence: int, data: bytes) -> None:
        self._still_locked(workspace)
        self._run(
            "append to the state journal in",
            lambda conn: conn.execute(
                sql.SQL("INSERT INTO {} (workspace, sequence, data) VALUES (%s, %s, %s)").format(self._journal),
                (workspace, sequence, data),
            ),
        )

    def delete_workspace(self, workspace: str) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                for table in (self._states, self._previous, self._journal, self._locks):
                    conn.execute(sql.SQL("DELETE FROM {} WHERE workspace = %s").format(table), (workspace,))

        self._run("delete the workspace from", work)

    # -- locking ------------------------------------------------------------------------------------

    def _lock_key(self, workspace: str) -> int:
        return _key(self.settings.schema_name, workspace)

    def try_lock(self, info: LockInfo) -> LockInfo | None:
        def work(conn: psycopg.Connection[Any]) -> LockInfo | None:
            if info.workspace in self._held:
                return self._recorded_holder(conn, info.workspace)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._lock_key(info.workspace),)).fetchone()
            if not (row and row[0]):
                return self._recorded_holder(conn, info.workspace)
            self._held[info.workspace] = info.id
            self._lost.discard(info.workspace)
            conn.execute(
                sql.SQL("INSERT INTO {} (workspace, info) VALUES (%s, %s) "
                        "ON CONFLICT (workspace) DO UPDATE SET info = EXCLUDED.info").format(self._locks),
                (info.workspace, info.model_dump_json()),
            )
            return None

        result: LockInfo | None = self._run("lock the state in", work)
        return result

    def _recorded_holder(self, conn: psycopg.Connection[Any], workspace: str) -> LockInfo:
        row = conn.execute(sql.SQL("SELECT info::text FROM {} WHERE workspace = %s").format(self._locks), (workspace,)).fetchone()
        if row is not None:
            try:
                return LockInfo.model_validate_json(row[0])
            except ValueError:
                pass
        return LockInfo(
            id="unrecorded", operation="unknown", who="unknown", host="unknown", pid=0,
            created=LockInfo.for_this_process("").created, workspace=workspace,
        )

    def _session_holding(self, conn: psycopg.Connection[Any], workspace: str) -> int | None:
        key = self._lock_key(workspace) & 0xFFFFFFFFFFFFFFFF
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1",
            (key >> 32, key & 0xFFFFFFFF),
        ).fetchone()
        return int(row[0]) if row else None

    def lock_holder(self, workspace: str) -> LockInfo | None:
        def work(conn: psycopg.Connection[Any]) -> LockInfo | None:
            if workspace not in self._held and self._session_holding(conn, workspace) is None:
                return None  # no session holds it: a recorded holder is gone, and the server released its lock
            return self._recorded_holder(conn, workspace)

        result: LockInfo | None = self._run("read the state lock in", work)
        return result

    def unlock(self, workspace: str, lock_id: str) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            if self._held.get(workspace) == lock_id:
                conn.execute(sql.SQL("DELETE FROM {} WHERE workspace = %s").format(self._locks), (workspace,))
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock_key(workspace),))
                del self._held[workspace]
                return
            if workspace in self._held:
                return
            # force-unlock from another process: end the session that still holds the lock, if any
            recorded = self._recorded_holder(conn, workspace)
            if recorded.id != lock_id:
                return
            pid = self._session_holding(conn, workspace)
            if pid is not None:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            conn.execute(sql.SQL("DELETE FROM {} WHERE workspace = %s").format(self._locks), (workspace,))

        self._run("unlock the state in", work)

    # -- the audit trail -------------------------------------------------------------------------------

    def read_audit(self) -> AuditTrail:
        def work(conn: psycopg.Connection[Any]) -> AuditTrail:
            with conn.transaction():
                rows = conn.execute(sql.SQL("SELECT data FROM {} ORDER BY seq").format(self._audit)).fetchall()
                head = conn.execute(sql.SQL("SELECT data FROM {}").format(self._audit_head)).fetchone()
            return AuditTrail(
                entries=tuple(bytes(row[0]) for row in rows),
                head=bytes(head[0]) if head else None,
                origin=f"PostgreSQL {self.settings.schema_name}.audit",
            )

        result: AuditTrail = self._run("read the audit trail from", work)
        return result

    def append_audit(self, make_entries: Callable[[AuditHead | None], Sequence[bytes]]) -> AuditHead:
        """One statement, so one round trip, when no other writer appended since this backend last
        did: the entries are chained from the head it last wrote, inserted under their numbers,
        and the head moved, atomically. The entries' primary key is the guard: when another writer
        appended first, their numbers are taken, nothing is written, and the head is read again and
        the entries chained anew, so the trail never forks. Appends go through a connection of
        their own, so an apply's audit entries never queue behind its state journal."""
        origin = f"PostgreSQL {self.settings.schema_name}.audit"
        append = sql.SQL(
            "WITH added AS (INSERT INTO {} (seq, data) SELECT s, d FROM unnest(%s::bigint[], %s::bytea[]) AS t(s, d) "
            "RETURNING seq) "
            "INSERT INTO {} (one, data) SELECT true, %s WHERE (SELECT count(*) FROM added) = %s "
            "ON CONFLICT (one) DO UPDATE SET data = EXCLUDED.data"
        ).format(self._audit, self._audit_head)

        def work(conn: psycopg.Connection[Any]) -> AuditHead:
            while True:
                if isinstance(self._audit_head_seen, _Unknown):
                    row = conn.execute(sql.SQL("SELECT data FROM {}").format(self._audit_head)).fetchone()
                    self._audit_head_seen = bytes(row[0]) if row else None
                head = parse_audit_head(self._audit_head_seen, origin)
                entries = [entry.rstrip(b"\n") for entry in make_entries(head)]
                first = (head.seq if head else 0) + 1
                new_head = AuditHead(seq=first + len(entries) - 1, hash=audit_entry_hash(entries[-1]))
                try:
                    conn.execute(append, ([first + n for n in range(len(entries))], entries, new_head.encode(), len(entries)))
                except psycopg.errors.UniqueViolation:
                    self._audit_head_seen = _UNKNOWN  # another writer appended first: chain from its head
                    continue
                self._audit_head_seen = new_head.encode()
                return new_head

        result: AuditHead = self._audit_run("append to the audit trail in", work)
        return result

    def _audit_run(self, doing: str, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        with self._audit_mutex:
            if self._audit_conn is None or self._audit_conn.closed:
                self._audit_conn = self._connect()
            conn = self._audit_conn
            try:
                return work(conn)
            except psycopg.Error as error:
                if conn.closed or conn.broken:
                    self._audit_conn = None
                self._audit_head_seen = _UNKNOWN
                raise classified(error, self.settings, doing) from None

    def close(self) -> None:
        with self._audit_mutex:
            if self._audit_conn is not None:
                self._audit_conn.close()
                self._audit_conn = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # the server releases session locks with the connection
                self._conn = None
            self._held.clear()

    # -- errors ---------------------------------------------------------------------------------------

    def _dropped(self, lost: str | None = None) -> StateError:
        self._lost.update(self._held)
        workspaces = ", ".join(sorted(self._held)) or lost or "?"
        self._held.clear()
        return StateError(
            StateErrorKind.UNREACHABLE,
            "The connection to the state database dropped",
            f"keyplan lost its PostgreSQL connection while holding the lock of workspace {workspaces}; the server "
            "released the lock with it, so this command stopped instead of writing unlocked. Everything recorded "
            "before the drop is kept (an apply's finished steps are in the journal). Run `keyplan plan` again once "
            "the database is reachable.",
        )


def _key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key, stable across processes and servers."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgPlugin(StateBackendPlugin[PgSettings]):
    kind = "pg"
    settings_model = PgSettings

    def open(self, settings: PgSettings, context: BackendContext) -> PgBackend:
        conn_str = os.environ.get(settings.conn_str_env, "").strip()
        if not conn_str:
            raise StateError(
                StateErrorKind.AUTH,
                f"No connection string in ${settings.conn_str_env}",
                f"The state block reads the PostgreSQL connection string from the environment variable "
                f"{settings.conn_str_env}, which is not set. Export it (e.g. postgresql://user@host/db; put the "
                "password in ~/.pgpass or PGPASSWORD rather than in shell history).",
            )
        return PgBackend(settings, conn_str)


PLUGIN = PgPlugin()
