"""Benchmark 4: start-up. Wall time of ``billing-credits --help``, and whether
``import billing_credits`` pulls in a vendor SDK (target: no; --help ≤ 0.3 s).

Run: .venv/bin/python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    command = shutil.which("billing-credits") or str(Path(sys.executable).parent / "billing-credits")
    subprocess.run([command, "--help"], check=True, capture_output=True)  # warm the file cache
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run([command, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    probe = (
        "import sys, billing_credits; "
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'stripe', 'metronome', 'httpx', 'rich'})))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                            text=True).stdout.strip()
    result = {
        "benchmark": "startup",
        "help_median_s": round(statistics.median(times), 3),
        "help_max_s": round(max(times), 3),
        "runs": args.runs,
        "vendor_or_heavy_modules_on_import": loaded.split(",") if loaded else [],
        "target_help_s": 0.3,
        "meets_target": statistics.median(times) <= 0.3 and not loaded,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
