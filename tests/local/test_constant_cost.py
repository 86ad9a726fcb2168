"""Issue 16: a consume costs the same whatever the customer's history. Counted, not timed: the
SQLite virtual machine steps one consume takes (``set_progress_handler`` every step), with a
short ledger and with one 100 times longer for the same customer. A query that reads the
history (a scan of the customer's ledger, a missing index) makes the count grow with it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import billing_credits as bc
from billing_credits.local import LocalProvider

START = datetime(2026, 1, 1, tzinfo=UTC)


def _steps_of_one_consume(path: Path, history: int) -> int:
    now = START + timedelta(days=30)
    with LocalProvider(path, clock=lambda: now) as local:
        local.create_grant(bc.CreditGrant(
            customer_id="cus_busy", amount=bc.Money("1000000.00", "USD"),
            effective_at=START, expires_at=START + timedelta(days=3650)))
        # the customer's past, written as the ledger holds it (earlier than the consume)
        db = sqlite3.connect(path)
        db.executemany(
            "INSERT INTO ledger (customer_id, grant_id, segment, kind, amount, unit, at, "
            "reference, recorded_at) VALUES ('cus_busy', NULL, NULL, 'adjusted', '0', 'USD', "
            "?, ?, ?)",
            [(f"2026-01-02T00:00:{i % 60:02d}.{i:06d}+00:00"[:32], f"old-{i}",
              "2026-01-02T00:00:00+00:00") for i in range(history)])
        db.commit()
        db.close()
        store = local._store
        counted = [0]

        def step() -> int:
            counted[0] += 1
            return 0

        store._db.set_progress_handler(step, 1)  # type: ignore[attr-defined]
        local.consume("cus_busy", bc.Money("1.00", "USD"), reference=f"now-{history}")
        store._db.set_progress_handler(None, 1)  # type: ignore[attr-defined]
        return counted[0]


def test_a_consume_takes_the_same_steps_with_100_times_the_history(tmp_path: Path) -> None:
    small = _steps_of_one_consume(tmp_path / "small.db", 100)
    large = _steps_of_one_consume(tmp_path / "large.db", 10_000)
    assert large <= small * 1.2, (small, large)
