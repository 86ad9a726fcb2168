"""The local ledger in a SQLite file: the schema-3 design (``_store``), exact decimal text,
``BEGIN IMMEDIATE`` (one writer at a time across processes), write-ahead logging; and the
upgrades from the schemas before it (1 and 2), each in one transaction."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import billing_credits as bc

from ._store import (
    _GRANT,
    SCHEMA_VERSION,
    Dialect,
    GrantStore,
    Lot,
    Tx,
    _refuse_newer,
    _steps,
    grant_of,
    lots_of,
    moment,
    schema,
    schema_3_additions,
    signed,
)

_V1 = """
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
)"""


class SqliteStore(GrantStore):
    """A SQLite file: one connection per store, one writer at a time across processes
    (``BEGIN IMMEDIATE``), write-ahead logging so readers never wait for the writer."""

    def __init__(self, path: Path, clock: Callable[[], datetime], *, upgrade: bool = True) -> None:
        super().__init__(clock)
        self.dialect = Dialect()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=60000")
        if upgrade:
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
    def _begin(self, write: bool) -> Iterator[Tx]:
        with self._lock:
            # The clock is read only when the work asks, after BEGIN IMMEDIATE took the lock.
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield Tx(self, self._db, self.clock)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def address(self) -> str:
        return str(self.path.resolve())

    def version(self) -> int:
        with self._lock:
            found: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        return found

    def upgrade_steps(self) -> list[str]:
        version = self.version()
        return _steps(version, self._counts(version), f"SQLite file {self.path}")

    def _counts(self, version: int) -> dict[str, int]:
        if version == 0:
            return {}
        tables = ["grants"] + (["ledger", "usage"] if version >= 2 else [])
        with self._lock:
            return {t: self._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                    for t in tables}

    def _migrate(self) -> None:
        with self._begin(True) as tx:
            db = self._db
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
            _refuse_newer(version, str(self.path))
            if version == SCHEMA_VERSION:
                return
            if version == 0:
                for statement in schema(self.dialect):
                    db.execute(statement)
            else:
                if version < 2:
                    _to_2(db, version)
                _to_3(tx)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


_V2 = """
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
)
"""


def _to_2(db: sqlite3.Connection, version: int) -> None:
    """Schema 1 (or nothing) to 2, as the release that made schema 2 did it: the ledger, with
    a ``granted`` entry for every grant and a ``voided`` entry for every voided one (what was
    left in its windows not ended by then). Schema 1 recorded no usage."""
    if version == 0:
        db.execute(_V1)
        db.execute("CREATE INDEX grants_by_customer ON grants (customer_id, seq)")
    for statement in _V2.split(";"):
        if statement.strip():
            db.execute(statement)
    insert = ("INSERT INTO ledger (customer_id, grant_id, segment, kind, amount, unit, at, "
              "reference, recorded_at) VALUES (?, ?, NULL, ?, ?, ?, ?, NULL, ?)")
    for (gid, customer, amount, unit, request_json, voided_at, created_at) in db.execute(
            "SELECT id, customer_id, amount, unit, request_json, voided_at, created_at "
            "FROM grants ORDER BY seq").fetchall():
        db.execute(insert, (customer, gid, "granted", amount, unit, created_at, created_at))
        request = json.loads(request_json)
        segments = request.get("schedule") or [
            {"amount": request["amount"]["amount"], "ends_before": request.get("expires_at")}]
        db.execute("UPDATE grants SET consumed_json = ? WHERE id = ?",
                   (json.dumps(["0"] * len(segments)), gid))
        if voided_at is None:
            continue
        voided = moment(voided_at)
        left = bc.exact_sum(
            Decimal(str(s["amount"])) for s in segments
            if s.get("ends_before") is None or moment(s["ends_before"]) > voided)
        db.execute(insert, (customer, gid, "voided", signed(left.copy_negate()), unit,
                            voided_at, voided_at))


def _to_3(tx: Tx) -> None:
    """Schema 2 to 3: a lot per access window of every grant, with what is left in it (its
    amount less what schema 2 recorded as consumed from it, ``consumed_json``), the reference
    index, the meta table; ``consumed_json`` goes. Ledger entries and usage stay as they are."""
    for statement in schema_3_additions(tx.d):
        tx.run(statement)
    lots: list[Lot] = []
    for r in tx.all(f"SELECT {_GRANT}, consumed_json FROM grants ORDER BY seq"):  # noqa: S608
        row = tx.row(r)
        consumed = [Decimal(text) for text in json.loads(r[13])]
        try:
            grant = grant_of(row)
        except Exception:  # noqa: S112 - the row itself says why, when read
            # A row the model cannot read (edited by hand, say) still reads as an unreadable
            # grant after the upgrade, as before it; it has no lot: nothing can spend it.
            continue
        lots += lots_of(row, grant, consumed)
    tx.add_lots(lots)
    tx.run("ALTER TABLE grants DROP COLUMN consumed_json")

