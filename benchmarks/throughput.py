"""Benchmark 1: migration throughput against a rate-limited Stripe fake over loopback.

A plan of ``--grants`` grants (read from a seeded Metronome fake, v1 credit grants, through
the ``metronome-plans`` provider) is applied to the ``stripe`` provider with ``apply_plan``.
The Stripe fake is served over loopback HTTP from a separate process, adding ``--latency``
seconds to every request and answering 429 beyond a server-side limit of R requests per
second (sliding one-second window), for each R in ``--rates``; the client's ``rate_limit``
setting is R too. Reported per R:

- creates per second achieved, as a fraction of R (target >= 0.9);
- 429s the server answered because of its rate limit while we ran (target 0);
- in the same run, against the same server: the baseline a user writes by hand, a sequential
  loop over the official ``stripe`` SDK for ``--baseline`` creates, and ours/baseline
  (target >= 8x at 100 req/s).

A last run at the highest limit sets the client's ``rate_limit`` a little under the server's
(``--margin-factor``), to show what a margin for arrival jitter does to the 429s.

A headroom check first measures what the fake itself sustains (same latency, no limit
on either side), to show the fake is not what limits the figures.

Run: .venv/bin/python benchmarks/throughput.py [--grants 2000] [--rates 25,100]
     [--latency 0.1] [--baseline 150] [--concurrency N] [--no-headroom]
     [--margin-factor 0.96] [--quick]
Default run: about 3 minutes; ``--quick`` (CI): about 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import httpx
import stripe
from _common import API_KEY, emit, machine, seed_metronome, served
from billing_credits_metronome import MetronomePlansProvider
from billing_credits_metronome.testing import MetronomeFake
from billing_credits_stripe import StripeProvider
from billing_credits_stripe import _translate as stripe_tr

import billing_credits as bc
from billing_credits.testing import FakeTransport

TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """User + system CPU seconds a process has used (from /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_plan(grants: int, customers: int, target_url: str) -> bc.MigrationPlan:
    """Seed a Metronome fake (in process) and plan its grants' migration to the Stripe fake
    served at ``target_url``: a plan names its target (provider, address, account) and
    ``apply_plan`` refuses to apply it to any other, so each served fake gets its own plan.
    The source is reached in process (``FakeTransport``: no network; the address only names
    it)."""
    fake = MetronomeFake(token="plan")
    seed_metronome(fake, grants, customers=customers)
    source = MetronomePlansProvider(
        bearer_token="plan", base_url="https://api.metronome.com", rate_limit=0,
        http_client=httpx.Client(transport=FakeTransport(fake)))
    planner_target = StripeProvider(API_KEY, base_url=target_url)
    plan = bc.plan_migration(source, planner_target)
    source.close()
    planner_target.close()
    if len(plan.to_create) != grants or plan.refusals:
        raise SystemExit(f"plan has {len(plan.to_create)} creates and {len(plan.refusals)} "
                         "refusals; expected every grant to migrate")
    return plan


async def apply(plan: bc.MigrationPlan, url: str, rate: float, concurrency: int,
                journal: Path) -> tuple[bc.ApplyReport, list[float]]:
    target = StripeProvider(API_KEY, base_url=url, rate_limit=rate if rate else 0)
    finished: list[float] = []

    def progress(done: int, total: int) -> None:
        finished.append(time.perf_counter())

    try:
        report = await bc.apply_plan(plan, target, journal=journal, concurrency=concurrency,
                                     progress=progress)
    finally:
        await target.aclose()
    return report, finished[1:]  # the first call reports the starting point


def baseline(plan: bc.MigrationPlan, url: str, count: int, tag: str) -> float:
    """The hand-written loop: one official-SDK create after another. Returns seconds."""
    client = stripe.StripeClient(
        API_KEY, base_addresses={"api": url},
        http_client=stripe.HTTPXClient(allow_sync_methods=True))
    params = [stripe_tr.create_params(item.grant) for item in plan.to_create[:count]
              if item.grant is not None]
    started = time.perf_counter()
    for i, body in enumerate(params):
        client.v1.billing.credit_grants.create(
            params=body, options={"idempotency_key": f"baseline-{tag}-{i}"})
    return time.perf_counter() - started


def headroom(args: argparse.Namespace, latency: float, count: int, tmp: Path) -> None:
    """What the fake sustains with no limit anywhere: it must be well above the limits."""
    with served("stripe", faults={"latency": latency}) as server:
        plan = make_plan(min(count, args.grants), args.customers, server.url)
        sample = bc.MigrationPlan(plan.header, plan.to_create[:count])
        cpu0, own0 = cpu_of(server.pid), own_cpu()
        report, _ = asyncio.run(apply(sample, server.url, 0, 64, tmp / "headroom.db"))
        cpu1, own1 = cpu_of(server.pid), own_cpu()
    emit({
        "benchmark": "throughput.headroom",
        "what": "no rate limit on either side, concurrency 64: the fake's own capacity",
        "latency_s": latency, "creates": report.created, "failed": len(report.failed),
        "creates_per_s": round(report.created / report.seconds, 1),
        "server_cpu_s": round(cpu1 - cpu0, 2), "client_cpu_s": round(own1 - own0, 2),
        "wall_s": round(report.seconds, 2),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--rates", default="25,100", help="server limits, req/s (comma-separated)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    parser.add_argument("--baseline", type=int, default=150, help="creates in the SDK loop")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="apply_plan concurrency (default: max(16, 3 x rate x latency))")
    parser.add_argument("--margin-factor", type=float, default=0.96,
                        help="after the runs, apply once more at the highest limit with the "
                        "client's rate_limit at this fraction of it (0: skip)")
    parser.add_argument("--headroom-grants", type=int, default=600)
    parser.add_argument("--no-headroom", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a small run for CI: 150 grants at 100 req/s, 20 SDK creates, "
                        "headroom on 100, no margin run (about 10 s)")
    args = parser.parse_args()
    failures = 0

    if args.quick:
        args.grants, args.customers, args.rates, args.baseline = 150, 10, "100", 20
        args.headroom_grants, args.margin_factor = 100, 0
    emit(machine())
    with tempfile.TemporaryDirectory(prefix="bc-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if not args.no_headroom:
            headroom(args, args.latency, args.headroom_grants, tmp)
        for rate in (float(r) for r in args.rates.split(",")):
            concurrency = args.concurrency or max(16, math.ceil(3 * rate * args.latency))
            faults = {"latency": args.latency, "rate_limit": rate}
            with served("stripe", faults=faults) as server:
                started = time.perf_counter()
                plan = make_plan(args.grants, args.customers, server.url)
                emit({"benchmark": "throughput.plan",
                      "source": "metronome-plans (in-process fake)", "target": "stripe",
                      "grants_to_create": len(plan.to_create),
                      "plan_s": round(time.perf_counter() - started, 2)})
                before = server.stats()
                cpu0, own0 = cpu_of(server.pid), own_cpu()
                report, finished = asyncio.run(
                    apply(plan, server.url, rate, concurrency, tmp / f"journal-{rate:g}.db"))
                cpu1, own1 = cpu_of(server.pid), own_cpu()
                ours = server.stats()
                base_s = baseline(plan, server.url, args.baseline, f"{rate:g}")
                after = server.stats()
            ours_rate = report.created / report.seconds
            steady = ((len(finished) - 1) / (finished[-1] - finished[0])
                      if len(finished) > 1 else float("nan"))
            base_rate = args.baseline / base_s
            ratio = ours_rate / base_rate
            ours_429 = ours["rate_limited"] - before["rate_limited"]
            emit({
                "benchmark": "throughput",
                "server_limit_per_s": rate, "client_rate_limit_per_s": rate,
                "latency_s": args.latency, "concurrency": concurrency,
                "grants": len(plan.to_create), "created": report.created,
                "failed": len(report.failed),
                "requests_seen_by_server": ours["requests"] - before["requests"],
                "wall_s": round(report.seconds, 2),
                "creates_per_s": round(ours_rate, 2),
                "fraction_of_limit": round(ours_rate / rate, 3),
                "steady_creates_per_s": round(steady, 2),
                "server_429_rate_limited": ours_429,
                "server_cpu_s": round(cpu1 - cpu0, 2), "client_cpu_s": round(own1 - own0, 2),
                "baseline_creates": args.baseline,
                "baseline_creates_per_s": round(base_rate, 2),
                "baseline_server_429": after["rate_limited"] - ours["rate_limited"],
                "ours_over_baseline": round(ratio, 2),
                "meets_fraction_target": ours_rate / rate >= 0.9 and ours_429 == 0
                and not report.failed,
                **({"meets_ratio_target": ratio >= 8} if rate >= 100 else {}),
            })
            if report.failed:
                failures += 1
                emit({"benchmark": "throughput.failures", "first": report.failed[:3]})
        rates = [float(r) for r in args.rates.split(",")]
        if args.margin_factor:
            margin(max(rates), args, tmp)
    if failures:
        raise SystemExit(f"{failures} run(s) left grants not created: see the failures lines")


def margin(rate: float, args: argparse.Namespace, tmp: Path) -> None:
    """The same apply with the client's rate_limit a little under the server's limit: shows
    whether a margin for arrival jitter removes the 429s (see the README)."""
    client_rate = rate * args.margin_factor
    concurrency = args.concurrency or max(16, math.ceil(3 * rate * args.latency))
    with served("stripe", faults={"latency": args.latency, "rate_limit": rate}) as server:
        plan = make_plan(args.grants, args.customers, server.url)
        report, _ = asyncio.run(
            apply(plan, server.url, client_rate, concurrency, tmp / "journal-margin.db"))
        stats = server.stats()
    achieved = report.created / report.seconds
    emit({
        "benchmark": "throughput.margin",
        "server_limit_per_s": rate, "client_rate_limit_per_s": round(client_rate, 2),
        "latency_s": args.latency, "concurrency": concurrency, "created": report.created,
        "failed": len(report.failed), "requests_seen_by_server": stats["requests"],
        "wall_s": round(report.seconds, 2), "creates_per_s": round(achieved, 2),
        "fraction_of_limit": round(achieved / rate, 3),
        "server_429_rate_limited": stats["rate_limited"],
    })


if __name__ == "__main__":
    main()
