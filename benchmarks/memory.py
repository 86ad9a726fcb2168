"""Benchmark 3: memory of exporting N grants: streaming, not buffering.

For each N in ``--grants``: a Metronome fake (v1 credit grants) is seeded with N grants
directly in its state and served over loopback from its own process; then
``billing-credits export -p metronome-plans ... -o /dev/null`` runs as a child process and its
peak RSS is read from ``os.wait4`` (the kernel's ``ru_maxrss`` for that child alone, so the
fake's process never counts). Reported per N: peak RSS, wall time, grants per second, and the
peak RSS relative to the 100,000-grant run when both are measured.

Targets: peak RSS <= 150 MB, and the 1,000,000-grant run within 20% of the 100,000-grant run.

The stock ``MetronomeFake`` builds the view of every grant on each ``listGrants`` page (O(N)
per page), which would make a million-grant listing take days; the fake served here answers
an unfiltered listing with the same pages in O(page) (see ``_common.paged_metronome_fake``).
The client's rate limit is off (``-s rate_limit=0``): this measures memory, not pacing.

Run: .venv/bin/python benchmarks/memory.py [--grants 1000,100000,1000000] [--page-size N]
Default run: about 3 minutes here; the fake's process holds about 3 GB at a million grants
(``--grants 1000,100000`` for a small machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import TOKEN, emit, machine, served

TARGET_MB = 150
TARGET_GROWTH = 0.20


def export(url: str, page_size: int | None) -> dict[str, Any]:
    """Run the CLI export as a child; return its peak RSS, wall time and output."""
    command = shutil.which("billing-credits") or str(Path(sys.executable).parent / "billing-credits")
    args = [command, "export", "-p", "metronome-plans", "-s", f"bearer_token={TOKEN}",
            "-s", f"base_url={url}", "-s", "rate_limit=0", "-o", os.devnull]
    if page_size:
        args += ["--page-size", str(page_size)]
    started = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    stderr = child.stderr.read()  # small: one summary line
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"export failed ({child.returncode}): {stderr.decode()[-2000:]}")
    return {"peak_rss_kb": usage.ru_maxrss, "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime, "stderr": stderr.decode().strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", default="1000,100000,1000000",
                        help="comma-separated grant counts (e.g. 100000,1000000)")
    parser.add_argument("--page-size", type=int, default=None,
                        help="export --page-size (default: the provider's, 100)")
    args = parser.parse_args()
    emit(machine())
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
