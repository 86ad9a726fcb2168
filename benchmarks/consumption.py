"""Benchmark 5: consumption. The pure engine (usage events allocated per second) and ``local``
consume throughput with several processes on one SQLite file (each consume one
``BEGIN IMMEDIATE`` transaction), with the check that no cent was lost.

Baselines, same run: for the engine, sorting the same events and keeping exact per-customer
running totals (the least any allocation does); for ``local``, sqlite3 alone committing one
row per transaction.

Run: .venv/bin/python benchmarks/consumption.py [--events 20000] [--grants 200]
                                                 [--processes 1,8] [--consumes 400] [--quick]
"""

from __future__ import annotations

import argparse
import decimal
import multiprocessing
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import emit, machine

import billing_credits as bc

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def usd(amount: Decimal) -> bc.Money:
    return bc.Money(amount=amount, currency="USD")


def engine(events: int, grants: int, customers: int = 20) -> None:
    rng = random.Random(5)
    made = []
    for i in range(grants):
        start = T0 + timedelta(days=rng.randint(0, 300))
        made.append(bc.CreditGrant(
            customer_id=f"c{i % customers}", id=f"g{i}", amount=usd(Decimal(rng.randint(100, 10**6)) / 100),
            priority=Decimal(rng.randint(0, 3)), effective_at=start,
            expires_at=start + timedelta(days=rng.randint(10, 200))))
    usage = [bc.Usage(customer_id=f"c{rng.randrange(customers)}",
                      amount=usd(Decimal(rng.randint(1, 5000)) / 100),
                      at=T0 + timedelta(minutes=rng.randint(0, 500 * 24 * 60)), reference=f"u{n}")
             for n in range(events)]
    started = time.perf_counter()
    result = bc.allocate(made, usage, bc.LOCAL_ORDER)
    elapsed = time.perf_counter() - started
    # Baseline, same events: the least any allocation does, sorting the usage by time and
    # taking each amount from a per-customer running total of exact decimals.
    started = time.perf_counter()
    with decimal.localcontext(bc.exact_context()):
        left: dict[str, Decimal] = {}
        for grant in made:
            left[grant.customer_id] = left.get(grant.customer_id, Decimal(0)) + grant.amount.amount
        for event in sorted(usage, key=lambda u: u.at):
            left[event.customer_id] -= event.amount.amount
    floor = time.perf_counter() - started
    with decimal.localcontext(bc.exact_context()):
        consumed, expired = result.consumed(), result.expired_by_grant()
        exact = all(consumed[g.id or ""] + expired[g.id or ""] + result.remaining[g.id or ""]
                    == g.amount.amount for g in made)
    emit({"benchmark": "engine", "events": events, "grants": grants, "seconds": round(elapsed, 3),
          "events_per_second": round(events / elapsed),
          "baseline": "sort by time + exact per-customer running totals",
          "baseline_events_per_second": round(events / floor),
          "ours_over_baseline_time": round(elapsed / floor, 1), "draws": len(result.draws),
          "expiries": len(result.expired), "uncovered": len(result.uncovered),
          "granted_equals_consumed_expired_remaining": exact})
    if not exact:
        raise SystemExit("the engine lost or made credit: see granted_equals_consumed_...")


def _worker(path: str, start: int, count: int) -> None:
    provider = bc.get_provider("local", path=path)
    for n in range(start, start + count):
        provider.consume(f"c{n % 4}", usd(Decimal(n % 7 + 1) / 100), reference=f"r{n}")


def local(processes: int, consumes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        with bc.get_provider("local", path=path) as provider:
            for c in range(4):
                provider.create_grant(bc.CreditGrant(
                    customer_id=f"c{c}", amount=usd(Decimal("1000000")),
                    effective_at=datetime.now(UTC) - timedelta(days=1)))
        per = consumes // processes
        workers = [multiprocessing.Process(target=_worker, args=(path, p * per, per))
                   for p in range(processes)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
        with bc.get_provider("local", path=path) as provider:
            spent = sum((Decimal(1000000) - provider.get_balance(f"c{c}")[0].usable.amount
                         for c in range(4)), Decimal(0))
        expected = sum((Decimal(n % 7 + 1) / 100 for n in range(per * processes)), Decimal(0))
        floor = raw_sqlite(Path(tmp) / "raw.db", per * processes)
        emit({"benchmark": "local_consume", "processes": processes, "consumes": per * processes,
              "seconds": round(elapsed, 3),
              "consumes_per_second": round(per * processes / elapsed),
              "baseline": "sqlite3 alone, one process: BEGIN IMMEDIATE, one INSERT, COMMIT",
              "baseline_consumes_per_second": round(per * processes / floor),
              "spent_equals_usage": spent == expected})
        if spent != expected:
            raise SystemExit("local consume lost or made credit: see spent_equals_usage")


def raw_sqlite(path: Path, count: int) -> float:
    """Seconds for ``count`` one-row transactions in sqlite3 alone (WAL, as ``local``)."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE ledger (customer TEXT, amount TEXT, reference TEXT UNIQUE)")
    started = time.perf_counter()
    for n in range(count):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO ledger VALUES (?, ?, ?)",
                   (f"c{n % 4}", str(Decimal(n % 7 + 1) / 100), f"r{n}"))
        db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--grants", type=int, default=200)
    parser.add_argument("--processes", default="1,8")
    parser.add_argument("--consumes", type=int, default=400)
    parser.add_argument("--quick", action="store_true",
                        help="a small run for CI: 2,000 events, 1 and 2 processes, 40 consumes")
    args = parser.parse_args()
    if args.quick:
        args.events, args.grants, args.processes, args.consumes = 2000, 50, "1,2", 40
    emit(machine())
    engine(args.events, args.grants)
    for processes in (int(p) for p in args.processes.split(",")):
        local(processes, args.consumes)


if __name__ == "__main__":
    main()
