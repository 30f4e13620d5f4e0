"""A small SQLite document store: JSON documents by (collection, id), safe across threads.

Emulators keep their whole state here so it survives restarts (the embedded mode persists under
`.keyplan/emulators/`). Documents are plain JSON; binary values are stored base64 or hex by the
caller.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class DocumentStore:
    def __init__(self, path: Path | str = ":memory:") -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS docs (coll TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " body TEXT NOT NULL, PRIMARY KEY (coll, id))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[DocumentStore]:
        """Serialise a read-modify-write; nested use is fine."""
        with self._lock:
            self._db.execute("SAVEPOINT tx")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK TO tx")
                self._db.execute("RELEASE tx")
                raise
            self._db.execute("RELEASE tx")

    def put(self, coll: str, doc_id: str, body: dict[str, Any]) -> None:
        with self._lock:
            row = self._db.execute("SELECT seq FROM docs WHERE coll=? AND id=?", (coll, doc_id)).fetchone()
            seq = row[0] if row else self._next_seq()
            self._db.execute(
                "INSERT OR REPLACE INTO docs (coll, id, seq, body) VALUES (?, ?, ?, ?)",
                (coll, doc_id, seq, json.dumps(body, sort_keys=True)),
            )

    def get(self, coll: str, doc_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM docs WHERE coll=? AND id=?", (coll, doc_id)).fetchone()
        return json.loads(row[0]) if row else None

    def delete(self, coll: str, doc_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM docs WHERE coll=? AND id=?", (coll, doc_id))
        return cur.rowcount > 0

    def list(self, coll: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        """Documents in insertion order (stable pagination), optionally by id prefix."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM docs WHERE coll=? AND id >= ? AND id < ? ORDER BY seq",
                (coll, prefix, prefix + "\U0010ffff"),
            ).fetchall()
        return [(r[0], json.loads(r[1])) for r in rows]

    def _next_seq(self) -> int:
        row = self._db.execute("SELECT v FROM meta WHERE k='seq'").fetchone()
        seq = int(row[0]) + 1 if row else 1
        self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('seq', ?)", (str(seq),))
        return seq

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._lock:
            self._db.close()
