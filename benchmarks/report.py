"""Benchmark 5: the simulator's HTML report for 1,000 customers (issue 12: under 5 s, under
10 MB). Builds a plan-shaped comparison (each customer 2-6 grants, ties, scheduled windows,
two units for some), simulates both sides against the synthetic stream, renders the report.

Run: .venv/bin/python benchmarks/report.py [--customers 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from _common import emit, machine

import billing_credits as bc
from billing_credits.migrate._plan import PlanHeader

DOC = "benchmark"
SOURCE = bc.ConsumptionOrder("metronome-plans", (
    bc.OrderRule("priority", "asc", DOC), bc.OrderRule("expires_at", "asc", DOC)),
    documented_tie_break=True)
TARGET = bc.ConsumptionOrder("stripe", (bc.OrderRule("priority", "asc", DOC),),
                             documented_tie_break=False)


def plan(customers: int, seed: int = 12) -> bc.MigrationPlan:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    result = bc.MigrationPlan(PlanHeader(source="metronome-plans", target="stripe",
                                         created_at=start, amount_mode="original",
                                         priority_policy="exact", strict=True))
    for c in range(customers):
        customer = f"cus_{c:05d}"
        for g in range(rng.randint(2, 6)):
            currency = "EUR" if g == 5 else "USD"
            amount = Decimal(rng.randint(100, 1_000_000)).scaleb(-2)
            fields: dict[str, object] = {
                "customer_id": customer, "name": f"grant {g}", "priority": Decimal(rng.randint(0, 3)),
                "amount": bc.Money(amount=amount, currency=currency),
                "idempotency_key": f"{customer}-{g}"}
            begin = start + timedelta(days=rng.randint(0, 30))
            if rng.random() < 0.2:
                half = (amount / 2).quantize(Decimal("0.01"))
                fields["schedule"] = (
                    bc.Segment(amount=half, starts_at=begin, ends_before=begin + timedelta(days=30)),
                    bc.Segment(amount=amount - half, starts_at=begin + timedelta(days=30),
                               ends_before=begin + timedelta(days=60)))
            else:
                fields["effective_at"] = begin
                if rng.random() < 0.8:
                    fields["expires_at"] = begin + timedelta(days=rng.randint(10, 120))
            grant = bc.CreditGrant(**fields)  # type: ignore[arg-type]
            result.items.append(bc.PlanItem(source_id=f"src_{c}_{g}", customer_id=customer,
                                            action="migrate", grant=grant))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    emit({"machine": machine()})
    planned = plan(args.customers)
    for _ in range(args.repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        comparison = bc.compare_plan(planned, SOURCE, TARGET)
        simulated, cpu_simulated = time.perf_counter(), time.process_time()
        html = comparison.html()
        rendered, cpu_rendered = time.perf_counter(), time.process_time()
        emit({"benchmark": "report", "customers": len(comparison.source.customers),
              "grants": len(planned.to_create), "differing": len(comparison.differences),
              "simulate_compare_s": round(simulated - started, 3),
              "render_s": round(rendered - simulated, 3),
              "total_s": round(rendered - started, 3),
              "cpu_simulate_compare_s": round(cpu_simulated - cpu_started, 3),
              "cpu_render_s": round(cpu_rendered - cpu_simulated, 3),
              "cpu_total_s": round(cpu_rendered - cpu_started, 3),
              "load_average_1m": os.getloadavg()[0],
              "bytes": len(html.encode()), "mb": round(len(html.encode()) / 1e6, 2),
              "targets": {"total_s": 5, "mb": 10}})


if __name__ == "__main__":
    main()
