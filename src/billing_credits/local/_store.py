"""Storage for the local provider: one relational design, two engines (SQLite, PostgreSQL).

Schema 3 (the design, the same on both engines):

- ``grants``: one row per grant, its request as JSON (read back through the neutral model),
  its idempotency key UNIQUE (two processes racing with one key get one row).
- ``lots``: one row per access window of a grant, with what it holds (``amount``) and what is
  left (``remaining``), updated in the transaction that consumes from it, and copies of what
  consumption orders by (priority, creation, window), so ``consume`` and ``get_balance`` read
  lots, never a grant model and never the history.
- ``ledger``: every movement of credit (granted, consumed, voided, expired), indexed by
  customer and time, by grant and by usage reference.
- ``usage``: each consumed reference once (PRIMARY KEY): applying it again finds it.
- ``meta``: the schema version (SQLite also keeps it in ``PRAGMA user_version``, which the
  releases before schema 3 read, so they refuse a schema-3 file).

Amounts are exact: PostgreSQL ``NUMERIC``; on SQLite exact decimal text (an amount may have
38 significant digits and 40 places, more than SQLite's 64-bit integers hold as scaled
integers, and SQLite's REAL is binary floating point), with the arithmetic done in Python's
``Decimal`` under the exact context. ``Dialect`` holds the few differences: placeholders,
types, row locks, the transaction's clock.
"""

from __future__ import annotations

import decimal
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import billing_credits as bc

SCHEMA_VERSION = 3

T = TypeVar("T")


def text_time(moment: datetime | None) -> str | None:
    """A moment as stored text: UTC, microseconds, one format (so text order is time order)."""
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def signed(amount: Decimal) -> str:
    """Exact decimal text of an amount (zero always ``0``, never ``-0`` or ``0.00``)."""
    return str(amount) if amount else "0"


_HASH_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)
"""``json.dumps(..., sort_keys=True, separators=(",", ":"))``, built once (``json.dumps``
with arguments builds a new encoder on every call; no check for cycles: what it encodes is
JSON-ready data built fresh, a tree)."""


def request_hash(request: dict[str, Any]) -> str:
    """A digest of what was asked, to tell an idempotent replay from a reused key."""
    return text_hash(_HASH_JSON.encode(request))


def text_hash(text: str) -> str:
    """``request_hash`` of a request whose encoding (``_HASH_JSON``) is ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()


class SchemaError(bc.ConfigurationError):
    """The database was written by a newer version of billing-credits."""


# -- rows ------------------------------------------------------------------------------------


class Row(NamedTuple):
    """One stored grant (times as stored text), with what was consumed from each window.

    Immutable, as a frozen dataclass, and made in a fifth of the time (a row per grant read
    or imported: a frozen dataclass sets each of its 14 fields through ``object.__setattr__``).
    A changed copy is ``row._replace(...)``."""

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
    consumed: tuple[Decimal, ...] = ()

    @property
    def request(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.request_json)
        return data


@dataclass(frozen=True, slots=True)
class Lot:
    """One access window of a grant: what it holds and what is left, and what consumption
    orders by. ``money`` is the grant's unit as JSON (a ``Money`` without its amount)."""

    grant_id: str
    idx: int
    grant_seq: int
    customer_id: str
    unit: str
    money: str
    priority: Decimal | None
    created_at: datetime
    starts_at: datetime
    ends_before: datetime | None
    amount: Decimal
    remaining: Decimal
    voided_at: datetime | None
    admits_all: bool
    windows: int


@dataclass(frozen=True)
class EntryRow:
    """One stored ledger row; ``amount`` is signed exact decimal text, times stored text."""

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


# -- dialects --------------------------------------------------------------------------------


class Dialect:
    """What differs between the engines. SQL is written once with ``?`` placeholders."""

    name = "sqlite"
    batch_sequence = True
    """A batch of new grants may number them itself (the writer holds the database's lock)."""
    amount_type = "TEXT"
    time_type = "TEXT"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    for_update = ""
    without_rowid = " WITHOUT ROWID"  # lots are found by their key: one B-tree, not two

    def sql(self, text: str) -> str:
        return text

    def amount_in(self, value: Decimal | None) -> Any:
        return None if value is None else signed(value)

    def amount_out(self, value: Any) -> Decimal:
        return Decimal(value)

    def time_in(self, value: datetime | None) -> Any:
        return text_time(value)

    def time_out(self, value: Any) -> datetime:
        return moment(value)

    def stored_time(self, text: str | None) -> Any:
        """A time given as text, as stored: kept when already in the stored form."""
        if text is None:
            return None
        if len(text) == 32 and text.endswith("+00:00") and text[19] == ".":
            return text
        return self.time_in(moment(text))

    def text_out(self, value: Any) -> str:
        """A stored time as the text every row carries."""
        return str(value)

    def positive(self, column: str) -> str:
        return f"{column} != '0'"


def schema(d: Dialect) -> list[str]:
    """Schema 3, created whole on a new database."""
    a, t = d.amount_type, d.time_type
    return [
        f"""CREATE TABLE grants (
            seq             {d.serial},
            id              TEXT NOT NULL UNIQUE,
            customer_id     TEXT NOT NULL,
            idempotency_key TEXT NOT NULL UNIQUE,
            key_supplied    INTEGER NOT NULL,
            request_hash    TEXT NOT NULL,
            amount          {a} NOT NULL,
            unit            TEXT NOT NULL,
            request_json    TEXT NOT NULL,
            effective_at    {t} NOT NULL,
            expires_at      {t},
            voided_at       {t},
            created_at      {t} NOT NULL)""",
        "CREATE INDEX grants_by_customer ON grants (customer_id, seq)",
        f"""CREATE TABLE ledger (
            seq         {d.serial},
            customer_id TEXT NOT NULL,
            grant_id    TEXT,
            segment     INTEGER,
            kind        TEXT NOT NULL,
            amount      {a} NOT NULL,
            unit        TEXT NOT NULL,
            at          {t} NOT NULL,
            reference   TEXT,
            recorded_at {t} NOT NULL)""",
        "CREATE INDEX ledger_by_customer ON ledger (customer_id, at, seq)",
        "CREATE INDEX ledger_by_grant ON ledger (grant_id, seq)",
        f"""CREATE TABLE usage (
            reference    TEXT PRIMARY KEY,
            customer_id  TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            at           {t} NOT NULL,
            recorded_at  {t} NOT NULL)""",
        *schema_3_additions(d),
    ]


def schema_3_additions(d: Dialect) -> list[str]:
    """What schema 3 adds to schema 2: lots, the reference index, the meta table."""
    a, t = d.amount_type, d.time_type
    return [
        f"""CREATE TABLE lots (
            grant_id    TEXT NOT NULL,
            idx         INTEGER NOT NULL,
            grant_seq   BIGINT NOT NULL,
            customer_id TEXT NOT NULL,
            unit        TEXT NOT NULL,
            money       TEXT NOT NULL,
            priority    {a},
            created_at  {t} NOT NULL,
            starts_at   {t} NOT NULL,
            ends_before {t},
            amount      {a} NOT NULL,
            remaining   {a} NOT NULL,
            voided_at   {t},
            admits_all  INTEGER NOT NULL,
            windows     INTEGER NOT NULL,
            PRIMARY KEY (grant_id, idx)){d.without_rowid}""",
        "CREATE INDEX lots_by_customer ON lots (customer_id, unit, grant_seq, idx)",
        "CREATE INDEX ledger_by_reference ON ledger (reference) WHERE reference IS NOT NULL",
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"INSERT INTO meta (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}')",  # noqa: S608
    ]


_GRANT = ("seq, id, customer_id, idempotency_key, key_supplied, request_hash, amount, unit, "
          "request_json, effective_at, expires_at, voided_at, created_at")
_LOT = ("grant_id, idx, grant_seq, customer_id, unit, money, priority, created_at, starts_at, "
        "ends_before, amount, remaining, voided_at, admits_all, windows")
_ENTRY = "seq, customer_id, grant_id, segment, kind, amount, unit, at, reference, recorded_at"
_NEW_GRANT = ("id, customer_id, idempotency_key, key_supplied, request_hash, amount, unit, "
              "request_json, effective_at, expires_at, voided_at, created_at")
"""A new grant row's columns (its ``seq`` given by the database)."""
_INSERT_GRANT = f"INSERT INTO grants ({_NEW_GRANT}) VALUES ({', '.join('?' * 12)})"  # noqa: S608
_INSERT_NUMBERED_GRANT = (f"INSERT INTO grants (seq, {_NEW_GRANT}) "  # noqa: S608
                          f"VALUES ({', '.join('?' * 13)})")
_INSERT_LOT = f"INSERT INTO lots ({_LOT}) VALUES ({', '.join('?' * 15)})"  # noqa: S608


# -- the store -------------------------------------------------------------------------------


class Unavailable(Exception):  # noqa: N818 - mapped to bc.UnavailableError
    """The database cannot be reached (raised by the engine layer, mapped by the provider to
    ``UnavailableError``, or ``AuthenticationError`` when ``refused``: the server said no to
    the credentials, which trying again will not change)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class GrantStore:
    """The ledger's tables on one engine. Each method is one short transaction; thread-safe.

    ``clock`` gives the transactions' time on SQLite (read after the write lock is taken);
    on PostgreSQL the server's ``clock_timestamp()`` is read after the rows are locked, unless
    ``server_clock`` is false (an injected clock, in tests).
    """

    dialect: Dialect

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock

    # engine hooks -------------------------------------------------------------------------

    @contextmanager
    def _begin(self, write: bool) -> Iterator[Tx]:
        raise NotImplementedError
        yield  # pragma: no cover

    def close(self) -> None:
        raise NotImplementedError

    def address(self) -> str:
        """Where the ledger lives, for ``identity()`` (no secret in it)."""
        raise NotImplementedError

    def version(self) -> int:
        """The schema version stored (0: an empty database)."""
        raise NotImplementedError

    def upgrade_steps(self) -> list[str]:
        """What opening this database with this release does to it, one line a step."""
        raise NotImplementedError

    # transactions ------------------------------------------------------------------------

    def transaction(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in one write transaction; any exception rolls everything back."""
        with self._begin(True) as tx:
            return work(tx)

    def read(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in one read snapshot."""
        with self._begin(False) as tx:
            return work(tx)

    # flows used outside a caller's transaction -------------------------------------------

    def insert(self, row: Row, lots: Sequence[Lot], granted_at: str | None = None) -> tuple[Row, bool]:
        """Insert ``row`` (with its lots and ``granted`` entry) unless its idempotency key
        exists; return the stored row and whether it is new."""
        def work(tx: Tx) -> tuple[Row, bool]:
            seq = tx.insert_grant(row, lots, granted_at)
            if seq is None:
                existing = tx.grant_by_key(row.idempotency_key)
                assert existing is not None
                return existing, False
            return row._replace(seq=seq), True
        return self.transaction(work)

    def insert_many(self, rows: Sequence[tuple[Row, bc.CreditGrant]]) -> list[Row | None]:
        """Insert every row whose idempotency key is new, in one transaction, each with its
        lots (from its validated ``grant``) and ``granted`` entry. For each: None when
        inserted, else the row stored under its key."""
        def work(tx: Tx) -> list[Row | None]:
            existing = tx.grants_by_keys([row.idempotency_key for row, _ in rows])
            result: list[Row | None] = []
            fresh: list[tuple[Row, bc.CreditGrant]] = []
            for row, grant in rows:
                if row.idempotency_key in existing:
                    result.append(existing[row.idempotency_key])
                    continue
                existing[row.idempotency_key] = row  # a key twice in one batch: one grant
                result.append(None)
                fresh.append((row, grant))  # lots only for what is written
            tx.insert_grants(fresh)
            return result
        return self.transaction(work)

    def get(self, grant_id: str) -> Row | None:
        return self.read(lambda tx: tx.grant(grant_id))

    def page(self, customer_id: str | None, after: int, limit: int) -> tuple[list[Row], bool]:
        """Up to ``limit`` grants after sequence number ``after``, and whether more follow."""
        def work(tx: Tx) -> list[Row]:
            if customer_id is None:
                found = tx.all(f"SELECT {_GRANT} FROM grants WHERE seq > ? ORDER BY seq "  # noqa: S608
                               "LIMIT ?", after, limit + 1)
            else:
                found = tx.all(f"SELECT {_GRANT} FROM grants WHERE customer_id = ? AND seq > ? "  # noqa: S608
                               "ORDER BY seq LIMIT ?", customer_id, after, limit + 1)
            return tx.with_consumed([tx.row(r) for r in found])
        rows = self.read(work)
        return rows[:limit], len(rows) > limit

    def customer_ledger(self, customer_id: str) -> tuple[list[Row], list[EntryRow]]:
        """A customer's grants and ledger rows, read in one snapshot."""
        def work(tx: Tx) -> tuple[list[Row], list[EntryRow]]:
            rows = tx.with_consumed([tx.row(r) for r in tx.all(
                f"SELECT {_GRANT} FROM grants WHERE customer_id = ? ORDER BY seq",  # noqa: S608
                customer_id)])
            entries = [tx.entry(r) for r in tx.all(
                f"SELECT {_ENTRY} FROM ledger WHERE customer_id = ? ORDER BY seq",  # noqa: S608
                customer_id)]
            return rows, entries
        return self.read(work)

    def balance_lots(self, customer_id: str, unit: str | None,
                     at: datetime) -> tuple[list[Lot], list[tuple[str, int, Decimal]]]:
        """The customer's lots (of ``unit``) not voided by ``at``, and the consumed entries
        dated after ``at`` (grant, window, amount consumed): what was left at ``at`` is
        ``remaining`` plus those. Both from one snapshot, both by index."""
        d = self.dialect

        def work(tx: Tx) -> tuple[list[Lot], list[tuple[str, int, Decimal]]]:
            where = "customer_id = ? AND (voided_at IS NULL OR voided_at > ?)"
            args: list[Any] = [customer_id, d.time_in(at)]
            if unit is not None:
                where += " AND unit = ?"
                args.append(unit)
            lots = [tx.lot(r) for r in tx.all(
                f"SELECT {_LOT} FROM lots WHERE {where} ORDER BY grant_seq, idx", *args)]  # noqa: S608
            later = [(r[0], r[1], -d.amount_out(r[2])) for r in tx.all(
                "SELECT grant_id, segment, amount FROM ledger WHERE customer_id = ? AND at > ? "
                "AND kind = 'consumed'", customer_id, d.time_in(at))] if lots else []
            return lots, later
        return self.read(work)


class Tx:
    """One transaction's statements, the same on both engines."""

    def __init__(self, store: GrantStore, cursor: Any, now: Callable[[], datetime]) -> None:
        self.store = store
        self.d = store.dialect
        self.cursor = cursor
        self._now = now

    def now(self) -> datetime:
        """The transaction's clock: call it after taking the locks the work needs."""
        return self._now()

    def run(self, sql: str, *args: Any) -> Any:
        return self.cursor.execute(self.d.sql(sql), args)

    def one(self, sql: str, *args: Any) -> Any:
        return self.run(sql, *args).fetchone()

    def all(self, sql: str, *args: Any) -> list[Any]:
        return list(self.run(sql, *args).fetchall())

    # reading rows ------------------------------------------------------------------------

    def row(self, r: Sequence[Any]) -> Row:
        d = self.d
        return Row(int(r[0]), r[1], r[2], r[3], bool(r[4]), r[5], str(d.amount_out(r[6])) if
                   d.name != "sqlite" else r[6], r[7], r[8], d.text_out(r[9]),
                   None if r[10] is None else d.text_out(r[10]),
                   None if r[11] is None else d.text_out(r[11]), d.text_out(r[12]))

    def lot(self, r: Sequence[Any]) -> Lot:
        d = self.d
        return Lot(r[0], int(r[1]), int(r[2]), r[3], r[4], r[5],
                   None if r[6] is None else d.amount_out(r[6]), d.time_out(r[7]),
                   d.time_out(r[8]), None if r[9] is None else d.time_out(r[9]),
                   d.amount_out(r[10]), d.amount_out(r[11]),
                   None if r[12] is None else d.time_out(r[12]), bool(r[13]), int(r[14]))

    def entry(self, r: Sequence[Any]) -> EntryRow:
        d = self.d
        return EntryRow(int(r[0]), r[1], r[2], r[3], r[4], signed(d.amount_out(r[5])), r[6],
                        d.text_out(r[7]), r[8], d.text_out(r[9]))

    def with_consumed(self, rows: list[Row]) -> list[Row]:
        """``rows`` with what was consumed from each of their windows (from their lots)."""
        if not rows:
            return rows
        consumed: dict[str, dict[int, Decimal]] = {}
        for start in range(0, len(rows), 500):
            chunk = [row.id for row in rows[start:start + 500]]
            with decimal.localcontext(bc.exact_context()):
                for gid, idx, amount, remaining in self.all(
                        "SELECT grant_id, idx, amount, remaining FROM lots WHERE grant_id IN "  # noqa: S608
                        f"({', '.join('?' * len(chunk))})", *chunk):
                    consumed.setdefault(gid, {})[int(idx)] = (
                        self.d.amount_out(amount) - self.d.amount_out(remaining))
        result = []
        for row in rows:
            windows = consumed.get(row.id, {})
            result.append(row._replace(consumed=tuple(windows[i] for i in sorted(windows))))
        return result

    def grant(self, grant_id: str, *, lock: bool = False) -> Row | None:
        found = self.one(f"SELECT {_GRANT} FROM grants WHERE id = ?"  # noqa: S608
                         + (self.d.for_update if lock else ""), grant_id)
        return self.with_consumed([self.row(found)])[0] if found else None

    def grant_by_key(self, key: str) -> Row | None:
        found = self.one(f"SELECT {_GRANT} FROM grants WHERE idempotency_key = ?", key)  # noqa: S608
        return self.with_consumed([self.row(found)])[0] if found else None

    def grants_by_keys(self, keys: Sequence[str]) -> dict[str, Row]:
        found: dict[str, Row] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start:start + 500])
            rows = [self.row(r) for r in self.all(
                f"SELECT {_GRANT} FROM grants WHERE idempotency_key IN "  # noqa: S608
                f"({', '.join('?' * len(chunk))})", *chunk)]
            found.update((row.idempotency_key, row) for row in rows)  # for their keys only
        return found

    def insert_grants(self, rows: Sequence[tuple[Row, bc.CreditGrant]]) -> None:
        """Insert new grants (keys known to be new) with their lots and ``granted`` entries:
        a statement per table for the whole batch. What a lot or an entry copies from its
        grant row (sequence number, customer, unit, times, amount) the database copies; a
        grant of one window (no schedule) gets its lot that way, a scheduled one from
        ``lots_of``."""
        if not rows:
            return
        if self.d.batch_sequence:
            self._insert_grants_numbered(rows)
            return
        d = self.d
        stored_time = d.stored_time
        self.cursor.executemany(d.sql(_INSERT_GRANT),
            [(row.id, row.customer_id, row.idempotency_key, int(row.key_supplied),
              row.request_hash, d.amount_in(grant.amount.amount), row.unit, row.request_json,
              stored_time(row.effective_at), stored_time(row.expires_at),
              stored_time(row.voided_at), stored_time(row.created_at))
             for row, grant in rows])  # (row.amount is the text of grant.amount.amount)
        single = [(money_json(grant.amount), d.amount_in(grant.priority),
                   int(admits_all(grant)), row.id)
                  for row, grant in rows if grant.schedule is None]
        a = d.amount_type
        self.cursor.executemany(d.sql(
            f"INSERT INTO lots ({_LOT}) SELECT id, 0, seq, customer_id, unit, CAST(? AS TEXT), "  # noqa: S608
            f"CAST(? AS {a}), created_at, effective_at, expires_at, amount, amount, NULL, "
            "CAST(? AS INTEGER), 1 FROM grants WHERE id = ?"), single)
        scheduled = [(row, grant) for row, grant in rows if grant.schedule is not None]
        if scheduled:
            seqs: dict[str, int] = {}
            for start in range(0, len(scheduled), 500):
                chunk = [row.id for row, _ in scheduled[start:start + 500]]
                seqs.update((gid, int(seq)) for gid, seq in self.all(
                    f"SELECT id, seq FROM grants WHERE id IN ({', '.join('?' * len(chunk))})",  # noqa: S608
                    *chunk))
            self.add_lots([lot for row, grant in scheduled for lot in lots_of(row, grant)], seqs)
        for start in range(0, len(rows), 500):
            chunk = [row.id for row, _ in rows[start:start + 500]]
            self.run(
                "INSERT INTO ledger (customer_id, grant_id, segment, kind, amount, unit, at, "  # noqa: S608
                "reference, recorded_at) SELECT customer_id, id, NULL, 'granted', amount, unit, "
                "created_at, NULL, created_at FROM grants WHERE id IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY seq", *chunk)

    def _insert_grants_numbered(self, rows: Sequence[tuple[Row, bc.CreditGrant]]) -> None:
        """``insert_grants`` where the batch numbers its grants itself (SQLite: the write lock
        is held, so the sequence numbers after the highest ever given are the batch's): each
        lot and entry is written from the values at hand, one plain insert per table, the
        same rows the statements reading them back from ``grants`` write (a test holds batch
        and single creates equal)."""
        d = self.d
        first = int(self.one(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'grants'), 0), "
            "coalesce((SELECT max(seq) FROM grants), 0))")[0]) + 1
        stored_time = d.stored_time
        grants, lots = [], []
        scheduled: list[tuple[Row, bc.CreditGrant]] = []
        seqs: dict[str, int] = {}
        for seq, (row, grant) in enumerate(rows, start=first):
            amount = d.amount_in(grant.amount.amount)  # (the text row.amount holds)
            effective, expires = stored_time(row.effective_at), stored_time(row.expires_at)
            created = stored_time(row.created_at)
            grants.append((seq, row.id, row.customer_id, row.idempotency_key,
                           int(row.key_supplied), row.request_hash, amount, row.unit,
                           row.request_json, effective, expires, stored_time(row.voided_at),
                           created))
            if grant.schedule is None:
                lots.append((row.id, 0, seq, row.customer_id, row.unit,
                             money_json(grant.amount), d.amount_in(grant.priority), created,
                             effective, expires, amount, amount, None,
                             int(admits_all(grant)), 1))
            else:
                scheduled.append((row, grant))
                seqs[row.id] = seq
        self.cursor.executemany(_INSERT_NUMBERED_GRANT, grants)
        self.cursor.executemany(_INSERT_LOT, lots)
        if scheduled:
            self.add_lots([lot for row, grant in scheduled for lot in lots_of(row, grant)], seqs)
        self.run(  # the entries of the batch's grants, by their sequence numbers (no list)
            "INSERT INTO ledger (customer_id, grant_id, segment, kind, amount, unit, at, "
            "reference, recorded_at) SELECT customer_id, id, NULL, 'granted', amount, unit, "
            "created_at, NULL, created_at FROM grants WHERE seq >= ? AND seq < ? ORDER BY seq",
            first, first + len(grants))

    def grant_lots(self, grant_id: str, *, lock: bool = False) -> list[Lot]:
        return [self.lot(r) for r in self.all(
            f"SELECT {_LOT} FROM lots WHERE grant_id = ? ORDER BY idx"  # noqa: S608
            + (self.d.for_update if lock else ""), grant_id)]

    def spendable_lots(self, customer_id: str, unit: str) -> list[Lot]:
        """The customer's lots in ``unit`` with credit left, of grants not voided, in grant
        order; locked (PostgreSQL: ``FOR UPDATE``; SQLite: the write lock already held)."""
        return [self.lot(r) for r in self.all(
            f"SELECT {_LOT} FROM lots WHERE customer_id = ? AND unit = ? AND voided_at IS NULL "  # noqa: S608
            f"AND {self.d.positive('remaining')} ORDER BY grant_seq, idx{self.d.for_update}",
            customer_id, unit)]

    def balance_before(self, customer_id: str, unit: str, at: datetime, now: datetime,
                       lots: Sequence[Lot]) -> Decimal | None:
        """The customer's credit in ``unit`` that a ledger listing shows just before a
        consumption at ``at`` (the running balance: the sum of the ledger up to it), from the
        ``spendable_lots`` alone when nothing in the ledger sorts after it: what the lots hold,
        windows still to come included, less windows ended before ``at`` (listed as expired).
        None when something does (a later entry; one at ``at`` that sorts after consumptions:
        adjusted, expired, voided; a window ended between ``at`` and ``now``): read the
        ledger then."""
        moment = self.d.time_in(at)
        if any(lot.ends_before is not None and at < lot.ends_before <= now for lot in lots) \
                or self.one("SELECT 1 FROM ledger WHERE customer_id = ? AND at >= ? AND unit = ? "
                            "AND (at > ? OR kind IN ('adjusted', 'expired', 'voided')) LIMIT 1",
                            customer_id, moment, unit, moment) is not None:
            # ``at >= ?`` first: a range on the (customer_id, at) index, so the check reads only
            # entries at or after the moment, whatever the history (an OR of two conditions on
            # ``at`` made SQLite read the customer's whole ledger: consume slowed 50x at 1M)
            return None
        with decimal.localcontext(bc.exact_context()):
            return bc.exact_sum(lot.remaining for lot in lots
                                if lot.ends_before is None or lot.ends_before >= at)

    def moneys(self, grant_ids: set[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for gid in grant_ids:
            r = self.one("SELECT money FROM lots WHERE grant_id = ? AND idx = 0", gid)
            if r is not None:
                found[gid] = r[0]
        return found

    def usage(self, reference: str) -> tuple[str, str] | None:
        """(customer id, request hash) of the usage recorded under ``reference``."""
        found = self.one("SELECT customer_id, request_hash FROM usage WHERE reference = ?",
                         reference)
        return (found[0], found[1]) if found else None

    def entries_for(self, reference: str) -> list[EntryRow]:
        return [self.entry(r) for r in self.all(
            f"SELECT {_ENTRY} FROM ledger WHERE reference = ? AND kind = 'consumed' "  # noqa: S608
            "ORDER BY seq", reference)]

    def grant_entries(self, grant_id: str) -> list[EntryRow]:
        return [self.entry(r) for r in self.all(
            f"SELECT {_ENTRY} FROM ledger WHERE grant_id = ? ORDER BY seq", grant_id)]  # noqa: S608

    # writing -----------------------------------------------------------------------------

    def insert_grant(self, row: Row, lots: Sequence[Lot], granted_at: str | None) -> int | None:
        """Insert a grant with its lots and ``granted`` entry; None when its key exists."""
        d = self.d
        found = self.one(
            f"{_INSERT_GRANT} ON CONFLICT (idempotency_key) DO NOTHING RETURNING seq",
            row.id, row.customer_id, row.idempotency_key, int(row.key_supplied),
            row.request_hash, d.amount_in(Decimal(row.amount)), row.unit, row.request_json,
            d.stored_time(row.effective_at), d.stored_time(row.expires_at),
            d.stored_time(row.voided_at), d.stored_time(row.created_at))
        if found is None:
            return None
        seq = int(found[0])
        self.add_lots(lots, {row.id: seq})
        self.add_entry(row.customer_id, row.id, None, "granted", Decimal(row.amount), row.unit,
                       moment(granted_at or row.created_at), None, moment(row.created_at))
        return seq

    def add_lots(self, lots: Sequence[Lot], seqs: dict[str, int] | None = None) -> None:
        """Insert ``lots`` (``seqs``: their grants' sequence numbers, when only known now)."""
        d = self.d
        amount, time_in = d.amount_in, d.time_in
        self.cursor.executemany(d.sql(_INSERT_LOT),
            [(lot.grant_id, lot.idx, seqs[lot.grant_id] if seqs else lot.grant_seq,
              lot.customer_id, lot.unit, lot.money, amount(lot.priority),
              time_in(lot.created_at), time_in(lot.starts_at), time_in(lot.ends_before),
              amount(lot.amount), amount(lot.remaining), time_in(lot.voided_at),
              int(lot.admits_all), lot.windows) for lot in lots])

    def set_remaining(self, grant_id: str, idx: int, remaining: Decimal) -> None:
        self.run("UPDATE lots SET remaining = ? WHERE grant_id = ? AND idx = ?",
                 self.d.amount_in(remaining), grant_id, idx)

    def set_grant(self, grant_id: str, *, request_json: str | None = None,
                  expires_at: datetime | bool | None = False,
                  voided_at: datetime | None = None) -> None:
        """Set the columns given (``expires_at=False``: unchanged; None: never)."""
        d = self.d
        sets: list[str] = []
        args: list[Any] = []
        if request_json is not None:
            sets.append("request_json = ?")
            args.append(request_json)
        if expires_at is not False:
            sets.append("expires_at = ?")
            args.append(d.time_in(expires_at if isinstance(expires_at, datetime) else None))
        if voided_at is not None:
            sets.append("voided_at = ?")
            args.append(d.time_in(voided_at))
            self.run("UPDATE lots SET voided_at = ? WHERE grant_id = ?", d.time_in(voided_at),
                     grant_id)
        if sets:
            self.run(f"UPDATE grants SET {', '.join(sets)} WHERE id = ?", *args, grant_id)  # noqa: S608

    def end_window(self, grant_id: str, idx: int, ends_before: datetime | None) -> None:
        self.run("UPDATE lots SET ends_before = ? WHERE grant_id = ? AND idx = ?",
                 self.d.time_in(ends_before), grant_id, idx)

    def drop_windows(self, grant_id: str, kept: int) -> None:
        """Drop the grant's windows from number ``kept`` on (an expire)."""
        self.run("DELETE FROM lots WHERE grant_id = ? AND idx >= ?", grant_id, kept)
        self.run("UPDATE lots SET windows = ? WHERE grant_id = ?", kept, grant_id)

    def add_entry(self, customer_id: str, grant_id: str | None, segment: int | None, kind: str,
                  amount: Decimal, unit: str, at: datetime, reference: str | None,
                  recorded_at: datetime) -> int:
        d = self.d
        found = self.one(
            "INSERT INTO ledger (customer_id, grant_id, segment, kind, amount, unit, at, "
            "reference, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            customer_id, grant_id, segment, kind, d.amount_in(amount), unit, d.time_in(at),
            reference, d.time_in(recorded_at))
        return int(found[0])

    def add_usage(self, reference: str, customer_id: str, digest: str, at: datetime,
                  recorded_at: datetime) -> None:
        self.run("INSERT INTO usage (reference, customer_id, request_hash, at, recorded_at) "
                 "VALUES (?, ?, ?, ?, ?)", reference, customer_id, digest,
                 self.d.time_in(at), self.d.time_in(recorded_at))


def _maybe(text: str | None) -> datetime | None:
    return None if text is None else moment(text)


def _refuse_newer(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{where} has schema version {version}; this billing-credits reads up to "
            f"{SCHEMA_VERSION}: upgrade billing-credits")


def _steps(version: int, counts: dict[str, int], where: str) -> list[str]:
    _refuse_newer(version, where)
    if version == SCHEMA_VERSION:
        return [f"{where} is at schema {version}: nothing to do"]
    if version == 0:
        return [f"{where}: create schema {SCHEMA_VERSION} (grants, lots, ledger, usage, meta)"]
    steps = [f"{where} is at schema {version}: upgrade to {SCHEMA_VERSION} in one transaction "
             "(all of it or nothing)"]
    if version < 2:
        steps.append(f"schema 2: add the ledger and usage tables; a granted entry for each of "
                     f"{counts.get('grants', 0)} grants and a voided entry for each voided one")
    steps += [
        f"schema 3: one lot per access window of {counts.get('grants', 0)} grants, with what "
        "is left in it (the window's amount less what its consumed entries took)",
        "schema 3: drop grants.consumed_json (now the lots); index ledger.reference; "
        "record the version in a meta table",
        f"kept as they are: {counts.get('ledger', 0)} ledger entries and "
        f"{counts.get('usage', 0)} usage references",
    ]
    return steps


def grant_of(row: Row) -> bc.CreditGrant:
    """The neutral grant a row asked for (its request; no read-back fields)."""
    return bc.CreditGrant.model_validate(
        {**row.request, "idempotency_key": row.idempotency_key if row.key_supplied else None})


_MONEY_JSON: dict[tuple[str | None, str | None, str | None], str] = {}


def money_json(money: bc.Money) -> str:
    """The unit of ``money`` as JSON (``Money`` without its amount); a few units per ledger,
    so each is dumped once."""
    unit = money.unit
    key = (money.currency, unit.id if unit else None, unit.name if unit else None)
    found = _MONEY_JSON.get(key)
    if found is None:
        data = money.model_dump(mode="json")
        data.pop("amount")
        found = _MONEY_JSON[key] = json.dumps(data, sort_keys=True)
    return found


def admits_all(grant: bc.CreditGrant) -> bool:
    """Whether the grant's scope admits all usage (``billing_credits.admits`` without a test)."""
    scope = grant.scope
    return scope.is_all_usage or scope.kinds() == {"metered_prices_only"}


def lots_of(row: Row, grant: bc.CreditGrant, consumed: Sequence[Decimal] = ()) -> list[Lot]:
    """The lots of a stored grant: one per access window, less what was consumed from it."""
    money = money_json(grant.amount)
    every = admits_all(grant)
    created = moment(row.created_at)
    voided = _maybe(row.voided_at)
    # (amount, start, end) of each window: ``grant.segments`` without building Segment models
    # for a grant of one window (the import path makes a lot per grant).
    if grant.schedule is not None:
        windows = [(s.amount, s.starts_at, s.ends_before) for s in grant.schedule]
    else:
        start = grant.effective_at or grant.created_at
        if start is None:
            raise bc.InvalidGrantError([bc.FieldProblem(
                "effective_at", "a grant without effective_at has no window until it is created")])
        windows = [(grant.amount.amount, start, grant.expires_at)]
    lots = []
    for index, (amount, starts, ends) in enumerate(windows):
        used = consumed[index] if index < len(consumed) else Decimal(0)
        with decimal.localcontext(bc.exact_context()):
            left = amount - used
        lots.append(Lot(row.id, index, row.seq, row.customer_id, row.unit, money,
                        grant.priority, created, starts, ends, amount, left, voided, every,
                        len(windows)))
    return lots



def is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))
