"""The command line: real commands against the local provider, and clean refusals."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from billing_credits.cli import cli


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("BILLING_CREDITS_DB", str(path))
    return path


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


CREATE = ["grants", "create", "--customer", "cus_1", "--amount", "25.00", "--currency", "usd",
          "--name", "Welcome", "--priority", "0.5", "--idempotency-key", "w-1",
          "--metadata", "order=42", "--expires-at", "2030-01-01T00:00:00+02:00"]


def test_create_then_list_get_void_expire(db: Path) -> None:
    code, out, _ = run(*CREATE, "--json")
    assert code == 0
    created = json.loads(out)
    assert created["amount"] == {"amount": "25.00", "currency": "USD", "unit": None}
    assert created["priority"] == "0.5"
    assert created["expires_at"] == "2029-12-31T22:00:00Z"
    assert created["metadata"] == {"order": "42"}

    code, out, _ = run(*CREATE, "--json")  # same key: the same grant, not a second one
    assert json.loads(out)["id"] == created["id"]

    code, out, _ = run("grants", "create", "--customer", "cus_2", "--amount", "3",
                       "--currency", "JPY", "--json")
    other = json.loads(out)

    code, out, _ = run("grants", "list", "--json", "--page-size", "1")
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == [created["id"], other["id"]]

    code, out, _ = run("grants", "list", "--customer", "cus_1")
    assert code == 0
    assert created["id"] in out
    assert other["id"] not in out
    assert "1 grant" in out

    code, out, _ = run("grants", "expire", created["id"], "--json")
    assert code == 0
    assert json.loads(out)["status"] == "expired"
    code, out, _ = run("grants", "void", other["id"], "--json")
    assert json.loads(out)["status"] == "voided"
    code, out, _ = run("grants", "get", other["id"], "--json")
    assert json.loads(out)["balance"]["amount"] == "0"


def test_create_from_json_keeps_a_schedule(db: Path) -> None:
    grant = {
        "customer_id": "cus_9", "amount": {"amount": "30", "unit": {"id": "ccu", "name": "CCU"}},
        "schedule": [
            {"amount": "10", "starts_at": "2026-01-01T00:00:00Z", "ends_before": "2026-02-01T00:00:00Z"},
            {"amount": "20", "starts_at": "2026-02-01T00:00:00Z", "ends_before": "2036-03-01T00:00:00Z"},
        ],
    }
    code, out, _ = run("grants", "create", "--from-json", "-", "--json", input=json.dumps(grant))
    assert code == 0, out
    created = json.loads(out)
    assert [s["amount"] for s in created["schedule"]] == ["10", "20"]
    assert created["amount"]["unit"] == {"id": "ccu", "name": "CCU"}
    assert created["effective_at"] == "2026-01-01T00:00:00Z"


REFUSED = {
    "naive datetime": (["--effective-at", "2026-01-01T00:00:00"], "effective_at"),
    "expiry before effect": (["--effective-at", "2026-02-01T00:00:00Z",
                              "--expires-at", "2026-01-01T00:00:00Z"], "expires_at"),
    "zero amount": (["--amount", "0"], "amount"),
    "negative amount": (["--amount", "-5"], "amount"),
    "NaN amount": (["--amount", "NaN"], "--amount"),  # in the CLI's words
    "infinite amount": (["--amount", "Infinity"], "--amount"),
    "long idempotency key": (["--idempotency-key", "k" * 129], "idempotency_key"),
    "unknown currency": (["--currency", "XYZ"], "amount.currency"),
    "empty customer": (["--customer", ""], "customer_id"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("existing", [False, True], ids=["new-db", "existing-db"])
def test_bad_input_is_one_line_nonzero_and_writes_nothing(db: Path, case: str, existing: bool) -> None:
    if existing:
        assert run("grants", "create", "--customer", "c", "--amount", "1", "--currency", "USD")[0] == 0
    before = digest(db)
    extra, field = REFUSED[case]
    options = {"--customer": "cus_1", "--amount": "10", "--currency": "USD"}
    options.update(zip(extra[::2], extra[1::2], strict=True))
    code, out, err = run("grants", "create", *[part for pair in options.items() for part in pair])
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert f"{field}:" in lines[0]
    assert "Traceback" not in err
    assert digest(db) == before


def test_unknown_provider_lists_installed_ones(db: Path) -> None:
    code, _, err = run("grants", "list", "--provider", "nope")
    assert code == 2
    assert "unknown provider 'nope'" in err
    assert "local" in err


def test_missing_grant_is_a_provider_error(db: Path) -> None:
    code, _, err = run("grants", "get", "lcg_missing")
    assert code == 1
    assert err.strip() == "error: no grant 'lcg_missing' (provider=local, status=404)"


def test_providers_shows_capabilities(db: Path) -> None:
    code, out, _ = run("providers", "--json")
    assert code == 0
    listed = {json.loads(line)["name"]: json.loads(line) for line in out.splitlines()}
    assert listed["local"]["capabilities"]["custom credit units"] == "yes"
    assert listed["local"]["settings"][0]["env"] == "BILLING_CREDITS_DB"
    code, out, _ = run("providers")
    assert "local" in out
    code, out, _ = run("providers", "local")
    assert "schedule segments" in out


def test_console_script_runs_without_traceback(db: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "billing_credits", "grants", "create", "--customer", "c",
         "--amount", "1", "--currency", "USD", "--effective-at", "2026-01-01"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "effective_at" in done.stderr
