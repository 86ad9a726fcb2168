"""Run every benchmark in this folder, so that none can break unnoticed (CI runs this with
``--quick`` after the tests: ``.ci/run``).

Each ``benchmarks/<name>.py`` (not starting with ``_``, not this file) runs as its own process
with the given flags; its JSON lines are printed as they come, then one line per benchmark
saying whether it exited 0 and how long it took. The exit status is 1 if any benchmark
failed, printed nothing, or (with ``--quick``) used more than ``--limit`` seconds of CPU (the
script's own and its children's: a loaded CI machine stretches wall time, not CPU time); one
still running after six times the limit of wall time is stopped and fails.

These are not tests: nothing here asserts a figure. A run under ``--quick`` is too small to
measure anything worth quoting; it proves that every script still starts, runs against the
current code and prints its figures beside their baselines.

Run: .venv/bin/python benchmarks/run_all.py --quick [--limit 20] [--only model,translation]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """Every benchmark script, in name order."""
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_")
                  and p.name != Path(__file__).name)


HANG = 6
"""A script still running after this many times the limit (wall time) is stopped as hung."""


def _run(command: list[str], *, timeout: float) -> tuple[int, str, str, float, float]:
    """Run ``command``: its exit status, output, error output, wall seconds and CPU seconds
    (its own and its waited-for children's, from ``os.wait4``)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                err.write(f"\nstopped: still running after {timeout:g} s")
                break
            time.sleep(0.05)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return (child.returncode, out.read(), err.read(), seconds,
                usage.ru_utime + usage.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to each (CI)")
    parser.add_argument("--limit", type=float, default=20.0,
                        help="with --quick: CPU seconds each may use (default 20)")
    parser.add_argument("--only", default="", help="comma-separated names (default: all)")
    args = parser.parse_args()
    chosen = {name.strip() for name in args.only.split(",") if name.strip()}
    failed = []
    for script in scripts():
        if chosen and script.stem not in chosen:
            continue
        command = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        returncode, out, err, seconds, cpu = _run(command, timeout=HANG * args.limit)
        sys.stdout.write(out)
        figures = sum(1 for line in out.splitlines() if line.startswith("{"))
        problem = None
        if returncode != 0:
            problem = f"exit {returncode}: {err.strip()[-1500:]}"
        elif figures == 0:
            problem = "printed no figures"
        elif args.quick and cpu > args.limit:
            problem = f"used {cpu:.1f} s of CPU with --quick (limit {args.limit:g} s)"
        print(json.dumps({"benchmark": "run_all", "script": script.name, "ok": problem is None,
                          "seconds": round(seconds, 1), "cpu_s": round(cpu, 1),
                          "json_lines": figures, "load_average": round(os.getloadavg()[0], 2),
                          **({"problem": problem} if problem else {})}), flush=True)
        if problem:
            failed.append(script.name)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
