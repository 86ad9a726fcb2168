"""A target grant migrated from a source grant is found by its provenance, not only by its
key: the vendor's own state decides, whichever grants the current plan holds (review of
issue 8: a key shared later between two source grants gave both derived keys, and apply
created the first one again)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc

NOW = datetime.now(UTC).replace(microsecond=0)


def stripe_source(fake: StripeFake) -> bc.Provider:
    transport = fake.transport()
    return bc.get_provider("stripe", api_key="sk_test_src", include_balance="true", rate_limit="0",
                           http_client=httpx.Client(transport=transport),
                           async_http_client=httpx.AsyncClient(transport=transport))


def welcome(customer: str) -> bc.CreditGrant:
    return bc.CreditGrant(customer_id=customer, amount=bc.Money(amount=Decimal(50), currency="USD"),
                          effective_at=NOW - timedelta(days=1), idempotency_key="welcome")


def test_a_key_shared_later_does_not_create_the_earlier_grant_again(tmp_path: Path) -> None:
    fake = StripeFake(seed=5)
    source = stripe_source(fake)
    source.create_grant(welcome("cus_1"))
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    first = bc.plan_migration(source, target, customers=["cus_1"])
    assert [i.key for i in first.to_create] == ["welcome"]
    assert asyncio.run(bc.apply_plan(first, target, journal=tmp_path / "j1")).created == 1

    fake.advance(25 * 3600)  # Stripe forgot the key; the application reuses it
    source.create_grant(welcome("cus_2"))
    second = bc.plan_migration(source, target)
    assert all(i.key and i.key.startswith("bcm-") for i in second.to_create)
    report = asyncio.run(bc.apply_plan(second, target, journal=tmp_path / "j2"))
    assert (report.created, report.already_done, report.failed) == (1, 1, [])
    assert len(list(target.list_grants("cus_1"))) == 1
    assert len(list(target.list_grants("cus_2"))) == 1
    assert bc.verify_plan(second, target).ok


@pytest.mark.parametrize("mode", ["remaining", "original"])
def test_verify_flags_a_second_grant_from_the_same_source_grant(tmp_path: Path, mode: str) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    source.create_grant(welcome("cus_1"))
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    plan = bc.plan_migration(source, target, amount_mode=mode)  # type: ignore[arg-type]
    asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j"))
    assert bc.verify_plan(plan, target).ok
    [item] = plan.to_create
    assert item.grant is not None
    target.create_grant(item.grant.as_new(idempotency_key="another-key"))
    report = bc.verify_plan(plan, target)
    assert report.duplicated == [item.key]
    assert not report.ok


def test_an_earlier_migrations_segment_is_not_carried_over(tmp_path: Path) -> None:
    """A grant that was itself migrated (a window of a split grant) names this migration's
    source only: otherwise apply and verify could not match it by provenance."""
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    source.create_grant(welcome("cus_1").as_new(metadata={
        "migrated_from_provider": "stripe", "migrated_from_grant": "credgr_1",
        "migrated_from_segment": "2"}))
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    [item] = bc.plan_migration(source, target).to_create
    assert item.grant is not None
    assert "migrated_from_segment" not in item.grant.metadata
    assert item.grant.metadata["migrated_from_provider"] == "local"
