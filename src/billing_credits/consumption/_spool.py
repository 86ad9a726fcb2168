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

import pickle
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from billing_credits._ledger import Usage
from billing_credits._model import CreditGrant
from billing_credits._money import Money

__all__ = ["Spool"]

_BATCH = 500
_T = TypeVar("_T")


class Spool:
    """Grants and usage written once, read back grouped by customer (sorted by id)."""

    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="billing-credits-spool-"))
        self._db = sqlite3.connect(self._folder / "spool.db")
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;"
            "CREATE TABLE grants (customer TEXT NOT NULL, body BLOB NOT NULL);"
            "CREATE TABLE usage (customer TEXT NOT NULL, body BLOB NOT NULL);")
        self._units: dict[str, dict[str, Money]] = {}
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
        """Spool ``grants`` (remembering each customer's units, for ``unit_of``)."""
        self._insert("grants", ((g.customer_id, g) for g in grants), grants=True)

    def add_usage(self, usage: Iterable[Usage]) -> None:
        self._insert("usage", ((u.customer_id, u) for u in usage), grants=False)

    def _insert(self, table: str, rows: Iterable[tuple[str, CreditGrant | Usage]], *,
                grants: bool) -> None:
        batch: list[tuple[str, bytes]] = []
        for customer, record in rows:
            if grants:
                assert isinstance(record, CreditGrant)
                self._units.setdefault(customer, {}).setdefault(record.amount.unit_key, record.amount)
                self.grants += 1
            else:
                self.events += 1
            batch.append((customer, pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)))
            if len(batch) >= _BATCH:
                self._flush(table, batch)
                batch = []
        self._flush(table, batch)

    def _flush(self, table: str, batch: list[tuple[str, bytes]]) -> None:
        if batch:
            with self._db:
                self._db.executemany(f"INSERT INTO {table} VALUES (?, ?)", batch)  # noqa: S608

    @property
    def unit_of(self) -> Callable[[str], Money | None]:
        """The unit of a customer's grants when they use exactly one (as ``units_of``)."""
        def unit(customer: str) -> Money | None:
            mine = self._units.get(customer, {})
            return next(iter(mine.values())) if len(mine) == 1 else None
        return unit

    def customers(self) -> Iterator[str]:
        """Every customer with a grant or a usage event, sorted."""
        with self._db:
            self._db.execute("CREATE INDEX IF NOT EXISTS g_customer ON grants (customer)")
            self._db.execute("CREATE INDEX IF NOT EXISTS u_customer ON usage (customer)")
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
