"""Benchmark 5: bulk import into ``local``, beside a raw sqlite3 insert of the same rows.

Writes N neutral grants as JSON lines (as ``billing-credits export`` would), then times:

- ``import_grants`` into a fresh ``local`` database (batches of 1,000, each one transaction),
  and again into the same database (a re-run: nothing created, every grant already there);
- sqlite3 alone inserting the same rows (same table, same JSON text) one transaction per row
  (on a sample) and in batches of 1,000 per transaction.

Targets: at least 10,000 grants/s for 100,000 grants (issue 10); at least 0.3 of the
baseline, ``json.loads`` of the same lines and a batched sqlite3 insert of them, timed
together in the same run (issue 17: ``import_over_baseline``).

Each figure is the best of ``--repeats`` runs (default 3), the import and the baseline
alternated, so that a slow minute of a shared machine hits both alike; every run's CPU time is
printed too.

Run: .venv/bin/python benchmarks/bulk_import.py [--grants 100000] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import billing_credits as bc
from billing_credits.local import LocalProvider

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import commit


def lines(count: int) -> list[str]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(count):
        grant = bc.CreditGrant(
            customer_id=f"cus_{i % 5000:05d}", name="Imported credit",
            amount=bc.Money(amount=Decimal(f"{i % 997 + 1}.{i % 100:02d}"), currency="USD"),
            category=bc.Category.PROMOTIONAL, priority=Decimal(i % 100),
            effective_at=start, expires_at=start + timedelta(days=365 + i % 30),
            metadata={"batch": "bench", "row": str(i)}, idempotency_key=f"bench-{i}",
        )
        out.append(grant.model_dump_json())
    return out


def raw_rows(source: list[str]) -> list[tuple[object, ...]]:
    now = datetime.now(UTC).isoformat()
    rows = []
    for line in source:
        data = json.loads(line)
        rows.append((f"lcg_{uuid.uuid4().hex}", data["customer_id"], data["idempotency_key"], 1,
                     "0" * 64, data["amount"]["amount"], "USD", line, data["effective_at"],
                     data["expires_at"], None, now))
    return rows


SCHEMA = """CREATE TABLE grants (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
customer_id TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, key_supplied INTEGER NOT NULL,
request_hash TEXT NOT NULL, amount TEXT NOT NULL, unit TEXT NOT NULL, request_json TEXT NOT NULL,
effective_at TEXT NOT NULL, expires_at TEXT, voided_at TEXT, created_at TEXT NOT NULL)"""
INSERT = ("INSERT INTO grants (id, customer_id, idempotency_key, key_supplied, request_hash, "
          "amount, unit, request_json, effective_at, expires_at, voided_at, created_at) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def raw(path: Path, rows: list[tuple[object, ...]], batch: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(SCHEMA)
    db.execute("CREATE INDEX grants_by_customer ON grants (customer_id, seq)")
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(INSERT, rows[i:i + batch])
        db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return seconds


def raw_from_lines(path: Path, source: list[str], batch: int) -> tuple[float, float]:
    """The baseline of issue 17: the same lines through ``json.loads`` into rows, inserted
    by sqlite3 alone in batches (``executemany``, one transaction per batch). Wall and CPU
    seconds, all of it (parsing included, as the import's figures include its parsing)."""
    started, cpu = time.perf_counter(), time.process_time()
    rows = raw_rows(source)
    raw(path, rows, batch)
    return time.perf_counter() - started, time.process_time() - cpu


def _import_once(path: Path, source: list[str]) -> tuple[float, float]:
    """One import of ``source`` into a fresh ``local`` database: wall and CPU seconds."""
    with LocalProvider(path) as local:
        started, cpu = time.perf_counter(), time.process_time()
        report = bc.import_grants(local, source)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        assert report.created == len(source), report.summary()
    return seconds, cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3,
                        help="imports and baselines, alternated; the best of each is quoted")
    parser.add_argument("--row-sample", type=int, default=2_000,
                        help="rows for the one-transaction-per-row insert (it is slow)")
    parser.add_argument("--quick", action="store_true", help="5,000 grants, one repeat (CI)")
    args = parser.parse_args()
    if args.quick:
        args.grants, args.row_sample, args.repeats = 5_000, 200, 1
    source = lines(args.grants)
    imports: list[tuple[float, float]] = []
    baselines: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        for attempt in range(args.repeats):  # alternated: a slow minute hits both alike
            imports.append(_import_once(base / f"bench-{attempt}.db", source))
            baselines.append(raw_from_lines(base / f"raw-lines-{attempt}.db", source, 1000))
        with LocalProvider(base / "bench-0.db") as local:
            started = time.perf_counter()
            again = bc.import_grants(local, source)
            second = time.perf_counter() - started
            assert again.already_there == args.grants, again.summary()
            assert sum(1 for _ in local.list_grants(page_size=1000)) == args.grants
        rows = raw_rows(source)
        batched = raw(base / "raw-batched.db", rows, 1000)
        sample = rows[:args.row_sample]
        per_row = raw(base / "raw-rows.db", sample, 1)
    first, first_cpu = min(w for w, _ in imports), min(c for _, c in imports)
    lines_batched, lines_cpu = min(w for w, _ in baselines), min(c for _, c in baselines)
    result = {
        "benchmark": "bulk_import",
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.system()} "
                   f"{platform.release()}, Python {platform.python_version()}, "
                   f"SQLite {sqlite3.sqlite_version}",
        "commit": commit(),
        "load_average": round(os.getloadavg()[0], 2),
        "grants": args.grants,
        "repeats": args.repeats,
        "import_s": round(first, 2),
        "import_grants_per_s": round(args.grants / first),
        "import_cpu_s": round(first_cpu, 2),
        "import_grants_per_cpu_s": round(args.grants / first_cpu),
        "import_cpu_s_each": [round(c, 2) for _, c in imports],
        "rerun_s": round(second, 2),
        "rerun_grants_per_s": round(args.grants / second),
        "baseline": "json.loads of the same lines + sqlite3 executemany, 1,000 per transaction",
        "baseline_rows_per_s": round(args.grants / lines_batched),
        "import_over_baseline": round(lines_batched / first, 2),
        "baseline_rows_per_cpu_s": round(args.grants / lines_cpu),
        "baseline_cpu_s_each": [round(c, 2) for _, c in baselines],
        "import_over_baseline_cpu": round(lines_cpu / first_cpu, 2),
        "target_over_baseline": 0.3,
        "raw_sqlite_batched_rows_per_s": round(args.grants / batched),
        "raw_sqlite_row_per_transaction_rows_per_s": round(len(sample) / per_row),
        "target_grants_per_s": 10_000,
        "meets_target": args.grants / first >= 10_000,
        "meets_target_per_cpu_s": args.grants / first_cpu >= 10_000,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
