"""Benchmark 3: memory that does not grow with the work.

Two parts, chosen with ``--what`` (default both):

``export`` — for each N in ``--grants``: a Metronome fake (v1 credit grants) is seeded with N
grants directly in its state and served over loopback from its own process; then
``billing-credits export -p metronome-plans ... -o /dev/null`` runs as a child process and its
peak RSS is read from ``os.wait4`` (the kernel's ``ru_maxrss`` for that child alone, so the
fake's process never counts). Targets: peak RSS <= 150 MB, and the 1,000,000-grant run within
20% of the 100,000-grant run.

``migrate`` — for each N in ``--migrate-grants``: ``plan``, ``apply`` and ``verify`` of a
migration of N grants, each phase in its own child process (``--child PHASE``), peak RSS from
``os.wait4``. The source is a paged in-memory provider that generates grant ``i`` from its
index on demand (it holds nothing: O(page) per page), the target an in-memory provider whose
creates store nothing, which lists nothing during ``apply`` (a target before migration) and,
for ``verify``, generates per customer the grants a correct apply leaves behind (under the
keys the plan gives them, so ``verify`` reads N grants back). ``plan`` runs as the CLI does
(``write_plan`` to the file), ``apply`` and ``verify`` open the plan lazily
(``MigrationPlan.open``). The vendor side therefore costs no memory;
what is measured is the library: the planner, the plan file, the journal, the apply loop and
the reconciliation. Target (issue 9.7): under 200 MB at 1,000,000 planned grants.

The stock ``MetronomeFake`` builds the view of every grant on each ``listGrants`` page (O(N)
per page), which would make a million-grant listing take days; the fake served here answers
an unfiltered listing with the same pages in O(page) (see ``_common.paged_metronome_fake``).
The client's rate limit is off (``-s rate_limit=0``): this measures memory, not pacing.

Run: .venv/bin/python benchmarks/memory.py [--what export,migrate] [--grants 1000,100000,1000000]
         [--migrate-grants 100000,1000000] [--phases plan,apply,verify] [--max-memory-gb G]
         [--page-size N] [--quick]

``--quick`` (CI): 1,000 grants each, well under 20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

from _common import TOKEN, emit, machine, served

TARGET_MB = 150
TARGET_GROWTH = 0.20
MIGRATE_TARGET_MB = 200
CUSTOMERS = 1000
PAGE = 100
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2099, 1, 1, tzinfo=UTC)


def export(url: str, page_size: int | None) -> dict[str, Any]:
    """Run the CLI export as a child; return its peak RSS, wall time and output."""
    command = shutil.which("billing-credits") or str(Path(sys.executable).parent / "billing-credits")
    args = [command, "export", "-p", "metronome-plans", "-s", f"bearer_token={TOKEN}",
            "-s", f"base_url={url}", "-s", "rate_limit=0", "-o", os.devnull]
    if page_size:
        args += ["--page-size", str(page_size)]
    return _measured(args)


def _measured(args: list[str], *, max_memory_gb: float | None = None,
              check: bool = True) -> dict[str, Any]:
    """Run ``args`` as a child; its own peak RSS (``ru_maxrss`` from ``wait4``) and times.

    ``max_memory_gb`` caps the child's address space (``RLIMIT_AS``), so that a run that
    would outgrow a shared machine fails instead of pushing others out of memory."""

    def limit() -> None:
        if max_memory_gb:
            import resource

            cap = int(max_memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    started = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=limit if max_memory_gb else None)  # noqa: PLW1509
    assert child.stdout is not None
    assert child.stderr is not None
    out = child.stdout.read()
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode != 0 and check:
        raise SystemExit(f"{args[1:4]} failed ({child.returncode}): {err.decode()[-2000:]}")
    return {"peak_rss_kb": usage.ru_maxrss, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "stdout": out.decode().strip(), "stderr": err.decode().strip(),
            "returncode": child.returncode}


# -- the in-memory providers of the migration benchmark (used in the child processes) --------


def _providers(count: int, *, migrated: bool = False) -> tuple[Any, Any]:
    """The source of ``count`` grants, and a target that holds nothing (``migrated``: what a
    correct apply of the plan leaves behind)."""
    import billing_credits as bc

    def source_grant(index: int) -> bc.CreditGrant:
        return bc.CreditGrant(
            customer_id=f"cus_{index % CUSTOMERS:05d}", id=f"src_{index:08d}", provider="synthetic",
            amount=bc.Money(amount=Decimal(1000 + index % 9000) / 100, currency="USD"),
            balance=bc.Money(amount=Decimal(1000 + index % 9000) / 100, currency="USD"),
            status=bc.GrantStatus.ACTIVE, priority=Decimal(1 + index % 100),
            name=f"Prepaid credits {index}", effective_at=START, expires_at=END,
            idempotency_key=f"seed-{index}")

    def per_customer(customer: str | None) -> tuple[int, int]:
        """First index and step of a listing (all grants, or one customer's)."""
        if customer is None:
            return 0, 1
        return int(customer.removeprefix("cus_")), CUSTOMERS

    class Synthetic(bc.Provider):
        name = "synthetic"
        capabilities = bc.Capabilities()

        def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
            raise bc.UnsupportedOperationError(self.name, "create")
            yield  # pragma: no cover

        def _page(self, query: bc.ListQuery, cursor: str | None, build: Any) -> bc.Flow[bc.Page]:
            first, step = per_customer(query.customer_id)
            offset = int(cursor or 0)
            indexes = range(first + offset * step, count, step)[:PAGE]
            page = [build(i) for i in indexes]
            more = bool(indexes) and indexes[-1] + step < count
            result: bc.Page = yield bc.Call(lambda: bc.Page(page, str(offset + PAGE) if more else None),
                                            _ready(bc.Page(page, str(offset + PAGE) if more else None)))
            return result

        def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
            return self._page(query, cursor, source_grant)

        def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
            raise bc.NotFoundError(grant_id)
            yield  # pragma: no cover

    class Target(Synthetic):
        """Stores nothing; lists nothing before apply, what a correct apply of the plan leaves
        behind after it (each grant under the key the plan gives it: the application's own)."""

        name = "synthetic-target"

        def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
            stored = grant.model_copy(update={"id": f"tgt_{idempotency_key}", "provider": self.name,
                                              "status": bc.GrantStatus.ACTIVE, "balance": grant.amount})
            result: bc.CreditGrant = yield bc.Call(lambda: stored, _ready(stored))
            return result

        def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
            def held(index: int) -> bc.CreditGrant:
                grant = source_grant(index)
                key = grant.idempotency_key
                return grant.model_copy(update={"id": f"tgt_{key}", "provider": self.name})
            return self._page(query, cursor, held) if migrated else self._empty()

        def _empty(self) -> bc.Flow[bc.Page]:
            result: bc.Page = yield bc.Call(lambda: bc.Page([], None), _ready(bc.Page([], None)))
            return result

    return Synthetic(), Target()


def _ready(value: Any) -> Any:
    async def answer() -> Any:
        return value
    return answer


def child(phase: str, count: int, folder: Path) -> None:
    """One phase of the migration benchmark, in this (child) process."""
    import billing_credits as bc

    source, target = _providers(count, migrated=phase == "verify")
    plan_path = folder / "plan.jsonl"
    if phase == "plan":  # as the CLI does: streamed to the file, then read back lazily
        with plan_path.open("w") as out:
            summary = bc.write_plan(source, target, out, now=START + timedelta(days=1))
        print(f"planned {summary['grants_to_create']}")
    elif phase == "apply":
        plan = bc.MigrationPlan.open(plan_path)
        report = asyncio.run(bc.apply_plan(plan, target, journal=folder / "plan.journal"))
        if not report.ok:
            raise SystemExit(f"apply failed: {report.failed[:3]}")
        print(f"created {report.created}")
    elif phase == "verify":
        plan = bc.MigrationPlan.open(plan_path)
        verified = bc.verify_plan(plan, target)
        if not verified.ok:
            raise SystemExit(f"verify found differences: {verified.lines()[:3]}")
        print(f"verified {verified.checked}")
    else:
        raise SystemExit(f"unknown phase {phase}")


def migrate(counts: Iterator[int], phases: list[str], max_memory_gb: float | None) -> int:
    """Measure each phase at each count; return how many runs failed."""
    failures = 0
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="bc-memory-") as folder:
            for phase in phases:
                result = _measured([sys.executable, os.path.abspath(__file__), "--child", phase,
                                    "--migrate-grants", str(count), "--folder", folder],
                                   max_memory_gb=max_memory_gb, check=False)
                peak_mb = result["peak_rss_kb"] / 1024
                plan = Path(folder) / "plan.jsonl"
                record: dict[str, Any] = {
                    "benchmark": f"memory.migrate.{phase}", "grants": count,
                    "result": result["stdout"], "peak_rss_mb": round(peak_mb, 1),
                    "wall_s": round(result["wall_s"], 1), "child_cpu_s": round(result["cpu_s"], 1),
                    "plan_file_mb": round(plan.stat().st_size / 2**20, 1) if plan.exists() else None,
                    "meets_rss_target": peak_mb <= MIGRATE_TARGET_MB and result["returncode"] == 0}
                if result["returncode"] != 0:
                    failures += 1
                    record["failed"] = (f"exit {result['returncode']}"
                                        + (f" (address space capped at {max_memory_gb} GB)"
                                           if max_memory_gb else "")
                                        + f": {result['stderr'][-300:]}")
                emit(record)
                if result["returncode"] != 0 and phase == "plan":
                    break
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", default="export,migrate", help="export, migrate or both")
    parser.add_argument("--grants", default="1000,100000,1000000",
                        help="export: comma-separated grant counts (e.g. 100000,1000000)")
    parser.add_argument("--migrate-grants", default="100000,1000000",
                        help="migrate: comma-separated grant counts")
    parser.add_argument("--phases", default="plan,apply,verify",
                        help="migrate: which phases to measure (each needs the plan)")
    parser.add_argument("--max-memory-gb", type=float, default=None,
                        help="migrate: cap each child's address space (a shared machine)")
    parser.add_argument("--page-size", type=int, default=None,
                        help="export --page-size (default: the provider's, 100)")
    parser.add_argument("--quick", action="store_true",
                        help="a small run for CI: export and migrate 1,000 grants (about 15 s)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, int(args.migrate_grants), Path(args.folder))
        return
    if args.quick:
        args.grants, args.migrate_grants = "1000", "1000"
    emit(machine())
    what = set(args.what.split(","))
    failures = 0
    if "migrate" in what:
        failures = migrate((int(n) for n in args.migrate_grants.split(",")),
                           args.phases.split(","), args.max_memory_gb)
    if "export" in what:
        export_all(args)
    if failures:
        raise SystemExit(f"{failures} migrate phase(s) failed: see the records above")


def export_all(args: argparse.Namespace) -> None:
    peaks: dict[int, float] = {}
    for count in (int(n) for n in args.grants.split(",")):
        with served("metronome-paged", seed=count, timeout=3600) as server:
            result = export(server.url, args.page_size)
        peak_mb = result["peak_rss_kb"] / 1024
        peaks[count] = peak_mb
        record: dict[str, Any] = {
            "benchmark": "memory.export", "provider": "metronome-plans", "grants": count,
            "exported": result["stderr"], "peak_rss_mb": round(peak_mb, 1),
            "wall_s": round(result["wall_s"], 1), "child_cpu_s": round(result["cpu_s"], 1),
            "grants_per_s": round(count / result["wall_s"]),
            "fake_seed_s": round(server.seed_s, 1),
            "meets_rss_target": peak_mb <= TARGET_MB,
        }
        if count > 100_000 and 100_000 in peaks:
            growth = peak_mb / peaks[100_000] - 1
            record["rss_vs_100k"] = round(growth, 3)
            record["meets_growth_target"] = growth <= TARGET_GROWTH
        emit(record)


if __name__ == "__main__":
    main()
