"""Local provider behaviour beyond the conformance suite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import billing_credits as bc
from billing_credits.local import LocalProvider

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def grant(**fields: object) -> bc.CreditGrant:
    data = {"customer_id": "c", "amount": {"amount": "10.00", "currency": "USD"},
            "effective_at": T0, **fields}
    return bc.CreditGrant.model_validate(data)


def test_unvalidated_instances_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path / "c.db")
    sneaky = grant().model_copy(update={"amount": bc.Money.model_construct(
        amount=Decimal(-5), currency="USD", unit=None)})
    with pytest.raises(bc.InvalidGrantError):
        provider.create_grant(sneaky)
    assert list(provider.list_grants()) == []


def test_expiring_at_the_instant_it_starts_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    clock = [T0 - timedelta(days=1)]
    provider = LocalProvider(tmp_path / "c.db", clock=lambda: clock[0])
    created = provider.create_grant(grant(expires_at=T0 + timedelta(days=9)))
    assert created.id is not None
    clock[0] = T0
    with pytest.raises(bc.ConflictError, match="not effective yet"):
        provider.expire_grant(created.id)
    assert provider.get_grant(created.id).expires_at == T0 + timedelta(days=9)
    clock[0] = T0 + timedelta(days=1)
    expired = provider.expire_grant(created.id)
    assert expired.expires_at == T0 + timedelta(days=1)
    assert expired.status is bc.GrantStatus.EXPIRED
    assert expired.balance == bc.Money(amount=Decimal(0), currency="USD")


def test_expiring_a_schedule_drops_later_windows_and_cuts_the_current_one(tmp_path: Path) -> None:
    clock = [T0]
    provider = LocalProvider(tmp_path / "c.db", clock=lambda: clock[0])
    windows = tuple(bc.Segment(amount=Decimal(i + 1), starts_at=T0 + timedelta(days=10 * i),
                               ends_before=T0 + timedelta(days=10 * (i + 1))) for i in range(3))
    created = provider.create_grant(grant(amount={"amount": "6", "currency": "USD"},
                                          schedule=windows, effective_at=None))
    assert created.balance == bc.Money(amount=Decimal(6), currency="USD")
    clock[0] = T0 + timedelta(days=15)
    assert provider.get_grant(created.id or "").balance == bc.Money(amount=Decimal(5), currency="USD")
    expired = provider.expire_grant(created.id or "")
    assert [(s.amount, s.ends_before) for s in expired.schedule or ()] == [
        (Decimal(1), T0 + timedelta(days=10)), (Decimal(2), T0 + timedelta(days=15))]
    assert expired.amount.amount == Decimal(3)


def test_the_same_key_with_an_equal_amount_written_differently_is_a_replay(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path / "c.db")
    first = provider.create_grant(grant(amount={"amount": "1E+1", "currency": "USD"},
                                        idempotency_key="k"))
    again = provider.create_grant(grant(amount={"amount": "10.00", "currency": "USD"},
                                        idempotency_key="k"))
    assert again.id == first.id
    with pytest.raises(bc.ConflictError, match="different grant"):
        provider.create_grant(grant(amount={"amount": "10.01", "currency": "USD"},
                                    idempotency_key="k"))


def test_page_size_must_be_positive(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path / "c.db")
    with pytest.raises(bc.ConfigurationError):
        list(provider.list_grants(page_size=0))


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "c.db"
    LocalProvider(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(bc.ConfigurationError, match="schema version 99"):
        LocalProvider(path)
