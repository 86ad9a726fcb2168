"""``local`` on PostgreSQL: what only the server engine has (issue 16, point 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

import billing_credits as bc
from billing_credits.local import LocalProvider


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def terminate_connections(url: str) -> int:
    """Cut every other connection to the database, as a server restart does."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        found = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    return int(found[0]) if found else 0


def test_connections_cut_mid_run_are_a_retryable_error_and_a_retry_applies_once(
        pg_url: str) -> None:
    with LocalProvider(url=pg_url) as local:
        local.create_grant({"customer_id": "c", "amount": usd("10"),
                            "effective_at": datetime.now(UTC) - timedelta(days=1)})
        local.consume("c", usd("1"), reference="before")
        assert terminate_connections(pg_url) >= 1
        with pytest.raises(bc.UnavailableError) as caught:
            local.consume("c", usd("2"), reference="during")
        assert caught.value.retryable
        assert caught.value.code == "database_unavailable"
        assert "is unavailable" in str(caught.value)
        # The caller retries with the same reference: applied once, whole.
        for _ in range(3):
            try:
                entries = local.consume("c", usd("2"), reference="during")
                break
            except bc.UnavailableError:
                continue
        assert sum(e.amount.amount for e in entries) == Decimal(-2)
        again = local.consume("c", usd("2"), reference="during")
        assert again == entries
        [balance] = local.get_balance("c")
        assert balance.usable == usd("7")


def test_the_schema_is_created_once_by_racing_processes_and_the_url_reads_from_the_env(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_CREDITS_DB", pg_url)
    with bc.get_provider("local") as first, bc.get_provider("local") as second:
        assert first.identity() == second.identity()
        assert first.identity().startswith("local:postgresql://")
        made = first.create_grant({"customer_id": "c", "amount": usd("5"),
                                   "idempotency_key": "k"})
        again = second.create_grant({"customer_id": "c", "amount": usd("5.00"),
                                     "idempotency_key": "k"})
        assert again.id == made.id
        assert again.replayed


def test_amounts_are_numeric_and_exact_in_the_tables(pg_url: str) -> None:
    import psycopg

    with LocalProvider(url=pg_url) as local:
        big = Decimal("1234567890123456789012.345678901234567891")
        local.create_grant({"customer_id": "c", "amount": {"amount": big, "unit": {"id": "cu"}}})
        local.consume("c", bc.Money(amount=Decimal("0.000000000000000001"),
                                    unit=bc.CreditUnit(id="cu")), reference="r")
    with psycopg.connect(pg_url) as db:
        kinds = dict(db.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = "
            "'lots' AND column_name IN ('amount', 'remaining')").fetchall())
        assert kinds == {"amount": "numeric", "remaining": "numeric"}
        remaining = db.execute("SELECT remaining FROM lots").fetchone()[0]
    assert remaining == Decimal("1234567890123456789012.345678901234567890")
