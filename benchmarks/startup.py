"""Benchmark 4: start-up. Wall time of ``billing-credits --help``, of a usage error and of
``billing-credits providers``, which heavy modules ``import billing_credits`` pulls in and
which listing the installed providers pulls in. Each case reports wall time (median, best)
and the median CPU time (user + system) of the process, which a loaded machine disturbs less.

Targets (issue 10): ``--help`` and usage errors ≤ 0.15 s, ``providers`` ≤ 0.3 s (median),
no vendor SDK, pydantic or rich on ``import billing_credits``, and no vendor SDK, httpx or rich
when listing the providers.

``bytecode_cache`` says whether the project's modules had compiled bytecode (``__pycache__``):
with ``PYTHONDONTWRITEBYTECODE=1`` and no cache, every run compiles them from source, which
costs more than the imports themselves on a loaded machine. Pass ``--bytecode`` to write the
cache first (what an installed package has).

Baseline, in the same run: ``python -c pass`` (the interpreter alone), each case beside it.

Run: .venv/bin/python benchmarks/startup.py [--runs 15] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import commit

CASES = {
    "help": (["--help"], 0, 0.15),
    "usage_error": (["grants", "list", "--no-such-option"], 2, 0.15),
    "providers": (["providers"], 0, 0.3),
}


PROVIDERS_PROBE = (
    "import sys, billing_credits as bc; bc.available_providers(); "
    "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & "
    "{'stripe', 'metronome', 'httpx', 'requests', 'rich'})))"
)


def bytecode_cached() -> bool:
    """Whether the project's provider modules have compiled bytecode for this interpreter."""
    found = []
    for module in ("billing_credits._provider", "billing_credits_stripe._provider",
                   "billing_credits_metronome._provider"):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin is not None:
            found.append(Path(importlib.util.cache_from_source(spec.origin)).exists())
    return bool(found) and all(found)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], expect: int, runs: int) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system) of ``runs`` runs of ``command``."""
    subprocess.run(command, check=False, capture_output=True)  # warm the file cache
    times, cpu = [], []
    for _ in range(runs):
        cpu_before = _children_cpu()
        started = time.perf_counter()
        done = subprocess.run(command, check=False, capture_output=True)
        times.append(time.perf_counter() - started)
        cpu.append(_children_cpu() - cpu_before)
        assert done.returncode == expect, (command, done.returncode, done.stderr)
    return times, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--bytecode", action="store_true",
                        help="compile the project's modules to __pycache__ before timing")
    parser.add_argument("--quick", action="store_true", help="3 runs of each (CI)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 3
    if args.bytecode:
        environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([sys.executable, "-c", PROVIDERS_PROBE], check=True, capture_output=True,
                       env=environment)
    command = shutil.which("billing-credits") or str(Path(sys.executable).parent / "billing-credits")
    result: dict[str, object] = {
        "benchmark": "startup", "runs": args.runs,
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.system()} "
                   f"{platform.release()}, Python {platform.python_version()}",
        "commit": commit(),
        "load_average": os.getloadavg()[0],
        "bytecode_cache": bytecode_cached(),
    }
    meets = True
    # Baseline, same run: the interpreter starting and doing nothing (no project code).
    times, cpu = timed([sys.executable, "-c", "pass"], 0, args.runs)
    result["baseline_python_median_s"] = round(statistics.median(times), 3)
    result["baseline_python_cpu_median_s"] = round(statistics.median(cpu), 3)
    for name, (argv, expect, target) in CASES.items():
        times, cpu = timed([command, *argv], expect, args.runs)
        median = statistics.median(times)
        result[f"{name}_median_s"] = round(median, 3)
        result[f"{name}_min_s"] = round(min(times), 3)
        result[f"{name}_cpu_median_s"] = round(statistics.median(cpu), 3)
        result[f"{name}_target_s"] = target
        result[f"{name}_over_baseline_python"] = round(
            median / max(result["baseline_python_median_s"], 1e-3), 1)  # type: ignore[arg-type]
        meets = meets and median <= target
    probe = (
        "import sys, billing_credits; "
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'stripe', 'metronome', 'httpx', 'rich', 'pydantic'})))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                            text=True).stdout.strip()
    result["heavy_modules_on_import"] = loaded.split(",") if loaded else []
    listed = subprocess.run([sys.executable, "-c", PROVIDERS_PROBE], check=True,
                            capture_output=True, text=True).stdout.strip()
    result["heavy_modules_on_providers"] = listed.split(",") if listed else []
    result["meets_targets"] = meets and not loaded and not listed
    print(json.dumps(result))


if __name__ == "__main__":
    main()
