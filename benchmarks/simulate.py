"""Benchmark 8: ``billing-credits simulate`` over many customers, memory and CPU (issue 17).

For each N in ``--customers`` (default 1,000 and 10,000): a fresh ``local`` database is
filled with N customers (2-6 grants each, some with two access windows, some in a second
currency: the shape of ``report.py``), through ``import_batch`` in batches of 1,000. Then
``billing-credits simulate -p local -s path=DB --html REPORT`` runs as a child process with
its output piped to a file (not a terminal), and its own peak RSS and CPU are read from
``os.wait4`` (``ru_maxrss``, ``ru_utime + ru_stime`` of that child alone).

Figures beside their baselines, all from the same run:

- ``peak_ratio``: the peak RSS at the largest N over the peak at the smallest (target
  <= 1.3: memory flat in the number of customers);
- ``cpu_s`` at each N beside ``engine_cpu_s``, the engine alone (``allocate`` over the same
  grants and the same synthetic usage, in this process, no report, no table) — what the
  command adds to the engine it is built on; and ``startup_cpu_s`` / ``startup_rss_kb``:
  ``billing-credits --version`` as a child (the floor every command pays).

Targets: 10,000 customers under 30 s of CPU; peak at 10,000 <= 1.3x the peak at 1,000.

Run: .venv/bin/python benchmarks/simulate.py [--customers 1000,10000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import emit, machine

import billing_credits as bc

TARGET_RATIO = 1.3
TARGET_CPU_10K = 30.0
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
"""Grants start around now: ``simulate`` takes the grants as they stand today."""


def grants(customers: int, seed: int = 12) -> Iterator[bc.CreditGrant]:
    """The customers' grants, generated (report.py's shape, keyed for ``import_batch``)."""
    rng = random.Random(seed)
    for c in range(customers):
        customer = f"cus_{c:05d}"
        for g in range(rng.randint(2, 6)):
            currency = "EUR" if g == 5 else "USD"
            amount = Decimal(rng.randint(100, 1_000_000)).scaleb(-2)
            fields: dict[str, Any] = {
                "customer_id": customer, "name": f"grant {g}", "priority": Decimal(rng.randint(0, 3)),
                "amount": bc.Money(amount=amount, currency=currency),
                "idempotency_key": f"{customer}-{g}"}
            begin = START + timedelta(days=rng.randint(0, 6))
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
            yield bc.CreditGrant(**fields)


def fill(path: Path, customers: int) -> int:
    from billing_credits.local import LocalProvider

    provider = LocalProvider(path=path)
    count = 0
    batch: list[bc.CreditGrant] = []
    try:
        for grant in grants(customers):
            batch.append(grant)
            if len(batch) == 1000:
                count += sum(r is True for r in provider.import_batch(batch))
                batch = []
        if batch:
            count += sum(r is True for r in provider.import_batch(batch))
    finally:
        provider.close()
    return count


def measured(args: list[str], out: Path) -> dict[str, Any]:
    """Run ``args`` as a child (stdout to ``out``); its own peak RSS and CPU."""
    started = time.perf_counter()
    with out.open("wb") as sink:
        child = subprocess.Popen(args, stdout=sink, stderr=subprocess.PIPE,
                                 env={**os.environ, "COLUMNS": "80"})
        assert child.stderr is not None
        err = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{args[1:3]} failed ({code}): {err.decode()[-2000:]}")
    return {"peak_rss_kb": usage.ru_maxrss, "wall_s": round(time.perf_counter() - started, 3),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}


def engine_cpu(customers: int) -> float:
    """The engine alone over the same grants and synthetic usage, per customer, in CPU s."""
    from collections import defaultdict

    from billing_credits.consumption._engine import allocate
    from billing_credits.consumption._simulate import synthetic_usage
    from billing_credits.local import LocalProvider

    mine: dict[str, list[bc.CreditGrant]] = defaultdict(list)
    for grant in grants(customers):
        mine[grant.customer_id].append(grant.model_copy(update={"id": grant.idempotency_key}))
    order = LocalProvider.consumption_order
    assert order is not None
    started = time.process_time()
    for group in mine.values():
        allocate(group, sorted(synthetic_usage(group, start=START), key=lambda u: u.at), order)
    return round(time.process_time() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", default="1000,10000",
                        help="comma-separated customer counts (smallest is the baseline)")
    parser.add_argument("--quick", action="store_true", help="small sizes (100, 1,000): under 20 s")
    args = parser.parse_args()
    counts = sorted(int(n) for n in ("100,1000" if args.quick else args.customers).split(","))
    command = shutil.which("billing-credits") or str(Path(sys.executable).parent / "billing-credits")
    emit({"machine": machine()})
    peaks: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="bc-simulate-") as folder:
        floor = measured([command, "--version"], Path(folder) / "version.txt")
        emit({"benchmark": "simulate-startup", "startup_rss_kb": floor["peak_rss_kb"],
              "startup_cpu_s": floor["cpu_s"]})
        for count in counts:
            db = Path(folder) / f"{count}.db"
            made = fill(db, count)
            report = Path(folder) / f"{count}.html"
            out = Path(folder) / f"{count}.txt"
            run = measured([command, "simulate", "-p", "local", "-s", f"path={db}",
                            "--html", str(report)], out)
            peaks[count] = run["peak_rss_kb"]
            lines = out.read_text(encoding="utf-8").splitlines()
            emit({"benchmark": "simulate", "customers": count, "grants": made, **run,
                  "engine_cpu_s": engine_cpu(count),
                  "cpu_per_customer_ms": round(1000 * run["cpu_s"] / count, 3),
                  "report_mb": round(report.stat().st_size / 1e6, 2),
                  "output_lines": len(lines), "widest_line": max(map(len, lines), default=0),
                  "load_average_1m": round(os.getloadavg()[0], 2),
                  "targets": {"cpu_s_at_10000": TARGET_CPU_10K}})
    smallest, largest = counts[0], counts[-1]
    ratio = peaks[largest] / peaks[smallest]
    emit({"benchmark": "simulate-memory", "baseline_customers": smallest,
          "baseline_peak_rss_kb": peaks[smallest], "customers": largest,
          "peak_rss_kb": peaks[largest], "peak_ratio": round(ratio, 3),
          "target_ratio": TARGET_RATIO, "ok": ratio <= TARGET_RATIO})


if __name__ == "__main__":
    main()
