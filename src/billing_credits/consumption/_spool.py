"""Group a listing of grants (and a usage stream) by customer without holding it in memory.

A provider lists grants in its own order (``local`` by insertion, a vendor by creation), not
customer by customer; the simulator needs one customer's grants and usage at a time. The
spool writes each grant and usage event to a private temporary SQLite file as it arrives
and reads them back customer by customer, so memory holds one customer, whatever the count.

The records are pickled: the file is written and read back by this process within one call,
in a folder only it can read (``tempfile.mkdtemp``: mode 0700), and removed on close; it never
holds input from anyone else. Pickling keeps the validated models as they are (no second
validation on the way back).
"""

from __future__ import annotations

import functools
import pickle
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from billing_credits._ledger import Usage
from billing_credits._model import CreditGrant
from billing_credits._money import Money

__all__ = ["Spool"]

_BATCH = 500


def _dump(record: CreditGrant | Usage) -> bytes:
    return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
_T = TypeVar("_T")


class Spool:
    """Grants and usage written once, read back grouped by customer (sorted by id)."""

    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="billing-credits-spool-"))
        self._db = sqlite3.connect(self._folder / "spool.db")
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;"
            "CREATE TABLE grants (customer TEXT NOT NULL, unit TEXT NOT NULL, body BLOB NOT NULL);"
            "CREATE TABLE usage (customer TEXT NOT NULL, body BLOB NOT NULL);")
        self._indexed = False
        self.grants = 0
        self.events = 0

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def add_grants(self, grants: Iterable[CreditGrant]) -> None:
        """Spool ``grants`` (with each one's unit, for ``unit_of``)."""
        batch: list[tuple[str, str, bytes]] = []
        for grant in grants:
            self.grants += 1
            batch.append((grant.customer_id, grant.amount.unit_key, _dump(grant)))
            if len(batch) >= _BATCH:
                self._flush("INSERT INTO grants VALUES (?, ?, ?)", batch)
                batch = []
        self._flush("INSERT INTO grants VALUES (?, ?, ?)", batch)

    def add_usage(self, usage: Iterable[Usage]) -> None:
        batch: list[tuple[str, bytes]] = []
        for event in usage:
            self.events += 1
            batch.append((event.customer_id, _dump(event)))
            if len(batch) >= _BATCH:
                self._flush("INSERT INTO usage VALUES (?, ?)", batch)
                batch = []
        self._flush("INSERT INTO usage VALUES (?, ?)", batch)

    def _flush(self, statement: str, batch: Sequence[tuple[Any, ...]]) -> None:
        if batch:
            self._indexed = False
            with self._db:
                self._db.executemany(statement, batch)

    def _index(self) -> None:
        if not self._indexed:
            with self._db:
                self._db.execute("CREATE INDEX IF NOT EXISTS g_customer ON grants (customer)")
                self._db.execute("CREATE INDEX IF NOT EXISTS u_customer ON usage (customer)")
            self._indexed = True

    @property
    def unit_of(self) -> Callable[[str], Money | None]:
        """The unit of a customer's grants when they use exactly one (as ``units_of``), read
        from the spool (nothing per customer is kept in memory)."""
        @functools.lru_cache(maxsize=256)
        def unit(customer: str) -> Money | None:
            self._index()
            units, first = self._db.execute(
                "SELECT COUNT(DISTINCT unit), MIN(rowid) FROM grants WHERE customer = ?",
                (customer,)).fetchone()
            if units != 1:
                return None
            (body,) = self._db.execute("SELECT body FROM grants WHERE rowid = ?",
                                       (first,)).fetchone()
            return self._load(body, CreditGrant).amount
        return unit

    def customers(self) -> Iterator[str]:
        """Every customer with a grant or a usage event, sorted."""
        self._index()
        rows = self._db.execute(
            "SELECT customer FROM grants UNION SELECT customer FROM usage ORDER BY 1")
        for (customer,) in rows:
            yield customer

    def groups(self, *, synthetic: bool) -> Iterator[tuple[str, Sequence[CreditGrant],
                                                            Sequence[Usage] | None]]:
        """Per customer (sorted): its grants, and its usage (None when ``synthetic``), in the
        order they were added."""
        for customer in list(self.customers()):  # ids only: small beside the records
            grants = [self._load(b, CreditGrant) for (b,) in self._db.execute(
                "SELECT body FROM grants WHERE customer = ? ORDER BY rowid", (customer,))]
            usage = None if synthetic else [self._load(b, Usage) for (b,) in self._db.execute(
                "SELECT body FROM usage WHERE customer = ? ORDER BY rowid", (customer,))]
            yield customer, grants, usage

    @staticmethod
    def _load(body: bytes, kind: type[_T]) -> _T:
        # Written by this process to its own private file (see the module docstring).
        record = pickle.loads(body)  # noqa: S301
        assert isinstance(record, kind)
        return record
