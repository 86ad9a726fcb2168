"""The command line for balances, the ledger, updates and consumption (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from billing_credits.cli import cli


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("BILLING_CREDITS_DB", str(path))
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def create(customer: str, amount: str, *extra: str) -> str:
    code, out, err = run("grants", "create", "--customer", customer, "--amount", amount,
                         "--currency", "USD", "--effective-at", "2026-01-01T00:00:00Z",
                         *extra, "--json")
    assert code == 0, err
    grant_id: str = json.loads(out)["id"]
    return grant_id


def test_consume_balance_ledger(db: Path) -> None:
    first = create("cus_1", "10.00", "--priority", "0")
    second = create("cus_1", "5.00", "--priority", "1")
    code, out, _ = run("consume", "cus_1", "12.25", "--currency", "USD", "--reference", "inv-1",
                       "--json")
    assert code == 0
    entries = [json.loads(line) for line in out.splitlines()]
    assert [(e["grant_id"], e["amount"]["amount"]) for e in entries] == [
        (first, "-10.00"), (second, "-2.25")]
    code, again, _ = run("consume", "cus_1", "12.25", "--currency", "USD", "--reference",
                         "inv-1", "--json")
    assert (code, again) == (0, out), "one reference is applied once"

    code, out, _ = run("balance", "cus_1", "--json")
    [balance] = [json.loads(line) for line in out.splitlines()]
    assert balance["usable"] == {"amount": "2.75", "currency": "USD", "unit": None}
    code, out, _ = run("balance", "cus_1")
    assert "usable 2.75 USD" in out
    assert second in out
    code, out, _ = run("balance", "cus_1", "--at", "2025-12-31T00:00:00Z", "--json")
    assert json.loads(out)["usable"]["amount"] == "0"

    code, out, _ = run("ledger", "cus_1", "--json")
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert kinds == ["granted", "granted", "consumed", "consumed"]
    code, out, _ = run("ledger", "cus_1", "--grant", second)
    assert code == 0
    assert "2 entries" in out
    assert "-2.25 USD" in out
    code, out, _ = run("ledger", "cus_1", "--since", "2100-01-01T00:00:00Z")
    assert "0 entries" in out


def test_consume_refusals(db: Path) -> None:
    create("cus_1", "1.00")
    code, _, err = run("consume", "cus_1", "2", "--currency", "USD", "--reference", "r")
    assert code == 1
    assert "insufficient credit" in err
    code, _, err = run("consume", "cus_1", "1", "--reference", "r")
    assert code == 2
    assert "exactly one of --currency and --unit" in err
    code, _, err = run("consume", "cus_1", "--currency", "USD", "--reference", "r", "--", "-1")
    assert code == 2
    assert "greater than zero" in err
    code, _, err = run("balance", "cus_1", "--at", "2026-01-01")
    assert code == 2
    assert "timezone" in err


def test_grants_update(db: Path) -> None:
    grant_id = create("cus_1", "3.00", "--expires-at", "2027-01-01T00:00:00Z")
    code, out, err = run("grants", "update", grant_id, "--expires-at", "2028-01-01T00:00:00Z",
                         "--name", "Renewed", "--metadata", "ticket=T-1", "--json")
    assert code == 0, err
    updated = json.loads(out)
    assert (updated["expires_at"], updated["name"], updated["metadata"]) == (
        "2028-01-01T00:00:00Z", "Renewed", {"ticket": "T-1"})
    code, out, _ = run("grants", "update", grant_id, "--expires-at", "never", "--json")
    assert json.loads(out)["expires_at"] is None
    code, _, err = run("grants", "update", grant_id)
    assert code == 2
    assert "give --expires-at" in err
    code, _, err = run("grants", "update", "lcg_missing", "--name", "x")
    assert code == 1


def test_readme_ledger_example_runs_verbatim(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
                   if "consume" in block)
    done = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, check=False,
        env={"BILLING_CREDITS_DB": str(tmp_path / "readme.db"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("consumed lcg_")
    assert lines[0].endswith(" -10.00 USD")
    assert lines[1].endswith(" -2.25 USD")
    assert lines[2] == "2.75 USD ['2.75 USD']"
