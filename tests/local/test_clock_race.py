"""Expire and void take their time inside the transaction (issue 16, point 5).

A writer holds the database's write lock for a second while an expire (or a void) waits for
it and a consume arrives: whichever of the two commits first, no consumed entry may be dated
at or after the grant's end or void. (Before schema 3 the expire and void read the clock
before waiting, so a consume that committed while they waited was recorded after the end
against a window the expire then cut: this test failed on every run.)
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import billing_credits as bc
from billing_credits.local import LocalProvider


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def hold_sqlite_lock(path: Path, seconds: float, held: threading.Event) -> None:
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    db.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    db.execute("COMMIT")
    db.close()


def race(provider: bc.Provider, other: bc.Provider, hold: Callable[[threading.Event], None],
         end: Callable[[str], bc.CreditGrant]) -> tuple[bc.CreditGrant, list[bc.LedgerEntry]]:
    """``hold`` keeps the write lock a second; ``end`` (expire or void, on ``provider``) waits
    for it, and a consume on ``other`` arrives just before the lock is let go."""
    grant = provider.create_grant({"customer_id": "racer", "amount": usd("10"),
                                   "effective_at": datetime.now(UTC) - timedelta(days=1)})
    assert grant.id is not None
    held = threading.Event()
    holder = threading.Thread(target=hold, args=(held,))
    holder.start()
    assert held.wait(10)
    results: dict[str, Any] = {}

    def ending() -> None:
        results["ended"] = end(grant.id or "")

    def consuming() -> None:
        try:
            results["consumed"] = other.consume("racer", usd("1"), reference="racy")
        except bc.BillingCreditsError as error:
            results["consumed"] = error

    ender = threading.Thread(target=ending)
    ender.start()
    time.sleep(0.9)  # the ender read its clock (before schema 3) and waits for the lock
    consumer = threading.Thread(target=consuming)
    consumer.start()
    for thread in (holder, ender, consumer):
        thread.join(30)
    assert not isinstance(results["consumed"], Exception), (
        f"the consume at a moment the grant was still open was refused: {results['consumed']}")
    return results["ended"], results["consumed"]


@pytest.mark.parametrize("how", ["expire", "void"])
def test_no_consumption_is_dated_after_the_end_it_raced(tmp_path: Path, how: str) -> None:
    path = tmp_path / "race.db"
    with LocalProvider(path) as provider, LocalProvider(path) as other:
        end = provider.expire_grant if how == "expire" else provider.void_grant
        ended, consumed = race(provider, other, lambda held: hold_sqlite_lock(path, 1.0, held), end)
        ledger = list(provider.list_ledger("racer"))
        voids = [e.at for e in ledger if e.kind is bc.LedgerKind.VOIDED]
        moment = ended.expires_at if how == "expire" else voids[0]
        assert moment is not None
        assert [e.at < moment for e in consumed] == [True], (consumed, moment)
        assert all(e.at < moment for e in ledger if e.kind is bc.LedgerKind.CONSUMED)
        assert bc.exact_sum(e.amount.amount for e in ledger) == 0  # granted - consumed - rest


def hold_pg_locks(url: str, seconds: float, held: threading.Event) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1 FROM grants WHERE customer_id = 'racer' FOR UPDATE")
        conn.execute("SELECT 1 FROM lots WHERE customer_id = 'racer' FOR UPDATE")
        held.set()
        time.sleep(seconds)
        conn.commit()


@pytest.mark.parametrize("how", ["expire", "void"])
def test_on_postgresql_too(pg_url: str, how: str) -> None:
    with LocalProvider(url=pg_url) as provider, LocalProvider(url=pg_url) as other:
        end = provider.expire_grant if how == "expire" else provider.void_grant
        ended, consumed = race(provider, other, lambda held: hold_pg_locks(pg_url, 1.0, held), end)
        ledger = list(provider.list_ledger("racer"))
        voids = [e.at for e in ledger if e.kind is bc.LedgerKind.VOIDED]
        moment = ended.expires_at if how == "expire" else voids[0]
        assert moment is not None
        assert [e.at < moment for e in consumed] == [True], (consumed, moment)
        assert bc.exact_sum(e.amount.amount for e in ledger) == 0
