"""Where each planned grant is, indexed on disk: what apply and verify look up by key, by
customer and by provenance, without holding one entry per grant in memory.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from collections.abc import Iterator
from typing import Any

from billing_credits._model import CreditGrant

from ._plan import MigrationPlan, PlanItem

__all__ = ["PlanIndex", "origin_of"]

Origin = tuple[str, str, str | None]
"""A source grant as a migrated grant's provenance names it: (provider, grant id, segment)."""

_BATCH = 500


def origin_of(grant: CreditGrant) -> Origin | None:
    """The source grant (provider, id, segment) a migrated grant's provenance metadata names."""
    provider = grant.metadata.get("migrated_from_provider")
    source_id = grant.metadata.get("migrated_from_grant")
    if not provider or not source_id:
        return None
    return provider, source_id, grant.metadata.get("migrated_from_segment")


def planned_origin(plan: MigrationPlan, item: PlanItem) -> Origin | None:
    """A planned grant's origin, when it carries provenance naming this plan's source grant: a
    target grant migrated from the same source grant by an earlier plan, under another key (an
    application key later shared by two source grants gets derived keys), is that planned grant
    already there."""
    if item.grant is None or item.key is None or not item.source_id:
        return None
    origin = origin_of(item.grant)
    segment = None if item.segment is None else str(item.segment)
    return origin if origin == (plan.header.source, item.source_id, segment) else None


def _origin_text(origin: Origin) -> str:
    return json.dumps(origin)


class PlanIndex:
    """The planned grants of a plan in a private temporary SQLite file (``sqlite3.connect("")``:
    SQLite keeps a small page cache and spills the rest to disk, deleted on close): per planned
    grant its position in the plan, target customer and key, and each planned origin with its
    key. Memory holds what one customer needs at a time, never one entry per grant.

    ``found`` and ``failed`` record, per key, what apply learned of the target (and, when
    retiring, what it holds); ``sources`` (only with ``sources=True``) every plan item's source
    grant, for retiring.
    """

    def __init__(self, *, sources: bool = False) -> None:
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("BEGIN")
        self._db.execute("CREATE TABLE planned (seq INTEGER PRIMARY KEY, position INTEGER, "
                         "customer TEXT, key TEXT)")
        # INSERT OR REPLACE: the last planned grant naming an origin wins, as in a dict.
        self._db.execute("CREATE TABLE origin (origin TEXT PRIMARY KEY, key TEXT)")
        self._db.execute("CREATE TABLE found (key TEXT PRIMARY KEY, held BLOB)")
        self._db.execute("CREATE TABLE failed (key TEXT PRIMARY KEY)")
        self._db.execute("CREATE TABLE source (seq INTEGER PRIMARY KEY, source_id TEXT, "
                         "planned BLOB)")
        self._sources = sources
        self._planned: list[tuple[Any, ...]] = []
        self._origins: list[tuple[str, str]] = []
        self._items: list[tuple[str, bytes | None]] = []
        self.count = 0

    # -- building, one plan item at a time ----------------------------------------------------

    def add(self, plan: MigrationPlan, position: int, item: PlanItem) -> None:
        """Index one plan item (in plan order)."""
        migrate = item.action == "migrate" and item.grant is not None and item.key is not None
        if self._sources:
            planned = None
            if migrate:
                assert item.grant is not None
                planned = pickle.dumps((item.key, item.grant.amount, item.grant.customer_id),
                                       pickle.HIGHEST_PROTOCOL)
            self._items.append((item.source_id, planned))
        if not migrate:
            return
        assert item.grant is not None
        assert item.key is not None
        self._planned.append((position, item.grant.customer_id, item.key))
        if (origin := planned_origin(plan, item)) is not None:
            self._origins.append((_origin_text(origin), item.key))
        self.count += 1
        if len(self._planned) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        self._db.executemany("INSERT INTO planned (position, customer, key) VALUES (?, ?, ?)",
                             self._planned)
        self._db.executemany("INSERT OR REPLACE INTO origin VALUES (?, ?)", self._origins)
        self._db.executemany("INSERT INTO source (source_id, planned) VALUES (?, ?)",
                             self._items)
        self._planned.clear()
        self._origins.clear()
        self._items.clear()

    def built(self) -> PlanIndex:
        """Done adding: write what waits and index it."""
        self._flush()
        self._db.execute("CREATE INDEX planned_customer ON planned (customer, seq)")
        self._db.execute("CREATE INDEX planned_key ON planned (key)")
        self._db.execute("CREATE INDEX origin_key ON origin (key)")
        if self._sources:
            self._db.execute("CREATE INDEX source_id ON source (source_id, seq)")
        self._db.execute("COMMIT")
        return self

    # -- reading ------------------------------------------------------------------------------

    def customers(self, *, first_seen: bool = False) -> Iterator[str]:
        """Each target customer with a planned grant, once: sorted (code point order, as
        Python sorts), or in the order of its first planned grant."""
        order = "MIN(seq)" if first_seen else "customer"
        rows = self._db.execute(
            f"SELECT customer FROM planned GROUP BY customer ORDER BY {order}")  # noqa: S608
        for (customer,) in rows:
            yield customer

    def distinct_keys(self) -> int:
        """The number of (customer, key) pairs planned."""
        row = self._db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT customer, key "
                               "FROM planned)").fetchone()
        return int(row[0])

    def positions(self, customer: str) -> dict[str, int]:
        """A customer's planned keys in plan order (first seen), each with its last position."""
        rows = self._db.execute(
            "SELECT key, MAX(position) FROM planned WHERE customer = ? GROUP BY key "
            "ORDER BY MIN(seq)", (customer,))
        return dict(rows)

    def keys(self, customer: str) -> list[str]:
        """A customer's planned keys, in plan order (repeats kept)."""
        rows = self._db.execute("SELECT key FROM planned WHERE customer = ? ORDER BY seq",
                                (customer,))
        return [key for (key,) in rows]

    def origins(self, customer: str) -> dict[Origin, str]:
        """The planned origins whose key is one of the customer's planned keys, with that key:
        what a lookup of an origin among every planned origin finds, when it is this
        customer's."""
        rows = self._db.execute(
            "SELECT origin, key FROM origin WHERE key IN "
            "(SELECT key FROM planned WHERE customer = ?)", (customer,))
        origins: dict[Origin, str] = {}
        for text, key in rows:
            provider, source_id, segment = json.loads(text)
            origins[(provider, source_id, segment)] = key
        return origins

    # -- what apply learns of the target --------------------------------------------------------

    def mark_found(self, key: str, held: object) -> None:
        self._db.execute("INSERT OR REPLACE INTO found VALUES (?, ?)",
                         (key, None if held is None else pickle.dumps(held,
                                                                      pickle.HIGHEST_PROTOCOL)))

    def mark_failed(self, keys: list[str]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO failed VALUES (?)", ((k,) for k in keys))

    def found_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM found").fetchone()[0])

    def found_keys(self) -> Iterator[tuple[str, Any]]:
        """Each key found, with what is held (None unless kept), in key order."""
        for key, held in self._db.execute("SELECT key, held FROM found ORDER BY key"):
            yield key, None if held is None else pickle.loads(held)  # noqa: S301 (written by this index)

    def known(self, key: str) -> bool:
        """Whether the key was found on the target or its customer could not be read."""
        return self._db.execute(
            "SELECT 1 FROM found WHERE key = ? UNION ALL SELECT 1 FROM failed WHERE key = ? "
            "LIMIT 1", (key, key)).fetchone() is not None

    def held(self, key: str) -> Any:
        """What the target holds for a found key (kept when retiring), else None."""
        row = self._db.execute("SELECT held FROM found WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] is None:
            return None
        return pickle.loads(row[0])  # noqa: S301 (written by this index)

    def by_source(self) -> Iterator[tuple[str, list[Any]]]:
        """Each source grant, in the order of its first plan item, with what each of its items
        planned (key, amount, customer), or None for a skipped or refused part."""
        firsts = self._db.execute(
            "SELECT source_id FROM source GROUP BY source_id ORDER BY MIN(seq)")
        for (source_id,) in firsts:
            rows = self._db.execute("SELECT planned FROM source WHERE source_id = ? ORDER BY seq",
                                    (source_id,))
            yield source_id, [None if data is None else pickle.loads(data)  # noqa: S301 (written by this index)
                              for (data,) in rows]

    def close(self) -> None:
        self._db.close()
