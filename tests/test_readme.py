"""The README stays true: its Python example runs verbatim, and CI runs its two commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_python_example_runs_verbatim(tmp_path: Path) -> None:
    example = blocks("python")[0]
    done = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, check=False,
        env={"BILLING_CREDITS_DB": str(tmp_path / "readme.db"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("lcg_")
    assert lines[0].endswith(" active 50.00 USD")
    assert "invalid CreditGrant: amount: must be greater than zero" in lines
    assert lines[-1] == "nearest {'0.5': '0', '1': '1', '100': '100'}"


def test_ci_runs_the_readme_commands() -> None:
    setup, tests = (block.strip() for block in blocks("console")[:2])
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup in ci
    assert tests in ci
