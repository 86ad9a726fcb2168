"""Every Python snippet in README.md and docs/writing-a-provider.md runs (issue 10).

A snippet defining a ``Test…(ProviderConformance)`` class runs under pytest; any other runs as
a script. A ``# …`` line right after a ``print(…)`` line is the output it must print.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "docs/writing-a-provider.md")


def snippets() -> list[tuple[str, int, str]]:
    found = []
    for name in DOCUMENTS:
        text = (ROOT / name).read_text()
        for index, block in enumerate(re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)):
            found.append((name, index, block))
    return found


def expected_output(block: str) -> list[str]:
    lines = block.splitlines()
    return [after[2:] for before, after in itertools.pairwise(lines)
            if before.lstrip().startswith("print(") and after.startswith("# ")]


@pytest.mark.parametrize(("document", "index", "block"), snippets(),
                         ids=[f"{d}-{i}" for d, i, _ in snippets()])
def test_snippet_runs(document: str, index: int, block: str, tmp_path: Path) -> None:
    env = {"BILLING_CREDITS_DB": str(tmp_path / "snippet.db"), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    if "ProviderConformance" in block and re.search(r"^class Test", block, flags=re.MULTILINE):
        module = tmp_path / f"test_snippet_{index}.py"
        module.write_text(block)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", str(module), "-q", "-p", "no:cacheprovider",
             "--rootdir", str(tmp_path)],
            capture_output=True, text=True, check=False, cwd=tmp_path, env=env, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert " passed" in done.stdout
        return
    done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                          check=False, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    for line in expected_output(block):
        assert line in done.stdout.splitlines(), (line, done.stdout)


def test_every_document_has_snippets() -> None:
    assert {d for d, _, _ in snippets()} == set(DOCUMENTS)
