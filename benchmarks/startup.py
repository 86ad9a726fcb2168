"""Benchmark 4: start-up. Wall time of ``billing-credits --help``, of a usage error and of
``billing-credits providers``, and which heavy modules ``import billing_credits`` pulls in.

Targets (issue 10): ``--help`` and usage errors ≤ 0.15 s, ``providers`` ≤ 0.3 s (median),
and no vendor SDK, pydantic or rich on ``import billing_credits``.

Run: .venv/bin/python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "help": (["--help"], 0, 0.15),
    "usage_error": (["grants", "list", "--no-such-option"], 2, 0.15),
    "providers": (["providers"], 0, 0.3),
}


def timed(command: list[str], expect: int, runs: int) -> list[float]:
    subprocess.run(command, check=False, capture_output=True)  # warm the file cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, check=False, capture_output=True)
        times.append(time.perf_counter() - started)
        assert done.returncode == expect, (command, done.returncode, done.stderr)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    command = shutil.which("billing-credits") or str(Path(sys.executable).parent / "billing-credits")
    result: dict[str, object] = {
        "benchmark": "startup", "runs": args.runs,
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.system()} "
                   f"{platform.release()}, Python {platform.python_version()}",
        "load_average": os.getloadavg()[0],
    }
    meets = True
    for name, (argv, expect, target) in CASES.items():
        times = timed([command, *argv], expect, args.runs)
        median = statistics.median(times)
        result[f"{name}_median_s"] = round(median, 3)
        result[f"{name}_min_s"] = round(min(times), 3)
        result[f"{name}_target_s"] = target
        meets = meets and median <= target
    probe = (
        "import sys, billing_credits; "
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'stripe', 'metronome', 'httpx', 'rich', 'pydantic'})))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                            text=True).stdout.strip()
    result["heavy_modules_on_import"] = loaded.split(",") if loaded else []
    result["meets_targets"] = meets and not loaded
    print(json.dumps(result))


if __name__ == "__main__":
    main()
