"""Issues 9.2 and 9.5 (CLI side): no bad input ever gets a traceback.

Each case is one command line with something wrong in it: amounts, dates, currencies,
options missing or unknown, bad files (missing, binary, not UTF-8, not JSON, deeply nested),
bad provider settings, bad map and plan files, outputs into missing folders, an unusable
database. Each must print exactly one line on stderr starting ``error:``, no traceback, exit
with the expected code (2 for invalid input), and write nothing: the database file is
unchanged and no output file appears.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from billing_credits.cli import cli

CREATE = ["grants", "create", "--customer", "cus_1", "--currency", "USD"]
OK_CREATE = [*CREATE, "--amount", "10", "--idempotency-key", "seed-1"]


def _files(folder: Path) -> None:
    """The bad files the cases name (relative to the test's folder)."""
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00\x01binary\x80")
    (folder / "bad.json").write_text("{not json")
    (folder / "array.json").write_text("[1, 2, 3]")
    (folder / "nested.json").write_text("[" * 100_000)
    (folder / "empty.json").write_text("")
    (folder / "grant-surrogate.json").write_text(
        json.dumps({"customer_id": "cus_\ud800", "amount": {"amount": "1", "currency": "USD"}}))
    (folder / "scope-string.json").write_text(json.dumps({"prod_api": "price_1Abc"}))
    (folder / "scope-array.json").write_text(json.dumps(["price_1Abc"]))
    (folder / "customers-number.json").write_text(json.dumps({"cus_1": 5}))
    (folder / "customers.csv").write_bytes(b"cus_1,\xff\xfe\n")
    (folder / "one-column.csv").write_text("cus_1\ncus_2\n")
    (folder / "plan-binary.jsonl").write_bytes(b"\x00\xff\xfe" * 50)
    (folder / "plan-bad.jsonl").write_text("{\n")
    (folder / "plan-empty.jsonl").write_text("")
    (folder / "plan-other.jsonl").write_text(json.dumps({"kind": "nonsense"}) + "\n")
    (folder / "a-folder").mkdir()
    huge = "1e9999999999999999999"  # issue 18.8: a number no Decimal holds
    (folder / "grant-huge.json").write_text(
        '{"customer_id": "cus_1", "amount": {"amount": ' + huge + ', "currency": "USD"}}')
    (folder / "plan-huge.jsonl").write_text('{"kind": "header", "x": ' + huge + "}\n")
    (folder / "usage-huge.jsonl").write_text(
        '{"customer_id": "cus_1", "at": "2026-01-01T00:00:00Z", "amount": ' + huge
        + ', "currency": "USD"}\n')
    (folder / "usage-huge.csv").write_text(
        f"customer_id,at,amount,currency\ncus_1,2026-01-01T00:00:00Z,{huge},USD\n")
    (folder / "usage-long-line.csv").write_text("customer_id,at,amount\n" + "x" * (2 << 20))


CASES: list[tuple[str, list[str], int]] = [
    ("amount not a number", [*CREATE, "--amount", "abc"], 2),
    ("amount NaN", [*CREATE, "--amount", "NaN"], 2),
    ("amount huge exponent", [*CREATE, "--amount", "1e999999999"], 2),
    ("amount tiny", [*CREATE, "--amount", "1E-200"], 2),
    ("amount zero", [*CREATE, "--amount", "0"], 2),
    ("amount negative", [*CREATE, "--amount", "-5"], 2),
    ("amount 50 digits", [*CREATE, "--amount", "1" * 50], 2),
    ("currency unknown", ["grants", "create", "--customer", "c", "--amount", "1",
                          "--currency", "XYZ"], 2),
    ("currency empty", ["grants", "create", "--customer", "c", "--amount", "1",
                        "--currency", ""], 2),
    ("currency testing code", ["grants", "create", "--customer", "c", "--amount", "1",
                               "--currency", "XTS"], 2),
    ("date invalid", [*CREATE, "--amount", "1", "--effective-at", "2026-13-01T00:00:00Z"], 2),
    ("date overflowing UTC", [*CREATE, "--amount", "1", "--expires-at",
                              "9999-12-31T23:59:59-01:00"], 2),
    ("date underflowing UTC", [*CREATE, "--amount", "1", "--effective-at",
                               "0001-01-01T00:00:00+01:00"], 2),
    ("date words", [*CREATE, "--amount", "1", "--expires-at", "yesterday"], 2),
    ("date naive", [*CREATE, "--amount", "1", "--expires-at", "2030-01-01T00:00:00"], 2),
    ("expiry before start", [*CREATE, "--amount", "1", "--effective-at", "2030-01-01T00:00:00Z",
                             "--expires-at", "2029-01-01T00:00:00Z"], 2),
    ("priority words", [*CREATE, "--amount", "1", "--priority", "high"], 2),
    ("priority huge", [*CREATE, "--amount", "1", "--priority", "1e999999"], 2),
    ("metadata without =", [*CREATE, "--amount", "1", "--metadata", "novalue"], 2),
    ("idempotency key blank", [*CREATE, "--amount", "1", "--idempotency-key", "  "], 2),
    ("idempotency key too long", [*CREATE, "--amount", "1", "--idempotency-key", "k" * 200], 2),
    ("name lone surrogate", [*CREATE, "--amount", "1", "--name", "bad \ud800 name"], 2),
    ("category unknown", [*CREATE, "--amount", "1", "--category", "free"], 2),
    ("missing customer", ["grants", "create", "--amount", "1", "--currency", "USD"], 2),
    ("unknown option", ["grants", "create", "--bogus"], 2),
    ("unknown command", ["grants", "frobnicate"], 2),
    ("from-json missing", ["grants", "create", "--from-json", "missing.json"], 2),
    ("from-json binary", ["grants", "create", "--from-json", "binary.json"], 2),
    ("from-json bad JSON", ["grants", "create", "--from-json", "bad.json"], 2),
    ("from-json array", ["grants", "create", "--from-json", "array.json"], 2),
    ("from-json deeply nested", ["grants", "create", "--from-json", "nested.json"], 2),
    ("from-json empty", ["grants", "create", "--from-json", "empty.json"], 2),
    ("from-json surrogate", ["grants", "create", "--from-json", "grant-surrogate.json"], 2),
    ("from-json a folder", ["grants", "create", "--from-json", "a-folder"], 2),
    ("page size zero", ["grants", "list", "--page-size", "0"], 2),
    ("limit negative", ["grants", "list", "--limit", "-1"], 2),
    ("provider unknown", ["grants", "list", "-p", "nope"], 2),
    ("setting without =", ["grants", "list", "-s", "novalue"], 2),
    ("setting unknown", ["grants", "list", "-s", "colour=blue"], 2),
    ("get without id", ["grants", "get"], 2),
    ("stripe without key", ["grants", "list", "-p", "stripe"], 2),
    ("stripe rate_limit nan", ["grants", "list", "-p", "stripe", "-s", "api_key=sk_test_x1234567",
                               "-s", "rate_limit=nan"], 2),
    ("stripe timeout words", ["grants", "list", "-p", "stripe", "-s", "api_key=sk_test_x1234567",
                              "-s", "timeout=soon"], 2),
    ("stripe max_retries words", ["grants", "list", "-p", "stripe", "-s",
                                  "api_key=sk_test_x1234567", "-s", "max_retries=many"], 2),
    ("stripe plain http", ["grants", "list", "-p", "stripe", "-s", "api_key=sk_test_x1234567",
                           "-s", "base_url=http://api.example.com"], 2),
    ("metronome timeout words", ["grants", "list", "-p", "metronome-plans", "-s",
                                 "bearer_token=tok_abcdef", "-s", "timeout=abc"], 2),
    ("metronome max_retries negative", ["grants", "list", "-p", "metronome-plans", "-s",
                                        "bearer_token=tok_abcdef", "-s", "max_retries=-1"], 2),
    ("metronome rate_limit words", ["grants", "list", "-p", "metronome-plans", "-s",
                                    "bearer_token=tok_abcdef", "-s", "rate_limit=fast"], 2),
    ("metronome far_future words", ["grants", "list", "-p", "metronome-plans", "-s",
                                    "bearer_token=tok_abcdef", "-s", "far_future=someday"], 2),
    ("metronome credit_types", ["grants", "list", "-p", "metronome-plans", "-s",
                                "bearer_token=tok_abcdef", "-s", "credit_types=EUR"], 2),
    ("metronome base_url not a URL", ["grants", "list", "-p", "metronome-plans", "-s",
                                      "bearer_token=tok_abcdef", "-s", "base_url=ftp://x"], 2),
    ("metronome plain http", ["grants", "list", "-p", "metronome-plans", "-s",
                              "bearer_token=tok_abcdef", "-s", "base_url=http://example.com"], 2),
    ("import missing file", ["import", "missing.jsonl"], 2),
    ("import a folder", ["import", "a-folder"], 2),
    ("export into a missing folder", ["export", "-o", "no/such/folder/out.jsonl"], 2),
    ("export onto a folder", ["export", "-o", "a-folder"], 2),
    ("plan customer map missing", ["migrate", "plan", "--from", "local", "--to", "local",
                                   "--customer-map", "missing.csv", "-o", "plan.jsonl"], 2),
    ("plan customer map bad JSON", ["migrate", "plan", "--from", "local", "--to", "local",
                                    "--customer-map", "bad.json", "-o", "plan.jsonl"], 2),
    ("plan customer map not UTF-8", ["migrate", "plan", "--from", "local", "--to", "local",
                                     "--customer-map", "customers.csv", "-o", "plan.jsonl"], 2),
    ("plan customer map number", ["migrate", "plan", "--from", "local", "--to", "local",
                                  "--customer-map", "customers-number.json", "-o", "plan.jsonl"], 2),
    ("plan customer map one column", ["migrate", "plan", "--from", "local", "--to", "local",
                                      "--customer-map", "one-column.csv", "-o", "plan.jsonl"], 2),
    ("plan scope map string", ["migrate", "plan", "--from", "local", "--to", "local",
                               "--scope-map", "scope-string.json", "-o", "plan.jsonl"], 2),
    ("plan scope map array", ["migrate", "plan", "--from", "local", "--to", "local",
                              "--scope-map", "scope-array.json", "-o", "plan.jsonl"], 2),
    ("plan scope map binary", ["migrate", "plan", "--from", "local", "--to", "local",
                               "--scope-map", "binary.json", "-o", "plan.jsonl"], 2),
    ("plan into a missing folder", ["migrate", "plan", "--from", "local", "--to", "local",
                                    "-o", "no/such/plan.jsonl"], 2),
    ("plan from unknown", ["migrate", "plan", "--from", "nope", "--to", "local",
                           "-o", "plan.jsonl"], 2),
    ("plan without --to", ["migrate", "plan", "--from", "local", "-o", "plan.jsonl"], 2),
    ("plan bad source setting", ["migrate", "plan", "--from", "local", "--to", "local",
                                 "-F", "x", "-o", "plan.jsonl"], 2),
    ("apply missing plan", ["migrate", "apply", "missing.jsonl"], 2),
    ("apply binary plan", ["migrate", "apply", "plan-binary.jsonl"], 2),
    ("apply bad JSON plan", ["migrate", "apply", "plan-bad.jsonl"], 1),
    ("apply empty plan", ["migrate", "apply", "plan-empty.jsonl"], 1),
    ("apply plan of other lines", ["migrate", "apply", "plan-other.jsonl"], 1),
    ("apply concurrency zero", ["migrate", "apply", "plan-empty.jsonl", "--concurrency", "0"], 2),
    ("apply retire unknown", ["migrate", "apply", "plan-empty.jsonl", "--retire", "burn"], 2),
    ("verify binary plan", ["migrate", "verify", "plan-binary.jsonl"], 2),
    ("verify bad JSON plan", ["migrate", "verify", "plan-bad.jsonl"], 1),
    # issue 18.7: inputs with no newline end with a clear error, bounded
    ("import /dev/zero", ["import", "/dev/zero"], 2),
    ("from-json /dev/zero", ["grants", "create", "--from-json", "/dev/zero"], 2),
    ("simulate usage /dev/zero", ["simulate", "--usage", "/dev/zero"], 2),
    ("apply /dev/zero", ["migrate", "apply", "/dev/zero"], 2),
    ("verify /dev/zero", ["migrate", "verify", "/dev/zero"], 2),
    ("plan customer map /dev/zero", ["migrate", "plan", "--from", "local", "--to", "local",
                                     "--customer-map", "/dev/zero", "-o", "plan.jsonl"], 2),
    ("simulate usage line over 1 MiB", ["simulate", "--usage", "usage-long-line.csv"], 2),
    # issue 18.8: numbers no Decimal holds
    ("from-json huge exponent", ["grants", "create", "--from-json", "grant-huge.json"], 2),
    ("apply plan huge exponent", ["migrate", "apply", "plan-huge.jsonl"], 1),
    ("verify plan huge exponent", ["migrate", "verify", "plan-huge.jsonl"], 1),
    ("simulate usage JSON huge exponent", ["simulate", "--usage", "usage-huge.jsonl"], 2),
    ("simulate usage CSV huge exponent", ["simulate", "--usage", "usage-huge.csv"], 2),
    ("setup-free: version typo", ["--verison"], 2),
]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    _files(tmp_path)
    return tmp_path


def _state(folder: Path, db: Path) -> tuple[str | None, list[str]]:
    digest = hashlib.sha256(db.read_bytes()).hexdigest() if db.exists() else None
    return digest, sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(("name", "args", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(
    name: str, args: list[str], code: int, folder: Path, tmp_path: Path
) -> None:
    database = tmp_path / "credits.db"  # the conftest's isolated database
    runner = CliRunner()
    seeded = runner.invoke(cli, OK_CREATE)
    assert seeded.exit_code == 0, seeded.stderr
    assert database.exists()
    before = _state(folder, database)
    result = runner.invoke(cli, args)
    lines = result.stderr.splitlines()
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in result.stderr  # nothing escaped BillingCreditsError
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert _state(folder, database) == before  # nothing written, nothing half-written


def test_internal_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever escapes the hierarchy is still one line (``internal error``), exit 1."""
    import billing_credits.local._provider as local

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("sk_test_0123456789abcdef")

    monkeypatch.setattr(local.LocalProvider, "list_grants", broken)
    result = CliRunner().invoke(cli, ["grants", "list"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: internal error: KeyError: '[REDACTED]'"]


def test_database_in_a_missing_folder_is_one_line(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BILLING_CREDITS_DB", str(blocker / "sub" / "credits.db"))
    result = CliRunner().invoke(cli, ["grants", "list"])
    assert result.exit_code in (1, 2)
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ")


@pytest.mark.parametrize("args", [["grants", "create", "--from-json", "binary.json"],
                                  ["migrate", "apply", "plan-binary.jsonl"]])
def test_console_script_never_prints_a_traceback(args: list[str], folder: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "billing_credits", *args], capture_output=True,
                          text=True, check=False, cwd=folder)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1

