"""SQLite storage for the local provider: exact, versioned, safe across processes.

Amounts are stored as exact decimal text inside the grant's JSON and in their own column;
the idempotency key is a UNIQUE column, so two processes racing with the same key get one row.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import billing_credits as bc

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE grants (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        customer_id     TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        key_supplied    INTEGER NOT NULL,
        request_hash    TEXT NOT NULL,
        amount          TEXT NOT NULL,
        unit            TEXT NOT NULL,
        request_json    TEXT NOT NULL,
        effective_at    TEXT NOT NULL,
        expires_at      TEXT,
        voided_at       TEXT,
        created_at      TEXT NOT NULL
    );
    CREATE INDEX grants_by_customer ON grants (customer_id, seq);
    """,
}

_COLUMNS = (
    "seq, id, customer_id, idempotency_key, key_supplied, request_hash, amount, unit, "
    "request_json, effective_at, expires_at, voided_at, created_at"
)


@dataclass(frozen=True)
class Row:
    """One stored grant, as text straight from the database."""

    seq: int
    id: str
    customer_id: str
    idempotency_key: str
    key_supplied: bool
    request_hash: str
    amount: str
    unit: str
    request_json: str
    effective_at: str
    expires_at: str | None
    voided_at: str | None
    created_at: str

    @property
    def request(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.request_json)
        return data


def request_hash(request: dict[str, Any]) -> str:
    """A digest of what was asked, to tell an idempotent replay from a reused key."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class SchemaError(bc.ConfigurationError):
    """The database was written by a newer version of billing-credits."""


class GrantStore:
    """The grants table. Each method is one short transaction; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, timeout=60, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA busy_timeout=60000")
        self._wal()
        self._migrate()

    def _wal(self) -> None:
        """Switch to write-ahead logging. Switching needs the database to itself, and SQLite
        answers "locked" at once (without waiting) while another process opens it: retry."""
        for attempt in range(200):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == 199:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"{self.path} has schema version {version}; this billing-credits reads up "
                    f"to {SCHEMA_VERSION}: upgrade billing-credits"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    def _one(self, db: sqlite3.Connection, where: str, *args: Any) -> Row | None:
        found = db.execute(f"SELECT {_COLUMNS} FROM grants WHERE {where}", args).fetchone()  # noqa: S608
        return Row(*found) if found else None

    def insert(self, row: Row) -> tuple[Row, bool]:
        """Insert ``row`` unless its idempotency key exists; return the stored row and
        whether it is new."""
        with self._write() as db:
            existing = self._one(db, "idempotency_key = ?", row.idempotency_key)
            if existing is not None:
                return existing, False
            values = [getattr(row, name.strip()) for name in _COLUMNS.split(",")][1:]
            db.execute(
                f"INSERT INTO grants ({_COLUMNS.split(',', 1)[1]}) VALUES ({', '.join('?' * len(values))})",  # noqa: S608
                values,
            )
            stored = self._one(db, "idempotency_key = ?", row.idempotency_key)
            assert stored is not None
            return stored, True

    def insert_many(self, rows: list[Row]) -> list[Row | None]:
        """Insert every row whose idempotency key is new, in one transaction. For each row:
        None when it was inserted, else the row already stored under its key."""
        keys = [row.idempotency_key for row in rows]
        with self._write() as db:
            existing: dict[str, Row] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                found = db.execute(
                    f"SELECT {_COLUMNS} FROM grants WHERE idempotency_key IN "  # noqa: S608
                    f"({', '.join('?' * len(chunk))})", chunk).fetchall()
                existing.update((r[3], Row(*r)) for r in found)
            result: list[Row | None] = []
            fresh: list[list[Any]] = []
            for row in rows:
                if row.idempotency_key in existing:
                    result.append(existing[row.idempotency_key])
                    continue
                existing[row.idempotency_key] = row  # a key twice in one batch: one row
                result.append(None)
                fresh.append([getattr(row, name.strip()) for name in _COLUMNS.split(",")][1:])
            if fresh:
                db.executemany(
                    f"INSERT INTO grants ({_COLUMNS.split(',', 1)[1]}) "  # noqa: S608
                    f"VALUES ({', '.join('?' * len(fresh[0]))})", fresh)
            return result

    def get(self, grant_id: str) -> Row | None:
        with self._lock:
            return self._one(self._db, "id = ?", grant_id)

    def page(self, customer_id: str | None, after: int, limit: int) -> tuple[list[Row], bool]:
        """Up to ``limit`` rows after sequence number ``after``, and whether more follow."""
        with self._lock:
            found = self._db.execute(
                f"SELECT {_COLUMNS} FROM grants WHERE (?1 IS NULL OR customer_id = ?1) "  # noqa: S608
                "AND seq > ?2 ORDER BY seq LIMIT ?3",
                (customer_id, after, limit + 1),
            ).fetchall()
        rows = [Row(*r) for r in found]
        return rows[:limit], len(rows) > limit

    def update(self, grant_id: str, change: Callable[[Row], dict[str, Any] | None]) -> Row | None:
        """Apply ``change`` (row → columns to set, or None for no change) atomically."""
        with self._write() as db:
            row = self._one(db, "id = ?", grant_id)
            if row is None:
                return None
            columns = change(row)
            if columns:
                assignments = ", ".join(f"{name} = ?" for name in columns)
                db.execute(
                    f"UPDATE grants SET {assignments} WHERE id = ?",  # noqa: S608
                    [*columns.values(), grant_id],
                )
                row = self._one(db, "id = ?", grant_id)
            return row
