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
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import billing_credits as bc

SCHEMA_VERSION = 2

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
    # 2: the credits ledger. Every movement of credit is a row (granted, consumed, voided, and
    # expired when an expire drops windows still to come; credit left when a window ends is
    # read as an expiry without a row). ``consumed_json`` holds, per access window of a
    # grant, what has been consumed from it: the sum of its consumed rows, kept in the same
    # transaction. ``usage`` holds each consumed reference once (UNIQUE): applying a
    # reference again finds it.
    2: """
    ALTER TABLE grants ADD COLUMN consumed_json TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE ledger (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        customer_id TEXT NOT NULL,
        grant_id    TEXT,
        segment     INTEGER,
        kind        TEXT NOT NULL,
        amount      TEXT NOT NULL,
        unit        TEXT NOT NULL,
        at          TEXT NOT NULL,
        reference   TEXT,
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX ledger_by_customer ON ledger (customer_id, at, seq);
    CREATE INDEX ledger_by_grant ON ledger (grant_id, seq);
    CREATE TABLE usage (
        reference    TEXT PRIMARY KEY,
        customer_id  TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        at           TEXT NOT NULL,
        recorded_at  TEXT NOT NULL
    );
    """,
}

_COLUMNS = (
    "seq, id, customer_id, idempotency_key, key_supplied, request_hash, amount, unit, "
    "request_json, effective_at, expires_at, voided_at, created_at, consumed_json"
)
_ENTRY_COLUMNS = "seq, customer_id, grant_id, segment, kind, amount, unit, at, reference, recorded_at"


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
    consumed_json: str = "[]"

    @property
    def request(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.request_json)
        return data

    @property
    def consumed(self) -> list[Decimal]:
        """What has been consumed from each access window, exactly."""
        return [Decimal(text) for text in json.loads(self.consumed_json)]


@dataclass(frozen=True)
class EntryRow:
    """One stored ledger row; ``amount`` is signed exact decimal text."""

    seq: int
    customer_id: str
    grant_id: str | None
    segment: int | None
    kind: str
    amount: str
    unit: str
    at: str
    reference: str | None
    recorded_at: str


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
                if target in _BACKFILL:
                    _BACKFILL[target](db)
                db.execute(f"PRAGMA user_version = {target}")

    def _one(self, db: sqlite3.Connection, where: str, *args: Any) -> Row | None:
        found = db.execute(f"SELECT {_COLUMNS} FROM grants WHERE {where}", args).fetchone()  # noqa: S608
        return Row(*found) if found else None

    def insert(self, row: Row, granted_at: str | None = None) -> tuple[Row, bool]:
        """Insert ``row`` unless its idempotency key exists; return the stored row and
        whether it is new. A new row gets its ``granted`` ledger entry in the same
        transaction (at ``granted_at``, default its creation)."""
        with self._write() as db:
            existing = self._one(db, "idempotency_key = ?", row.idempotency_key)
            if existing is not None:
                return existing, False
            add_entry(db, row.customer_id, row.id, None, "granted", row.amount, row.unit,
                      granted_at or row.created_at, None, row.created_at)
            values = [getattr(row, name.strip()) for name in _COLUMNS.split(",")][1:]
            db.execute(
                f"INSERT INTO grants ({_COLUMNS.split(',', 1)[1]}) VALUES ({', '.join('?' * len(values))})",  # noqa: S608
                values,
            )
            stored = self._one(db, "idempotency_key = ?", row.idempotency_key)
            assert stored is not None
            return stored, True

    def insert_many(self, rows: list[Row]) -> list[Row | None]:
        """Insert every row whose idempotency key is new, in one transaction, each with its
        ``granted`` ledger entry (as ``insert``). For each row: None when it was inserted, else
        the row already stored under its key."""
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
            granted: list[tuple[Any, ...]] = []
            for row in rows:
                if row.idempotency_key in existing:
                    result.append(existing[row.idempotency_key])
                    continue
                existing[row.idempotency_key] = row  # a key twice in one batch: one row
                result.append(None)
                fresh.append([getattr(row, name.strip()) for name in _COLUMNS.split(",")][1:])
                granted.append((row.customer_id, row.id, None, "granted", row.amount, row.unit,
                                row.created_at, None, row.created_at))
            if granted:
                db.executemany(_INSERT_ENTRY, granted)
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

    def update(
        self,
        grant_id: str,
        change: Callable[[Row], dict[str, Any] | None],
        entries: Callable[[sqlite3.Connection, Row, Row], None] | None = None,
    ) -> Row | None:
        """Apply ``change`` (row → columns to set, or None for no change) atomically; then
        ``entries(db, before, after)`` writes ledger rows in the same transaction."""
        with self._write() as db:
            row = self._one(db, "id = ?", grant_id)
            if row is None:
                return None
            columns = change(row)
            if columns:
                before = row
                set_columns(db, grant_id, columns)
                row = self._one(db, "id = ?", grant_id)
                assert row is not None
                if entries is not None:
                    entries(db, before, row)
            return row

    def transaction(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` in one write transaction (``BEGIN IMMEDIATE``: one writer at a time,
        across processes); any exception rolls everything back."""
        with self._write() as db:
            return work(Transaction(self, db))

    def customer_rows(self, customer_id: str) -> list[Row]:
        with self._lock:
            return _customer_rows(self._db, customer_id)

    def customer_ledger(
        self, customer_id: str, grant_id: str | None
    ) -> tuple[list[Row], list[EntryRow]]:
        """A customer's grants and ledger rows (of one grant), read in one snapshot."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                rows = _customer_rows(self._db, customer_id)
                found = self._db.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM ledger WHERE customer_id = ?1 "  # noqa: S608
                    "AND (?2 IS NULL OR grant_id = ?2) ORDER BY seq",
                    (customer_id, grant_id),
                ).fetchall()
            finally:
                self._db.execute("COMMIT")
        return rows, [EntryRow(*r) for r in found]

    def entries(self, customer_id: str, grant_id: str | None) -> list[EntryRow]:
        """The stored ledger rows of a customer (of one grant), in the order written."""
        with self._lock:
            found = self._db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM ledger WHERE customer_id = ?1 "  # noqa: S608
                "AND (?2 IS NULL OR grant_id = ?2) ORDER BY seq",
                (customer_id, grant_id),
            ).fetchall()
        return [EntryRow(*r) for r in found]


T = TypeVar("T")


class Transaction:
    """What a write transaction may do (see ``GrantStore.transaction``)."""

    def __init__(self, store: GrantStore, db: sqlite3.Connection) -> None:
        self.store = store
        self.db = db

    def customer_rows(self, customer_id: str) -> list[Row]:
        return _customer_rows(self.db, customer_id)

    def grant(self, grant_id: str) -> Row | None:
        return self.store._one(self.db, "id = ?", grant_id)

    def set_columns(self, grant_id: str, columns: dict[str, Any]) -> None:
        set_columns(self.db, grant_id, columns)

    def add_entry(self, customer_id: str, grant_id: str | None, segment: int | None, kind: str,
                  amount: str, unit: str, at: str, reference: str | None,
                  recorded_at: str) -> None:
        add_entry(self.db, customer_id, grant_id, segment, kind, amount, unit, at, reference,
                  recorded_at)

    def usage(self, reference: str) -> tuple[str, str] | None:
        """(customer id, request hash) of the usage recorded under ``reference``."""
        found = self.db.execute(
            "SELECT customer_id, request_hash FROM usage WHERE reference = ?", (reference,)
        ).fetchone()
        return (found[0], found[1]) if found else None

    def add_usage(self, reference: str, customer_id: str, digest: str, at: str,
                  recorded_at: str) -> None:
        self.db.execute(
            "INSERT INTO usage (reference, customer_id, request_hash, at, recorded_at) "
            "VALUES (?, ?, ?, ?, ?)", (reference, customer_id, digest, at, recorded_at))

    def grant_entries(self, grant_id: str) -> list[EntryRow]:
        found = self.db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM ledger WHERE grant_id = ? ORDER BY seq",  # noqa: S608
            (grant_id,)).fetchall()
        return [EntryRow(*r) for r in found]

    def entries_for(self, reference: str) -> list[EntryRow]:
        found = self.db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM ledger WHERE reference = ? "  # noqa: S608
            "AND kind = 'consumed' ORDER BY seq", (reference,)).fetchall()
        return [EntryRow(*r) for r in found]


def _customer_rows(db: sqlite3.Connection, customer_id: str) -> list[Row]:
    found = db.execute(
        f"SELECT {_COLUMNS} FROM grants WHERE customer_id = ? ORDER BY seq",  # noqa: S608
        (customer_id,)).fetchall()
    return [Row(*r) for r in found]


def set_columns(db: sqlite3.Connection, grant_id: str, columns: dict[str, Any]) -> None:
    assignments = ", ".join(f"{name} = ?" for name in columns)
    db.execute(
        f"UPDATE grants SET {assignments} WHERE id = ?",  # noqa: S608
        [*columns.values(), grant_id],
    )


_INSERT_ENTRY = ("INSERT INTO ledger (customer_id, grant_id, segment, kind, amount, unit, at, "
                 "reference, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def add_entry(db: sqlite3.Connection, customer_id: str, grant_id: str | None,
              segment: int | None, kind: str, amount: str, unit: str, at: str,
              reference: str | None, recorded_at: str) -> None:
    db.execute(_INSERT_ENTRY,
               (customer_id, grant_id, segment, kind, amount, unit, at, reference, recorded_at))


def signed(amount: Decimal) -> str:
    """Exact decimal text of a ledger amount (never ``-0``)."""
    return str(amount) if amount else "0"


def _backfill_ledger(db: sqlite3.Connection) -> None:
    """Version 2 on a database written by version 1: a ``granted`` entry for every grant and a
    ``voided`` entry for every voided one (what was left in its windows not ended by then).
    Version 1 recorded no usage, so nothing was consumed."""
    from datetime import datetime

    rows = [Row(*r) for r in db.execute(f"SELECT {_COLUMNS} FROM grants ORDER BY seq")]  # noqa: S608
    for row in rows:
        add_entry(db, row.customer_id, row.id, None, "granted", row.amount, row.unit,
                  row.created_at, None, row.created_at)
        request = row.request
        segments = request.get("schedule") or [
            {"amount": request["amount"]["amount"], "ends_before": request.get("expires_at")}]
        consumed = json.dumps(["0"] * len(segments))
        set_columns(db, row.id, {"consumed_json": consumed})
        if row.voided_at is None:
            continue
        voided = datetime.fromisoformat(row.voided_at)
        left = bc.exact_sum(
            Decimal(str(s["amount"])) for s in segments
            if s.get("ends_before") is None or datetime.fromisoformat(s["ends_before"]) > voided)
        add_entry(db, row.customer_id, row.id, None, "voided", signed(left.copy_negate()), row.unit,
                  row.voided_at, None, row.voided_at)


_BACKFILL: dict[int, Callable[[sqlite3.Connection], None]] = {2: _backfill_ledger}
