"""Run every benchmark in this folder, so that none can break unnoticed (CI runs this with
``--quick`` after the tests: ``.ci/run``).

Each ``benchmarks/<name>.py`` (not starting with ``_``, not this file) runs as its own process
with the given flags; its JSON lines are printed as they come, then one line per benchmark
saying whether it exited 0 and how long it took. The exit status is 1 if any benchmark
failed, printed nothing, or (with ``--quick``) took longer than ``--limit`` seconds.

These are not tests: nothing here asserts a figure. A run under ``--quick`` is too small to
measure anything worth quoting; it proves that every script still starts, runs against the
current code and prints its figures beside their baselines.

Run: .venv/bin/python benchmarks/run_all.py --quick [--limit 20] [--only model,translation]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """Every benchmark script, in name order."""
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_")
                  and p.name != Path(__file__).name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to each (CI)")
    parser.add_argument("--limit", type=float, default=20.0,
                        help="with --quick: seconds each may take (default 20)")
    parser.add_argument("--only", default="", help="comma-separated names (default: all)")
    args = parser.parse_args()
    chosen = {name.strip() for name in args.only.split(",") if name.strip()}
    failed = []
    for script in scripts():
        if chosen and script.stem not in chosen:
            continue
        command = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        sys.stdout.write(done.stdout)
        figures = sum(1 for line in done.stdout.splitlines() if line.startswith("{"))
        problem = None
        if done.returncode != 0:
            problem = f"exit {done.returncode}: {done.stderr.strip()[-1500:]}"
        elif figures == 0:
            problem = "printed no figures"
        elif args.quick and seconds > args.limit:
            problem = f"took {seconds:.1f} s with --quick (limit {args.limit:g} s)"
        print(json.dumps({"benchmark": "run_all", "script": script.name, "ok": problem is None,
                          "seconds": round(seconds, 1), "json_lines": figures,
                          **({"problem": problem} if problem else {})}), flush=True)
        if problem:
            failed.append(script.name)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
