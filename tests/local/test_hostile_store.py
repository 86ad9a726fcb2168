"""Issue 18.8 (local provider): from Python, a database path that cannot be used, or rows
corrupted behind the provider's back, are ``BillingCreditsError`` naming the input, never a
``sqlite3``/OS/JSON/decimal exception; one corrupted grant does not stop a listing."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

import billing_credits as bc


@pytest.fixture
def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)
    return path


def _paths(tmp_path: Path, garbage: Path) -> dict[str, str]:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return {"garbage file": str(garbage), "a directory": str(tmp_path),
            "NUL in the path": str(tmp_path / "a\x00b.db"),
            "parent is a file": str(blocker / "sub" / "credits.db")}


@pytest.mark.parametrize("case", ["garbage file", "a directory", "NUL in the path",
                                  "parent is a file"])
def test_an_unusable_path_is_a_project_error_naming_it(case: str, tmp_path: Path,
                                                       garbage: Path) -> None:
    path = _paths(tmp_path, garbage)[case]
    with pytest.raises(bc.BillingCreditsError) as caught:
        bc.get_provider("local", path=path)
    assert isinstance(caught.value, bc.ConfigurationError)
    shown = path.replace("\x00", "\\x00")
    assert shown in str(caught.value) or repr(path)[1:-1] in str(caught.value), str(caught.value)


def _stored(tmp_path: Path) -> tuple[bc.Provider, Path, list[str]]:
    path = tmp_path / "l.db"
    provider = bc.get_provider("local", path=str(path))
    ids = [provider.create_grant({"customer_id": "cus_1", "idempotency_key": f"k{i}",
                                  "amount": {"amount": "5", "currency": "USD"}}).id or ""
           for i in range(3)]
    return provider, path, ids


def _corrupt(path: Path, grant_id: str, column: str, value: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE grants SET {column} = ? WHERE id = ?", (value, grant_id))


@pytest.mark.parametrize(("column", "value"), [
    ("request_json", "{not json"),
    ("request_json", '{"amount": {"amount": "1e9999999999999999999", "currency": "USD"}}'),
    ("request_json", "[1, 2]"),
    ("request_json", '{"customer_id": 5}'),
])
def test_a_corrupted_grant_row_is_unreadable_not_a_crash(tmp_path: Path, column: str,
                                                         value: str) -> None:
    provider, path, ids = _stored(tmp_path)
    _corrupt(path, ids[1], column, value)
    with pytest.raises(bc.BillingCreditsError) as caught:
        provider.get_grant(ids[1])
    assert ids[1] in str(caught.value)
    unreadable: list[bc.UnreadableGrant] = []
    listed = list(provider.list_grants("cus_1", on_unreadable=unreadable.append))
    assert sorted(g.id or "" for g in listed) == sorted([ids[0], ids[2]])
    assert [u.vendor_id for u in unreadable] == [ids[1]]
    with pytest.raises(bc.UnreadableGrantsError):
        list(provider.list_grants("cus_1"))
    provider.close()


@pytest.mark.parametrize("operation", ["balance", "ledger", "consume"])
def test_corrupted_amounts_are_project_errors(tmp_path: Path, operation: str) -> None:
    provider, path, _ = _stored(tmp_path)
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table in sorted(tables):
            columns = [c[1] for c in db.execute(f"PRAGMA table_info({table})")]
            for column in ("amount", "remaining"):
                if column in columns:
                    db.execute(f"UPDATE {table} SET {column} = 'garbage'")
    calls = {"balance": lambda: provider.get_balance("cus_1"),
             "ledger": lambda: list(provider.list_ledger("cus_1")),
             "consume": lambda: provider.consume(
                 "cus_1", bc.Money(amount=Decimal(1), currency="USD"), reference="u-1")}
    with pytest.raises(bc.BillingCreditsError):
        calls[operation]()
    provider.close()
