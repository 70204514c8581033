"""The event store: durable events, items and users, in SQLite (embedded) or PostgreSQL.

An event is acknowledged only after the transaction that holds it has committed: SQLite runs
in WAL mode with ``synchronous=FULL``, PostgreSQL with its default synchronous commit. Events
are idempotent by ``event_id`` (a repeated id is counted as a duplicate, not stored twice).
Every statement is parameterised.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metarec.errors import ConfigError, DataError

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq {serial}, event_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
        type TEXT NOT NULL, value DOUBLE PRECISION NOT NULL, ts DOUBLE PRECISION NOT NULL,
        received DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, seq)",
    """CREATE TABLE IF NOT EXISTS items (
        item_id TEXT PRIMARY KEY, text TEXT NOT NULL, attributes TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0, updated DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS users (
        user_id TEXT PRIMARY KEY, attributes TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL)""",
    # The model each service serves since its last POST /admin/reload, so that every worker of
    # `metarec serve --workers N`, and every replica started with the same `--service`, follows
    # a reload that one of them took.
    """CREATE TABLE IF NOT EXISTS served (
        seq {serial}, service TEXT NOT NULL, model_dir TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS served_service ON served (service, seq)",
)

#: Inserting events; a repeated ``event_id`` is skipped (only that constraint: a row that
#: breaks NOT NULL still fails). ``{values}``: one ``(?, ?, ?, ?, ?, ?, ?)`` per row.
INSERT_EVENTS = ("INSERT INTO events (event_id, user_id, item_id, type, value, ts, received) VALUES {values} "
                 "ON CONFLICT (event_id) DO NOTHING")  # fmt: skip
ONE_ROW = "(?, ?, ?, ?, ?, ?, ?)"


@dataclass
class Event:
    """One interaction as the service stores it."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    value: float = 1.0
    timestamp: float = field(default_factory=time.time)
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "user_id": self.user_id, "item_id": self.item_id,
                "type": self.type, "value": self.value, "timestamp": self.timestamp}  # fmt: skip


@dataclass
class StoredItem:
    item_id: str
    text: str
    attributes: dict[str, Any]
    deleted: bool
    updated: float = 0.0


class EventStore:
    """SQL shared by both back-ends; subclasses open the connection and name the placeholder."""

    placeholder = "?"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    #: How an INSERT hands back its ``seq`` ("" for a cursor's ``lastrowid``: SQLite before 3.35
    #: has no RETURNING).
    returning = ""
    #: The store as a message names it (a server's URL without its credentials).
    where = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        try:
            self._conn = self._connect()
            with self._transaction() as cur:
                for stmt in SCHEMA:
                    cur.execute(stmt.format(serial=self.serial))
        except ConfigError:
            raise
        except Exception as exc:  # a file that is not a database, a server that is not there: was a traceback
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigError(f"store {self.where}: cannot open it ({type(exc).__name__}: {reason})") from None

    def _connect(self) -> Any:
        raise NotImplementedError

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor whose statements commit together when the block ends, or roll back."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                yield cur
                self._conn.commit()
            except BaseException:
                self._conn.rollback()
                raise

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    #: Events per INSERT statement (all of a call's statements are one transaction).
    batch_rows = 500

    def _insert_rows(self, cur: Any, rows: list[tuple]) -> int:
        """Insert ``rows`` (skipping event ids already stored); returns how many were new."""
        raise NotImplementedError

    # ------------------------------------------------------------------ events
    def add_events(self, events: Sequence[Event]) -> tuple[int, int]:
        """Store ``events`` in one transaction; returns ``(inserted, duplicates)`` after commit."""
        now = time.time()
        rows = [(e.event_id, e.user_id, e.item_id, e.type, float(e.value), float(e.timestamp), now) for e in events]
        inserted = 0
        with self._transaction() as cur:
            for s in range(0, len(rows), self.batch_rows):
                inserted += self._insert_rows(cur, rows[s : s + self.batch_rows])
        return inserted, len(rows) - inserted

    def user_events(self, user_id: str, n: int | None = None) -> list[Event]:
        """A user's events, newest first (at most ``n``)."""
        sql = "SELECT event_id, user_id, item_id, type, value, ts, seq FROM events WHERE user_id = ? ORDER BY seq DESC"
        args: list[Any] = [user_id]
        if n is not None:
            sql += " LIMIT ?"
            args.append(int(n))
        return [Event(*r[:6], seq=r[6]) for r in self._query(sql, args)]

    def events_since(self, seq: int = 0, limit: int = 100_000) -> list[Event]:
        """Events with a sequence number above ``seq``, oldest first (for replay and replicas)."""
        sql = "SELECT event_id, user_id, item_id, type, value, ts, seq FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
        return [Event(*r[:6], seq=r[6]) for r in self._query(sql, [int(seq), int(limit)])]

    def all_events(self) -> Iterator[Event]:
        seq = 0
        while True:
            batch = self.events_since(seq)
            if not batch:
                return
            yield from batch
            seq = batch[-1].seq or seq

    # ------------------------------------------------------------ items, users
    def upsert_item(self, item_id: str, text: str, attributes: dict[str, Any]) -> None:
        sql = (
            "INSERT INTO items (item_id, text, attributes, deleted, updated) VALUES (?, ?, ?, 0, ?) "
            "ON CONFLICT (item_id) DO UPDATE SET text = excluded.text, attributes = excluded.attributes, "
            "deleted = 0, updated = excluded.updated"
        )
        self._write(sql, [item_id, text, json.dumps(attributes), time.time()])

    def delete_item(self, item_id: str) -> None:
        sql = (
            "INSERT INTO items (item_id, text, attributes, deleted, updated) VALUES (?, '', '{}', 1, ?) "
            "ON CONFLICT (item_id) DO UPDATE SET deleted = 1, updated = excluded.updated"
        )
        self._write(sql, [item_id, time.time()])

    def items(self, since: float = -1.0) -> list[StoredItem]:
        """Item changes (oldest first), those after ``since`` (an ``updated`` time) if given."""
        sql = "SELECT item_id, text, attributes, deleted, updated FROM items WHERE updated > ? ORDER BY updated"
        return [StoredItem(r[0], r[1], json.loads(r[2]), bool(r[3]), r[4]) for r in self._query(sql, [since])]

    def upsert_user(self, user_id: str, attributes: dict[str, Any]) -> None:
        sql = (
            "INSERT INTO users (user_id, attributes, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET attributes = excluded.attributes, updated = excluded.updated"
        )
        self._write(sql, [user_id, json.dumps(attributes), time.time()])

    def users(self) -> dict[str, dict[str, Any]]:
        """Every stored user's attributes (``PUT /users``), by user id."""
        return {r[0]: json.loads(r[1]) for r in self._query("SELECT user_id, attributes FROM users ORDER BY user_id", [])}

    def user_changes(self, since: float = -1.0) -> list[tuple[str, dict[str, Any], float]]:
        """``(user_id, attributes, updated)`` of the users changed after ``since`` (oldest first)."""
        sql = "SELECT user_id, attributes, updated FROM users WHERE updated > ? ORDER BY updated"
        return [(r[0], json.loads(r[1]), r[2]) for r in self._query(sql, [since])]

    def user(self, user_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT attributes FROM users WHERE user_id = ?", [user_id])
        return json.loads(rows[0][0]) if rows else None

    # ------------------------------------------------------------ served model
    def set_served(self, service: str, model_dir: str) -> int:
        """Record that ``service`` now serves ``model_dir``; returns the record's sequence number."""
        sql = "INSERT INTO served (service, model_dir, at) VALUES (?, ?, ?)" + self.returning
        with self._transaction() as cur:
            cur.execute(self._sql(sql), [service, model_dir, time.time()])
            seq = int(cur.fetchone()[0] if self.returning else cur.lastrowid)
        return seq

    def served(self, service: str) -> tuple[int, str] | None:
        """``(seq, model_dir)`` of ``service``'s latest reload, or None if it has had none."""
        rows = self._query("SELECT seq, model_dir FROM served WHERE service = ? ORDER BY seq DESC LIMIT 1", [service])
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def _query(self, sql: str, args: list[Any]) -> list[tuple]:
        """Rows of one read, whose transaction is closed at once: a replica that only reads
        must not sit "idle in transaction" (holding locks, holding back vacuum)."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute(self._sql(sql), args)
                return cur.fetchall()
            finally:
                self._conn.rollback()

    def _write(self, sql: str, args: list[Any]) -> None:
        with self._transaction() as cur:
            cur.execute(self._sql(sql), args)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SQLiteStore(EventStore):
    """The embedded store: one SQLite file in WAL mode with full fsync on commit."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        super().__init__()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _insert_rows(self, cur: Any, rows: list[tuple]) -> int:
        # In-process: executemany's per-row cost is a C loop; rowcount sums the rows inserted.
        # (``INSERT OR IGNORE``, used before, also dropped rows that broke NOT NULL, silently.)
        cur.executemany(INSERT_EVENTS.format(values=ONE_ROW), rows)
        return max(cur.rowcount, 0)


class PostgresStore(EventStore):
    """PostgreSQL through psycopg 3, for several replicas sharing one store."""

    placeholder = "%s"
    serial = "BIGSERIAL"
    returning = " RETURNING seq"

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redacted(url)
        super().__init__()

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise ConfigError("a postgresql:// store needs the 'serve' extra: pip install 'metarec[serve]'") from None
        return psycopg.connect(self.url)

    def _insert_rows(self, cur: Any, rows: list[tuple]) -> int:
        # One multi-row INSERT per batch: one round trip to the server instead of one per event.
        # Still parameterised: only the placeholders are repeated. A duplicate id inside the
        # batch is skipped like one already stored (DO NOTHING); rowcount is the rows inserted.
        sql = self._sql(INSERT_EVENTS.format(values=", ".join([ONE_ROW] * len(rows))))
        cur.execute(sql, [v for row in rows for v in row])
        return max(cur.rowcount, 0)



def redacted(url: str) -> str:
    """``url`` without its user and password (``postgresql://…@host/db``), for messages.

    >>> redacted("postgresql://app:secret@db.internal:5432/events")
    'postgresql://…@db.internal:5432/events'
    """
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}…@{rest.rsplit('@', 1)[1]}" if "@" in rest else url


def open_store(url: str, create: bool = True) -> EventStore:
    """``sqlite:///path/to/events.db`` or ``postgresql://user:pass@host/db``; ``create=False``:
    a SQLite file that does not exist is a DataError (a store to read, such as retraining's,
    where a mistyped path would otherwise be a new, empty store)."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not create and not path.is_file():
            raise DataError(f"store {url!r}: no such file (a service's store is the file it was started with)")
        return SQLiteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ConfigError(f"store {url!r}: use sqlite:///path.db or postgresql://...")
