"""Shared pieces of the benchmarks: the machine, JSON lines, seeded fakes served from a
separate process (so the fake's CPU never competes with the client's GIL).

Not a test helper: nothing here is imported by the test suite.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

API_KEY = "sk_test_benchmark000000000000000000000"
"""A test-mode key the Stripe fake accepts (it only checks the prefix)."""
TOKEN = "benchmark-token"
"""The bearer token the Metronome fake is told to require."""

_NAMESPACE = uuid.UUID("6f1c0c9e-3d7e-4b7a-9a57-0d6f6b2b4b10")


def emit(record: dict[str, Any]) -> None:
    """Print one JSON line (flushed, so a long run shows its figures as they come)."""
    print(json.dumps(record), flush=True)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    return {"benchmark": "machine", "commit": commit(), "nproc": os.cpu_count(), "cpu": model,
            "memory": memory, "python": platform.python_version(),
            "platform": platform.platform(), "load_average": load_average()}


def commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when files differ from it), or None outside git."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               text=True, capture_output=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def load_average() -> float:
    """The one-minute load average when the figure was taken (the machine is shared)."""
    return round(os.getloadavg()[0], 2)


def customer_ids(count: int) -> list[str]:
    """Deterministic uuid customer ids (Metronome's are uuids)."""
    return [str(uuid.uuid5(_NAMESPACE, f"customer-{i}")) for i in range(count)]


def hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def seed_metronome(fake: Any, grants: int, *, customers: int = 100,
                   now: datetime | None = None) -> None:
    """Put ``grants`` v1 credit grants straight into a ``MetronomeFake``'s state, through its
    own createGrant handler (validation included, no HTTP): USD (cents), whole-number
    priorities 1-100, live for a year, spread round-robin over ``customers`` customers."""
    from billing_credits_metronome._translate import USD_CENTS, format_time

    now = hour(now or datetime.now(UTC))
    start = format_time(now - timedelta(days=1))
    end = format_time(now + timedelta(days=365))
    ids = customer_ids(customers)
    for i in range(grants):
        fake._create_grant({}, {
            "customer_id": ids[i % customers],
            "name": f"Prepaid credits {i}",
            "grant_amount": {"amount": 1000 + (i % 9000), "credit_type_id": USD_CENTS},
            "paid_amount": {"amount": 0, "credit_type_id": USD_CENTS},
            "priority": 1 + (i % 100),
            "effective_at": start,
            "expires_at": end,
            "credit_grant_type": "promotional",
            "reason": "benchmark seed",
            "uniqueness_key": f"seed-{i}",
        })


def paged_metronome_fake(**settings: Any) -> Any:
    """A ``MetronomeFake`` whose unfiltered ``listGrants`` builds only the page it answers.

    The stock fake builds the view of *every* grant on each page (O(N) per page, so O(N²) to
    list N grants): fine for tests, hopeless at a million. For an unfiltered listing with no
    voided grant, this answers the same page (same items, same cursor) in O(page); any other
    request goes to the stock handler.
    """
    from billing_credits_metronome.testing import MetronomeFake

    class PagedMetronomeFake(MetronomeFake):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self._keys: list[str] = []

        def _list_grants(self, query: dict[str, str], body: dict[str, Any]) -> Any:
            if body:  # filters: the stock path
                return super()._list_grants(query, body)
            self._fields(query, frozenset({"limit", "next_page"}), where="query ")
            if len(self._keys) != len(self.grants):
                self._keys = list(self.grants)
            limit = self._limit(query.get("limit"), 100, 100)
            offset = self._offset(query.get("next_page"))
            chunk = [self.grants[k] for k in self._keys[offset:offset + limit]]
            if any(g.voided for g in chunk):
                return super()._list_grants(query, body)
            more = offset + limit < len(self._keys)
            return {"data": [self._grant_view(g) for g in chunk],
                    "next_page": f"cursor_{offset + limit:x}" if more else None}

    return PagedMetronomeFake(**settings)


def _make_app(kind: str, seed: int) -> Any:
    if kind == "stripe":
        from billing_credits_stripe.testing import StripeFake

        return StripeFake()
    if kind == "metronome-paged":
        fake = paged_metronome_fake(token=TOKEN)
        seed_metronome(fake, seed)
        return fake
    raise ValueError(kind)


def _serve_main(conn: Any, kind: str, faults: dict[str, Any], seed: int) -> None:
    """Child process: build (and seed) the fake, serve it, answer stats/stop on ``conn``."""
    from billing_credits.testing import Faults, serve

    started = time.perf_counter()
    app = _make_app(kind, seed)
    seeded = time.perf_counter() - started
    with serve(app, Faults(**faults)) as server:
        conn.send({"url": server.url, "seed_s": seeded})
        while True:
            command = conn.recv()
            if command == "stats":
                stats = asdict(server.faults.stats)
                stats["injected"] = dict(server.faults.stats.injected)
                conn.send(stats)
            elif command == "stop":
                conn.send("stopped")
                return


class ServedFake:
    """A fake served on 127.0.0.1 by a child process; ``url`` and ``stats()``."""

    def __init__(self, process: Any, conn: Any, url: str, seed_s: float) -> None:
        self.process = process
        self.conn = conn
        self.url = url
        self.seed_s = seed_s
        self.pid = process.pid

    def stats(self) -> dict[str, Any]:
        self.conn.send("stats")
        result: dict[str, Any] = self.conn.recv()
        return result


@contextmanager
def served(kind: str, *, faults: dict[str, Any] | None = None, seed: int = 0,
           timeout: float = 3600) -> Iterator[ServedFake]:
    """Serve a fake (``stripe`` or ``metronome-paged``, seeded with ``seed`` grants) from a
    separate process for the ``with`` block."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_main, args=(child, kind, faults or {}, seed),
                              daemon=True)
    process.start()
    try:
        if not parent.poll(timeout):
            raise RuntimeError(f"the {kind} fake did not start within {timeout} s")
        hello = parent.recv()
        yield ServedFake(process, parent, hello["url"], hello["seed_s"])
    finally:
        if process.is_alive():
            try:
                parent.send("stop")
                parent.poll(10) and parent.recv()
            except (OSError, EOFError):
                pass
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)


def python_path_env() -> dict[str, str]:
    """The environment for a child Python: this one, with the benchmarks folder importable."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    return env


__all__ = ["API_KEY", "TOKEN", "ServedFake", "commit", "customer_ids", "emit", "load_average", "machine",
           "paged_metronome_fake", "python_path_env", "seed_metronome", "served"]
