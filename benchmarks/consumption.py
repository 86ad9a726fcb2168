"""Benchmark 5: consumption. The pure engine (usage events allocated per second) and ``local``
consume throughput with several processes on one SQLite file (each consume one
``BEGIN IMMEDIATE`` transaction), with the check that no cent was lost.

Run: .venv/bin/python benchmarks/consumption.py [--events 20000] [--grants 200]
                                                 [--processes 1,8] [--consumes 400]
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
    with decimal.localcontext(bc.exact_context()):
        consumed, expired = result.consumed(), result.expired_by_grant()
        exact = all(consumed[g.id or ""] + expired[g.id or ""] + result.remaining[g.id or ""]
                    == g.amount.amount for g in made)
    emit({"benchmark": "engine", "events": events, "grants": grants, "seconds": round(elapsed, 3),
          "events_per_second": round(events / elapsed), "draws": len(result.draws),
          "expiries": len(result.expired), "uncovered": len(result.uncovered),
          "granted_equals_consumed_expired_remaining": exact})


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
        emit({"benchmark": "local_consume", "processes": processes, "consumes": per * processes,
              "seconds": round(elapsed, 3),
              "consumes_per_second": round(per * processes / elapsed),
              "spent_equals_usage": spent == expected})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--grants", type=int, default=200)
    parser.add_argument("--processes", default="1,8")
    parser.add_argument("--consumes", type=int, default=400)
    args = parser.parse_args()
    emit(machine())
    engine(args.events, args.grants)
    for processes in (int(p) for p in args.processes.split(",")):
        local(processes, args.consumes)


if __name__ == "__main__":
    main()
