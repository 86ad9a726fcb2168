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


def hold_sqlite_lock(path: Path, seconds: float, held: threading.Event, customer: str) -> None:
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    db.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    db.execute("COMMIT")
    db.close()


def race(provider: bc.Provider, other: bc.Provider,
         hold: Callable[[threading.Event, str], None], end: Callable[[str], bc.CreditGrant],
         customer: str) -> tuple[bc.CreditGrant, list[bc.LedgerEntry] | bc.BillingCreditsError]:
    """``hold`` keeps the write lock a second; ``end`` (expire or void, on ``provider``) waits
    for it, and a consume on ``other`` arrives just before the lock is let go."""
    grant = provider.create_grant({"customer_id": customer, "amount": usd("10"),
                                   "effective_at": datetime.now(UTC) - timedelta(days=1)})
    assert grant.id is not None
    held = threading.Event()
    holder = threading.Thread(target=hold, args=(held, customer))
    holder.start()
    assert held.wait(10)
    results: dict[str, Any] = {}

    def ending() -> None:
        results["ended"] = end(grant.id or "")

    def consuming() -> None:
        try:
            results["consumed"] = other.consume(customer, usd("1"), reference=f"{customer}-use")
        except bc.BillingCreditsError as error:
            results["consumed"] = error

    ender = threading.Thread(target=ending)
    ender.start()
    time.sleep(0.95)  # the ender read its clock (before schema 3) and waits for the lock
    consumer = threading.Thread(target=consuming)
    consumer.start()
    for thread in (holder, ender, consumer):
        thread.join(30)
    return results["ended"], results["consumed"]


def check_races(provider: bc.Provider, other: bc.Provider, how: str,
                hold: Callable[[threading.Event, str], None]) -> None:
    """Race until the consume commits first (it usually does: it asks for the lock last, so
    it polls fastest); when the end commits first, the consume is refused (its time is after
    the end), which is right too but shows nothing. Every consume that got in is dated before
    the end; a ledger that reconciles."""
    won = 0
    for attempt in range(5):
        customer = f"racer{attempt}"
        end = provider.expire_grant if how == "expire" else provider.void_grant
        ended, consumed = race(provider, other, hold, end, customer)
        ledger = list(provider.list_ledger(customer))
        voids = [e.at for e in ledger if e.kind is bc.LedgerKind.VOIDED]
        moment = ended.expires_at if how == "expire" else voids[0]
        assert moment is not None
        if isinstance(consumed, bc.BillingCreditsError):
            assert isinstance(consumed, bc.ConflictError)
            assert consumed.code == "insufficient_credit"
        else:
            won += 1
            assert [e.at < moment for e in consumed] == [True], (consumed, moment)
        assert all(e.at < moment for e in ledger if e.kind is bc.LedgerKind.CONSUMED)
        assert bc.exact_sum(e.amount.amount for e in ledger) == 0  # granted - consumed - rest
        if won:
            return
    pytest.fail("the consume never committed before the end in five races")


@pytest.mark.parametrize("how", ["expire", "void"])
def test_no_consumption_is_dated_after_the_end_it_raced(tmp_path: Path, how: str) -> None:
    path = tmp_path / "race.db"
    with LocalProvider(path) as provider, LocalProvider(path) as other:
        check_races(provider, other, how,
                    lambda held, customer: hold_sqlite_lock(path, 1.0, held, customer))


def hold_pg_locks(url: str, seconds: float, held: threading.Event, customer: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1 FROM grants WHERE customer_id = %s FOR UPDATE", (customer,))
        conn.execute("SELECT 1 FROM lots WHERE customer_id = %s FOR UPDATE", (customer,))
        held.set()
        time.sleep(seconds)
        conn.commit()


@pytest.mark.parametrize("how", ["expire", "void"])
def test_on_postgresql_too(pg_url: str, how: str) -> None:
    with LocalProvider(url=pg_url) as provider, LocalProvider(url=pg_url) as other:
        check_races(provider, other, how,
                    lambda held, customer: hold_pg_locks(pg_url, 1.0, held, customer))
