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


def test_readme_command_line_block_runs(tmp_path: Path) -> None:
    """The README's "Command line" commands run as written, against a fresh local database."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL)[0]
    (tmp_path / "grant.json").write_text(
        '{"customer_id": "cus_2", "amount": {"amount": "30", "currency": "EUR"},'
        ' "schedule": [{"amount": "10", "starts_at": "2026-01-01T00:00:00Z",'
        ' "ends_before": "2026-02-01T00:00:00Z"}, {"amount": "20",'
        ' "starts_at": "2026-02-01T00:00:00Z", "ends_before": "2031-01-01T00:00:00Z"}],'
        ' "idempotency_key": "readme-json"}')
    # As written, in a fresh shell of a clone after the quickstart: its .venv, a new user's PATH.
    venv = ROOT / ".venv" if (ROOT / ".venv" / "bin" / "billing-credits").exists() else None
    if venv is None and sys.prefix == sys.base_prefix:
        pytest.skip("no .venv (run scripts/quickstart.sh) and not running in a virtualenv")
    (tmp_path / ".venv").symlink_to(venv or Path(sys.prefix))
    env = {"BILLING_CREDITS_DB": str(tmp_path / "credits.db"), "HOME": str(tmp_path),
           "PATH": "/usr/local/bin:/usr/bin:/bin"}
    done = subprocess.run(["bash", "-c", "set -e\n" + block], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "created 2, already there 0" in done.stdout
    assert len((tmp_path / "grants.jsonl").read_text().splitlines()) == 2


def test_guide_toml_matches_the_example_plugin() -> None:
    guide = (ROOT / "docs/writing-a-provider.md").read_text()
    pyproject = (ROOT / "examples/billing-credits-acme/pyproject.toml").read_text()
    for block in re.findall(r"```toml\n(.*?)```", guide, flags=re.DOTALL):
        for line in block.splitlines():
            if line.strip() and not line.startswith("dependencies"):
                assert line in pyproject, line
