"""A schema-2 database (written by the release before schema 3) upgraded in place: nothing lost
(issue 16, point 3). ``fixtures/schema2.db`` and ``fixtures/schema2.json`` were made by
``fixtures/make_schema2.py`` run with that release: the JSON is what it read from the file."""

from __future__ import annotations

import decimal
import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import billing_credits as bc
from billing_credits.local import LocalProvider, _store
from billing_credits.local._provider import open_store

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "schema2.json").read_text())
MADE_AT = datetime.fromisoformat(EXPECTED["made_at"])


@pytest.fixture
def old(tmp_path: Path) -> Path:
    path = tmp_path / "schema2.db"
    shutil.copy(FIXTURES / "schema2.db", path)
    return path


def version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        found: int = db.execute("PRAGMA user_version").fetchone()[0]
    return found


def test_the_fixture_is_schema_2(old: Path) -> None:
    assert version(old) == 2 == EXPECTED["schema_version"]
    with sqlite3.connect(old) as db:
        kinds = dict(db.execute("SELECT kind, count(*) FROM ledger GROUP BY kind").fetchall())
        assert kinds == {"granted": 8, "consumed": 13, "voided": 1, "expired": 1}
        assert db.execute("SELECT count(*) FROM usage").fetchone()[0] == 10


def exact(value: Any) -> Any:
    """JSON with every decimal text read as a ``Decimal``: ``50`` and ``50.00`` are one amount
    (a balance is now what is left in a lot plus what was consumed after the moment asked,
    so its trailing zeros may differ from the old release's sum of the history)."""
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exact(v) for v in value]
    if isinstance(value, str):
        try:
            return Decimal(value)
        except decimal.InvalidOperation:
            return value
    return value


def known(got: Any, expected: Any) -> Any:
    """``got`` with only the fields the old release knew (models gain fields; a field the old
    release wrote must read the same)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        return {k: known(got.get(k), v) for k, v in expected.items()}
    if isinstance(expected, list) and isinstance(got, list):
        return [known(g, e) for g, e in zip(got, expected, strict=False)] + got[len(expected):]
    return got


def parts_as_amounts(balance: dict[str, Any]) -> dict[str, Any]:
    """A balance as the old release wrote it: its parts' ``usable`` and ``pending`` were bare
    amounts then (they are ``Money`` since issue 20.6); the amount must read the same."""
    for part in balance.get("parts", []):
        for field in ("usable", "pending"):
            if isinstance(part.get(field), dict):
                part[field] = part[field]["amount"]
    return balance


def test_upgraded_it_reads_what_the_old_release_read(old: Path) -> None:
    with LocalProvider(old, clock=lambda: MADE_AT) as local:
        assert version(old) == 3
        grants = [g.model_dump(mode="json") for g in local.list_grants()]
        assert known(grants, EXPECTED["grants"]) == EXPECTED["grants"]
        for customer, moments in EXPECTED["balances"].items():
            for moment, balances in moments.items():
                found = local.get_balance(customer, at=datetime.fromisoformat(moment))
                dumped = [parts_as_amounts(b.model_dump(mode="json")) for b in found]
                assert exact(known(dumped, balances)) == exact(balances), (customer, moment)
            ledger = [e.model_dump(mode="json") for e in local.list_ledger(customer)]
            assert known(ledger, EXPECTED["ledgers"][customer]) == EXPECTED["ledgers"][customer]


def usage_of(entries: list[dict[str, Any]]) -> tuple[str, bc.Money]:
    money = bc.Money.model_validate(entries[0]["amount"])
    total = bc.exact_sum(Decimal(e["amount"]["amount"]) for e in entries)
    return entries[0]["customer_id"], money.with_amount(-total)


def test_replaying_an_old_reference_returns_its_original_entries(old: Path) -> None:
    with LocalProvider(old, clock=lambda: MADE_AT) as local:
        for reference, entries in EXPECTED["replies"].items():
            customer, amount = usage_of(entries)
            product = "gpu" if reference == "a-gpu" else None
            again = local.consume(customer, amount, reference=reference, product_id=product)
            # the old release answered a consume without running balances (issue 20.6): the
            # reply now carries the same running balance the ledger shows for each entry
            ledger = {e.vendor_id: e.running_balance for e in local.list_ledger(customer)}
            assert [e.running_balance for e in again] == [ledger[e.vendor_id] for e in again]
            replied = [e.model_dump(mode="json") for e in again]
            for got, old_entry in zip(replied, entries, strict=True):
                if old_entry.get("running_balance") is None:
                    got["running_balance"] = None
            assert known(replied, entries) == entries, reference
        with pytest.raises(bc.ConflictError, match="applied before"):
            local.consume("alice", bc.Money(amount=Decimal("99"), currency="USD"),
                          reference="a-1")
        # ... and what is left is spent in the documented order from the upgraded lots.
        [balance] = local.get_balance("alice")
        scoped = EXPECTED["ids"]["scoped"]
        gpu = bc.exact_sum(p.usable.amount for p in balance.parts if p.grant_id == scoped)
        rest = balance.usable.amount - gpu
        spent = local.consume("alice", balance.usable.with_amount(rest), reference="all-of-it")
        assert scoped not in {e.grant_id for e in spent}
        assert bc.exact_sum(-e.amount.amount for e in spent) == rest
        [entry] = local.consume("alice", balance.usable.with_amount(gpu), reference="gpu-rest",
                                product_id="gpu")
        assert entry.grant_id == scoped
        assert local.get_balance("alice")[0].usable.amount == 0


def test_the_upgrade_is_one_transaction(old: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, lots: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(_store.Tx, "add_lots", broken)
    with pytest.raises(bc.ConfigurationError, match="disk I/O error"):
        LocalProvider(old)
    assert version(old) == 2
    with sqlite3.connect(old) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "lots" not in tables
        assert "meta" not in tables
        columns = [r[1] for r in db.execute("PRAGMA table_info(grants)")]
        assert "consumed_json" in columns
    monkeypatch.undo()
    with LocalProvider(old, clock=lambda: MADE_AT) as local:
        grants = [g.model_dump(mode="json") for g in local.list_grants()]
        assert known(grants, EXPECTED["grants"]) == EXPECTED["grants"]


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(old: Path) -> None:
    before = old.read_bytes()
    store = open_store(old, lambda: MADE_AT, upgrade=False)
    steps = store.upgrade_steps()
    store.close()
    assert old.read_bytes() == before
    text = "\n".join(steps)
    assert "schema 2: upgrade to 3 in one transaction" in text
    assert "8 grants" in text
    assert "23 ledger entries and 10 usage references" in text
    LocalProvider(old).close()
    store = open_store(old, lambda: MADE_AT, upgrade=False)
    assert store.upgrade_steps() == [f"SQLite file {old} is at schema 3: nothing to do"]
    store.close()


def test_a_database_newer_than_the_code_is_refused(old: Path) -> None:
    LocalProvider(old).close()
    with sqlite3.connect(old) as db:
        db.execute("PRAGMA user_version = 4")
    with pytest.raises(bc.ConfigurationError, match="schema version 4; this billing-credits "
                                                    "reads up to 3: upgrade billing-credits"):
        LocalProvider(old)
    store = open_store(old, lambda: MADE_AT, upgrade=False)
    with pytest.raises(bc.ConfigurationError, match="schema version 4"):
        store.upgrade_steps()
    store.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "billing_credits", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_db_upgrade_on_the_command_line(old: Path) -> None:
    before = old.read_bytes()
    dry = cli("db", "upgrade", "--dry-run", "-s", f"path={old}")
    assert dry.returncode == 0, dry.stderr
    assert "is at schema 2: upgrade to 3 in one transaction" in dry.stdout
    assert "kept as they are: 23 ledger entries and 10 usage references" in dry.stdout
    assert old.read_bytes() == before
    done = cli("db", "upgrade", "-s", f"path={old}", "--json")
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert steps[-1] == f"done: {old.resolve()} is at schema 3"
    assert version(old) == 3
    again = cli("db", "upgrade", "-s", f"path={old}")
    assert again.stdout.strip() == f"SQLite file {old} is at schema 3: nothing to do"
    with sqlite3.connect(old) as db:
        db.execute("PRAGMA user_version = 7")
    newer = cli("db", "upgrade", "--dry-run", "-s", f"path={old}")
    assert newer.returncode == 2
    assert "schema version 7; this billing-credits reads up to 3" in newer.stderr


def test_db_upgrade_on_postgresql(pg_url: str) -> None:
    fresh = cli("db", "upgrade", "--dry-run", "-s", f"url={pg_url}")
    assert fresh.returncode == 0, fresh.stderr
    assert "create schema 3" in fresh.stdout
    assert cli("db", "upgrade", "-s", f"url={pg_url}").returncode == 0
    done = cli("db", "upgrade", "--dry-run", "-s", f"url={pg_url}")
    assert "is at schema 3: nothing to do" in done.stdout
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("UPDATE meta SET value = '9' WHERE name = 'schema_version'")
    with pytest.raises(bc.ConfigurationError, match="schema version 9"):
        LocalProvider(url=pg_url)


def test_a_row_the_model_cannot_read_does_not_stop_the_upgrade(old: Path) -> None:
    doomed = EXPECTED["ids"]["doomed"]
    with sqlite3.connect(old) as db:
        db.execute("UPDATE grants SET request_json = '{\"amount\": \"not money\"}' WHERE id = ?",
                   (doomed,))
    with LocalProvider(old, clock=lambda: MADE_AT) as local:
        assert version(old) == 3
        with pytest.raises(bc.BillingCreditsError, match=f"stored grant {doomed}"):
            local.get_grant(doomed)
        kept = [g for g in EXPECTED["grants"] if g["id"] != doomed]
        assert known([local.get_grant(g["id"]).model_dump(mode="json") for g in kept],
                     kept) == kept
