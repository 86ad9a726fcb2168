"""Benchmark 9: the ``local`` ledger as a backend runs it (issue 16), on SQLite and PostgreSQL,
each figure beside raw sqlite3 / raw psycopg running the same statements in the same run.

- ``create``: ``create_grant`` per second vs a raw transaction inserting the same rows (the
  grant, its lot, its ``granted`` entry).
- ``consume``: ``consume`` per second (one transaction each) vs a raw transaction of the same
  statements (lock and read the customer's lots, look the reference up, insert the entry,
  update the lot, insert the reference); CPU milliseconds per consume beside.
- ``history``: the consume rate at about 1,000 ledger entries and again after 1,000,000 more
  (seeded with bulk SQL, with their usage references): constant cost means the ratio is ~1.
- ``concurrent`` (PostgreSQL): 8 processes x 4 threads consuming from the same 50 customers,
  every reference sent by two workers, the demand beyond the credit; then the checks: no cent
  lost (per lot, amount - remaining == what its entries consumed), never below zero, each
  reference applied once with every sender answered the same entries. Beside it, raw psycopg
  doing the same statements with the same workers.
- ``chaos`` (PostgreSQL, ``--chaos``): 8 consuming processes, two killed with SIGKILL mid-run
  and the server restarted (``--pg-restart``) mid-run; every reference is then applied whole
  or not at all, and the survivors saw a retryable ``UnavailableError`` while it was away.

Run: .venv/bin/python benchmarks/ledger.py [--quick] [--pg URL] [--entries 1000000]
         [--chaos --pg-restart "pg_ctlcluster 15 main restart"]
``--pg`` defaults to $BILLING_CREDITS_TEST_PG_URL (the PostgreSQL parts are skipped without one).
"""

from __future__ import annotations

import argparse
import contextlib
import decimal
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import emit, machine

import billing_credits as bc
from billing_credits.local import LocalProvider

CUSTOMERS = 50
UNIT = "USD"


def usd(amount: Decimal | str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def in_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


class Target:
    """A fresh ledger on one engine: a SQLite file or a PostgreSQL schema of its own."""

    def __init__(self, engine: str, pg: str | None, folder: str) -> None:
        self.engine = engine
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"
        if engine == "sqlite":
            self.where = str(Path(folder) / f"{self.schema}.db")
        else:
            import psycopg

            assert pg is not None
            with psycopg.connect(pg, autocommit=True) as admin:
                admin.execute(f"CREATE SCHEMA {self.schema}")
            self.pg = pg
            self.where = in_schema(pg, self.schema)

    def provider(self) -> LocalProvider:
        return LocalProvider(self.where) if self.engine == "sqlite" else LocalProvider(url=self.where)

    def drop(self) -> None:
        if self.engine == "postgresql":
            import psycopg

            with psycopg.connect(self.pg, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {self.schema} CASCADE")

    def raw(self) -> Raw:
        return Raw(self)


def seed_grants(provider: LocalProvider, amount: str = "1000000") -> None:
    now = datetime.now(UTC)
    for c in range(CUSTOMERS):
        for priority, days in ((1, 30), (5, 60), (None, 90)):
            provider.create_grant({"customer_id": f"c{c}", "amount": usd(amount),
                                   "priority": priority, "effective_at": now - timedelta(days=1),
                                   "expires_at": now + timedelta(days=days)})


# -- raw: the same statements, without the library --------------------------------------------


class Raw:
    """The statements ``local`` runs, straight through sqlite3 / psycopg."""

    LOT = ("SELECT grant_id, idx, grant_seq, customer_id, unit, money, priority, created_at, "
           "starts_at, ends_before, amount, remaining, voided_at, admits_all, windows FROM lots "
           "WHERE customer_id = ? AND unit = ? AND voided_at IS NULL AND {positive} "
           "ORDER BY grant_seq, idx{lock}")

    def __init__(self, target: Target) -> None:
        self.pg = target.engine == "postgresql"
        if self.pg:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict

            options = f"{conninfo_to_dict(target.where).get('options', '')} -c TimeZone=UTC"
            self.db: Any = psycopg.connect(target.where, autocommit=True, options=options)
            self.p = "%s"
            self.lot_sql = self.LOT.format(positive="remaining > 0", lock=" FOR UPDATE")
        else:
            self.db = sqlite3.connect(target.where, isolation_level=None, timeout=60)
            self.db.execute("PRAGMA busy_timeout=60000")
            self.p = "?"
            self.lot_sql = self.LOT.format(positive="remaining != '0'", lock="")
        self.lot_sql = self.lot_sql.replace("?", self.p)

    def q(self, sql: str) -> str:
        return sql.replace("?", self.p)

    def txn(self, work: Any) -> Any:
        if self.pg:
            with self.db.transaction():
                return work(self.db)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            result = work(self.db)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return result

    def consume(self, customer: str, amount: Decimal, reference: str) -> str:
        """Burn ``amount`` from the first lots with credit (grant order), as one transaction."""
        def work(db: Any) -> str:
            lots = db.execute(self.lot_sql, (customer, UNIT)).fetchall()
            if db.execute(self.q("SELECT customer_id, request_hash FROM usage WHERE reference = ?"),
                          (reference,)).fetchone():
                return "replayed"
            now = db.execute("SELECT clock_timestamp()").fetchone()[0] if self.pg \
                else datetime.now(UTC)
            stamp = now if self.pg else now.isoformat(timespec="microseconds")
            need = amount
            with decimal.localcontext(bc.exact_context()):
                for lot in lots:
                    if need <= 0:
                        break
                    take = min(need, Decimal(lot[11]))
                    need -= take
                    db.execute(self.q(
                        "INSERT INTO ledger (customer_id, grant_id, segment, kind, amount, unit, "
                        "at, reference, recorded_at) VALUES (?, ?, ?, 'consumed', ?, ?, ?, ?, ?) "
                        "RETURNING seq"), (customer, lot[0], lot[1],
                                           -take if self.pg else str(-take), UNIT, stamp,
                                           reference, stamp)).fetchone()
                    left = Decimal(lot[11]) - take
                    db.execute(self.q("UPDATE lots SET remaining = ? WHERE grant_id = ? AND idx = ?"),
                               (left if self.pg else (str(left) if left else "0"), lot[0], lot[1]))
            if need > 0:
                raise RuntimeError("insufficient")
            db.execute(self.q("INSERT INTO usage (reference, customer_id, request_hash, at, "
                              "recorded_at) VALUES (?, ?, ?, ?, ?)"),
                       (reference, customer, "h", stamp, stamp))
            return "applied"
        if not self.pg:
            return str(self.txn(work))
        import psycopg

        for _ in range(5):
            try:
                return str(self.txn(work))
            except psycopg.errors.UniqueViolation:
                continue
        raise RuntimeError("unique race five times")

    def create(self, n: int) -> None:
        """The rows ``create_grant`` writes: the grant, its lot, its ``granted`` entry."""
        now = datetime.now(UTC)
        stamp: Any = now if self.pg else now.isoformat(timespec="microseconds")
        gid = f"lcg_{uuid.uuid4().hex}"
        request = json.dumps({"customer_id": f"c{n % CUSTOMERS}", "amount": {
            "amount": "10", "currency": "USD"}, "effective_at": stamp if isinstance(stamp, str)
            else stamp.isoformat()}, sort_keys=True)
        ten: Any = Decimal(10) if self.pg else "10"

        def work(db: Any) -> None:
            seq = db.execute(self.q(
                "INSERT INTO grants (id, customer_id, idempotency_key, key_supplied, "
                "request_hash, amount, unit, request_json, effective_at, expires_at, voided_at, "
                "created_at) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, NULL, NULL, ?) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING seq"),
                (gid, f"c{n % CUSTOMERS}", gid, "h", ten, UNIT, request, stamp, stamp)).fetchone()[0]
            db.execute(self.q(
                "INSERT INTO lots (grant_id, idx, grant_seq, customer_id, unit, money, priority, "
                "created_at, starts_at, ends_before, amount, remaining, voided_at, admits_all, "
                "windows) VALUES (?, 0, ?, ?, ?, ?, NULL, ?, ?, NULL, ?, ?, NULL, 1, 1)"),
                (gid, seq, f"c{n % CUSTOMERS}", UNIT, '{"currency": "USD", "unit": null}', stamp,
                 stamp, ten, ten))
            db.execute(self.q(
                "INSERT INTO ledger (customer_id, grant_id, segment, kind, amount, unit, at, "
                "reference, recorded_at) VALUES (?, ?, NULL, 'granted', ?, ?, ?, NULL, ?) "
                "RETURNING seq"), (f"c{n % CUSTOMERS}", gid, ten, UNIT, stamp, stamp)).fetchone()
        self.txn(work)

    def close(self) -> None:
        self.db.close()


# -- single-process figures -------------------------------------------------------------------


def rate(work: Any, count: int) -> tuple[float, float]:
    """(operations per second, CPU milliseconds per operation) of ``work(n)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for n in range(count):
        work(n)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, 1000 * cpu / count


def figures(engine: str, pg: str | None, folder: str, count: int) -> None:
    ours, raw = Target(engine, pg, folder), Target(engine, pg, folder)
    try:
        with ours.provider() as provider, raw.provider() as other:
            seed_grants(provider)
            seed_grants(other)
            baseline = raw.raw()
            tag = uuid.uuid4().hex[:6]
            amount = Decimal("0.37")
            # Interleaved in halves, so a change in the machine's load hits both alike.
            results: dict[str, list[tuple[float, float]]] = {"ours": [], "raw": []}
            for half in range(2):
                results["ours"].append(rate(lambda n, h=half: provider.consume(
                    f"c{n % CUSTOMERS}", usd(amount), reference=f"o{tag}{h}-{n}"), count // 2))
                results["raw"].append(rate(lambda n, h=half: baseline.consume(
                    f"c{n % CUSTOMERS}", amount, f"r{tag}{h}-{n}"), count // 2))
            ours_rate = sum(r for r, _ in results["ours"]) / 2
            raw_rate = sum(r for r, _ in results["raw"]) / 2
            emit({"benchmark": "consume", "engine": engine, "consumes": count,
                  "per_second": round(ours_rate), "raw_per_second": round(raw_rate),
                  "ratio": round(ours_rate / raw_rate, 2),
                  "cpu_ms": round(sum(c for _, c in results["ours"]) / 2, 3),
                  "raw_cpu_ms": round(sum(c for _, c in results["raw"]) / 2, 3)})
            creates = max(count // 2, 100)
            made, made_cpu = rate(lambda n: provider.create_grant(
                {"customer_id": f"c{n % CUSTOMERS}", "amount": usd("10"),
                 "effective_at": datetime.now(UTC)}), creates)
            raw_made, raw_cpu = rate(baseline.create, creates)
            emit({"benchmark": "create_grant", "engine": engine, "grants": creates,
                  "per_second": round(made), "raw_per_second": round(raw_made),
                  "ratio": round(made / raw_made, 2), "cpu_ms": round(made_cpu, 3),
                  "raw_cpu_ms": round(raw_cpu, 3)})
            baseline.close()
    finally:
        ours.drop()
        raw.drop()


def seed_history(target: Target, entries: int) -> float:
    """``entries`` consumed ledger rows (and their usage references) for the same customers,
    by bulk SQL; returns the seconds it took."""
    started = time.perf_counter()
    if target.engine == "sqlite":
        db = sqlite3.connect(target.where, isolation_level=None, timeout=60)
        db.execute("BEGIN IMMEDIATE")
        series = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {entries})"
        db.execute(f"{series} INSERT INTO ledger (customer_id, grant_id, segment, kind, amount, "
                   "unit, at, reference, recorded_at) SELECT 'c' || (i % 50), NULL, 0, 'consumed', "
                   "'-0.01', 'USD', '2025-06-01T00:00:00.000000+00:00', 'seed-' || i, "
                   "'2025-06-01T00:00:00.000000+00:00' FROM n")
        db.execute(f"{series} INSERT INTO usage (reference, customer_id, request_hash, at, "
                   "recorded_at) SELECT 'seed-' || i, 'c' || (i % 50), 'h', "
                   "'2025-06-01T00:00:00.000000+00:00', '2025-06-01T00:00:00.000000+00:00' FROM n")
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the seed's log folded in, not timed later
        db.close()
    else:
        import psycopg

        with psycopg.connect(target.where, autocommit=True) as db:
            db.execute("INSERT INTO ledger (customer_id, grant_id, segment, kind, amount, unit, at, "
                       "reference, recorded_at) SELECT 'c' || (i % 50), NULL, 0, 'consumed', -0.01, "
                       "'USD', '2025-06-01T00:00:00Z', 'seed-' || i, '2025-06-01T00:00:00Z' "
                       f"FROM generate_series(1, {entries}) AS i")
            db.execute("INSERT INTO usage (reference, customer_id, request_hash, at, recorded_at) "
                       "SELECT 'seed-' || i, 'c' || (i % 50), 'h', '2025-06-01T00:00:00Z', "
                       f"'2025-06-01T00:00:00Z' FROM generate_series(1, {entries}) AS i")
            db.execute("ANALYZE")
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                db.execute("CHECKPOINT")  # the seed's WAL flushed now, not during the timing
    return time.perf_counter() - started


def history(engine: str, pg: str | None, folder: str, count: int, entries: int) -> None:
    """Two ledgers side by side: one small (about 1,000 entries by the end), one with
    ``entries`` more seeded first; consumes alternate between them in rounds of 50, so a
    change in the machine's load (the disk's, above all) hits both alike."""
    small, big = Target(engine, pg, folder), Target(engine, pg, folder)
    try:
        with small.provider() as few, big.provider() as many:
            seed_grants(few)
            seed_grants(many)
            seconds = seed_history(big, entries)
            tag = uuid.uuid4().hex[:6]
            took = {"small": 0.0, "big": 0.0}
            done = 0
            while done < count:
                for name, provider in (("small", few), ("big", many)):
                    started = time.perf_counter()
                    for n in range(done, done + 50):
                        provider.consume(f"c{n % CUSTOMERS}", usd("0.01"), reference=f"{tag}-{n}")
                    took[name] += time.perf_counter() - started
                done += 50
            before, after = done / took["small"], done / took["big"]
            [balance] = many.get_balance("c0")
            emit({"benchmark": "history", "engine": engine, "consumes": done,
                  "small_ledger_entries": 150 + done, "per_second_small": round(before),
                  "big_ledger_entries": 150 + entries + done, "seed_seconds": round(seconds, 1),
                  "per_second_big": round(after), "ratio": round(after / before, 2),
                  "balance_still_reads": balance.usable.amount > 0})
    finally:
        small.drop()
        big.drop()


# -- PostgreSQL: many processes and threads ----------------------------------------------------

PROCESSES, THREADS = 8, 4


def usage_amount(n: int) -> Decimal:
    return Decimal(n % 23 + 1) / 8


def _worker(where: str, kind: str, index: int, per: int, total: int, out: Any,
            ready: Any, go: Any) -> None:
    """Process ``index``: THREADS threads, worker w applies references [w*per, w*per + 2*per)
    (mod ``total``): every reference is sent by two workers."""
    answers: dict[int, Any] = {}
    lock = threading.Lock()
    provider = LocalProvider(url=where) if kind == "ours" else None
    raws: list[Raw] = []
    if kind == "raw":  # one connection per thread, opened before the clock starts
        target = Target.__new__(Target)
        target.engine, target.where = "postgresql", where
        raws = [Raw(target) for _ in range(THREADS)]

    def thread(t: int) -> None:
        raw = raws[t] if raws else None
        w = index * THREADS + t
        for k in range(2 * per):
            n = (w * per + k) % total
            customer = f"c{n % CUSTOMERS}"
            try:
                if provider is not None:
                    entries = provider.consume(customer, usd(usage_amount(n)), reference=f"u{n}")
                    answer: Any = [[e.grant_id, str(e.amount.amount)] for e in entries]
                else:
                    assert raw is not None
                    answer = raw.consume(customer, usage_amount(n), f"u{n}")
            except bc.ConflictError as error:
                answer = error.code
            except RuntimeError as error:
                answer = str(error)
            with lock:
                answers.setdefault(n, []).append(answer)
        if raw is not None:
            raw.close()

    if provider is not None:
        provider.get_balance("c0")  # connected, schema read: ready
    ready.put(index)
    go.wait()
    threads = [threading.Thread(target=thread, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if provider is not None:
        provider.close()
    out.put((index, answers))


def run_workers(where: str, kind: str, per: int, total: int) -> tuple[float, dict[int, list[Any]]]:
    context = multiprocessing.get_context("fork")  # the parent holds no connection: forks are cheap
    queue, ready, go = context.Queue(), context.Queue(), context.Event()
    workers = [context.Process(target=_worker, args=(where, kind, p, per, total, queue, ready, go))
               for p in range(PROCESSES)]
    for w in workers:
        w.start()
    for _ in workers:  # every process started and connected: time the work only
        ready.get(timeout=300)
    started = time.perf_counter()
    go.set()
    answers: dict[int, list[Any]] = {}
    for _ in workers:
        _, part = queue.get(timeout=600)
        for n, got in part.items():
            answers.setdefault(n, []).extend(got)
    elapsed = time.perf_counter() - started
    for w in workers:
        w.join()
    return elapsed, answers


def ledger_checks(where: str) -> dict[str, Any]:
    """From the tables: no cent lost or made per lot, never below zero, each reference's
    entries once."""
    import psycopg

    with psycopg.connect(where) as db:
        lost = db.execute(
            "SELECT count(*) FROM lots l LEFT JOIN (SELECT grant_id, segment, -sum(amount) AS used "
            "FROM ledger WHERE kind = 'consumed' GROUP BY grant_id, segment) c "
            "ON c.grant_id = l.grant_id AND c.segment = l.idx "
            "WHERE l.amount - l.remaining <> coalesce(c.used, 0)").fetchone()[0]
        negative = db.execute("SELECT count(*) FROM lots WHERE remaining < 0").fetchone()[0]
        orphans = db.execute(
            "SELECT count(DISTINCT reference) FROM ledger WHERE kind = 'consumed' AND reference "
            "NOT IN (SELECT reference FROM usage)").fetchone()[0]
        by_ref = dict(db.execute(
            "SELECT reference, -sum(amount) FROM ledger WHERE kind = 'consumed' "
            "GROUP BY reference").fetchall())
        usage = {r[0] for r in db.execute("SELECT reference FROM usage").fetchall()}
    return {"lots_not_matching_entries": lost, "lots_below_zero": negative,
            "entries_without_usage": orphans, "by_reference": by_ref, "usage": usage}


def concurrent(pg: str, folder: str, per: int) -> None:
    total = PROCESSES * THREADS * per
    figures_by_kind: dict[str, Any] = {}
    for kind in ("ours", "raw"):
        target = Target("postgresql", pg, folder)
        try:
            with target.provider() as provider:
                # About 0.9 of the demand is covered: the credit runs out mid-run.
                demand = sum((usage_amount(n) for n in range(total)), Decimal(0))
                share = (demand * Decimal("0.9") / CUSTOMERS / 3).quantize(Decimal("0.01"))
                seed_grants(provider, str(share))
            elapsed, answers = run_workers(target.where, kind, per, total)
            checks = ledger_checks(target.where)
            by_ref = checks.pop("by_reference")
            usage = checks.pop("usage")
            twice = 0
            wrong = 0
            for n in range(total):
                sent = answers.get(n, [])
                applied = [a for a in sent if isinstance(a, list) or a in ("applied", "replayed")]
                if kind == "ours" and applied and any(a != applied[0] for a in applied):
                    twice += 1  # two senders told different entries: applied twice
                if f"u{n}" in by_ref and by_ref[f"u{n}"] != usage_amount(n):
                    wrong += 1
                if (f"u{n}" in by_ref) != (f"u{n}" in usage):
                    wrong += 1
            refused = sum(1 for n in range(total) if f"u{n}" not in usage)
            figures_by_kind[kind] = {
                "calls": sum(len(a) for a in answers.values()), "seconds": round(elapsed, 2),
                "per_second": round(sum(len(a) for a in answers.values()) / elapsed),
                "references": total, "applied": len(usage & {f"u{n}" for n in range(total)}),
                "refused_insufficient": refused, "answered_differently": twice,
                "references_not_whole": wrong, **checks}
        finally:
            target.drop()
    ours, raw = figures_by_kind["ours"], figures_by_kind["raw"]
    emit({"benchmark": "concurrent", "engine": "postgresql", "processes": PROCESSES,
          "threads": THREADS, "customers": CUSTOMERS, "ours": ours, "raw": raw,
          "ratio": round(ours["per_second"] / raw["per_second"], 2)})


# -- PostgreSQL: kill -9 and a server restart mid-run ------------------------------------------


def _chaos_worker(where: str, index: int, seconds: float, out: Any, ready: Any) -> None:
    provider = LocalProvider(url=where)
    provider.get_balance("c0")
    ready.put(index)
    unavailable: list[str] = []
    others: list[str] = []
    done = 0
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        reference = f"k{index}-{n}"
        while time.monotonic() < deadline + 30:  # a retry keeps the same reference
            try:
                provider.consume(f"c{(index + n) % CUSTOMERS}", usd(usage_amount(n)),
                                 reference=reference)
                done += 1
                break
            except bc.UnavailableError as error:
                unavailable.append(("retryable: " if error.retryable else "final: ")
                                   + str(error)[:160])
                time.sleep(0.2)
            except bc.ConflictError:
                break
            except Exception as error:  # anything else is a finding: report it, go on
                others.append(f"{type(error).__name__}: {error}"[:200])
                break
        n += 1
    out.put((index, done, len(unavailable), unavailable[:1], others[:3]))


def chaos(pg: str, folder: str, seconds: float, restart: str | None) -> None:
    import psycopg

    target = Target("postgresql", pg, folder)
    try:
        with target.provider() as provider:
            seed_grants(provider)
        context = multiprocessing.get_context("fork")  # the parent holds no connection: forks are cheap
        queue, ready = context.Queue(), context.Queue()
        workers = [context.Process(target=_chaos_worker,
                                   args=(target.where, i, seconds, queue, ready))
                   for i in range(PROCESSES)]
        for w in workers:
            w.start()
        for _ in workers:
            ready.get(timeout=300)
        time.sleep(seconds * 0.3)
        killed = [workers[0].pid, workers[1].pid]
        for pid in killed:
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        restarted = None
        if restart:
            time.sleep(seconds * 0.1)
            started = time.perf_counter()
            # The operator's command (pg_ctlcluster may answer 1 although the server is up
            # again: the server answering is what counts).
            subprocess.run(restart, shell=True, check=False)
            for _ in range(60):
                try:
                    psycopg.connect(target.where, connect_timeout=2).close()
                    break
                except psycopg.OperationalError:
                    time.sleep(0.5)
            restarted = round(time.perf_counter() - started, 2)
        reports = []
        for _ in workers[2:]:
            try:
                reports.append(queue.get(timeout=seconds + 60))
            except Exception:  # a survivor that never answered is reported below
                break
        for w in workers:
            w.join(timeout=30)
        checks = ledger_checks(target.where)
        by_ref, usage = checks.pop("by_reference"), checks.pop("usage")
        partial = 0
        for reference, consumed in by_ref.items():
            n = int(reference.rsplit("-", 1)[1])
            if reference not in usage or consumed != usage_amount(n):
                partial += 1
        partial += len(usage - set(by_ref))
        with psycopg.connect(target.where) as db:
            pids = db.execute("SELECT count(*) FROM usage").fetchone()[0]
        emit({"benchmark": "chaos", "engine": "postgresql", "processes": PROCESSES,
              "killed": len(killed), "server_restart_seconds": restarted,
              "applied": pids, "references_not_whole": partial, **checks,
              "survivors_saw_unavailable": sum(r[2] for r in reports),
              "unavailable_example": next((r[3][0] for r in reports if r[3]), None),
              "survivor_consumes": sum(r[1] for r in reports),
              "survivors_reporting": len(reports),
              "exit_codes": [w.exitcode for w in workers],
              "other_errors": [e for r in reports for e in r[4]]})
    finally:
        for _ in range(30):
            try:
                target.drop()
                break
            except psycopg.OperationalError:
                time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (CI), < 20 s")
    parser.add_argument("--pg", default=os.environ.get("BILLING_CREDITS_TEST_PG_URL"))
    parser.add_argument("--consumes", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--per-worker", type=int, default=40)
    parser.add_argument("--chaos", action="store_true")
    parser.add_argument("--chaos-seconds", type=float, default=12)
    parser.add_argument("--pg-restart", default=None,
                        help='command restarting the server, e.g. "pg_ctlcluster 15 main stop '
                             '-m immediate; sleep 2; pg_ctlcluster 15 main start"')
    parser.add_argument("--only", default="figures,history,concurrent",
                        help="sections to run (comma separated)")
    args = parser.parse_args()
    if args.quick:
        args.consumes, args.entries, args.per_worker = 100, 10_000, 2
        args.chaos_seconds = 4
    if args.pg:
        from urllib.parse import urlsplit

        from billing_credits._secrets import register_secret

        register_secret(urlsplit(args.pg).password)
    emit({**machine(), "load": os.getloadavg()})
    random.seed(9)
    engines = ["sqlite"] + (["postgresql"] if args.pg else [])
    if not args.pg:
        emit({"benchmark": "postgresql", "skipped": "no --pg URL nor BILLING_CREDITS_TEST_PG_URL"})
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as folder:
        for engine in engines:
            if "figures" in only:
                figures(engine, args.pg, folder, args.consumes)
            if "history" in only:
                history(engine, args.pg, folder, args.consumes, args.entries)
        if args.pg and "concurrent" in only:
            concurrent(args.pg, folder, args.per_worker)
        if args.pg and args.chaos:
            chaos(args.pg, folder, args.chaos_seconds, args.pg_restart)
    emit({"benchmark": "done", "load": os.getloadavg()})


if __name__ == "__main__":
    main()
