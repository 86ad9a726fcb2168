"""Migration into Stripe, whose idempotency keys expire after 24 hours (issue 8.1): apply
reads the target once per customer, not once per grant, and a re-run days later with the
journal gone creates nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def stripe(fake: StripeFake) -> bc.Provider:
    transport = fake.transport()
    return bc.get_provider("stripe", api_key="sk_test_target", rate_limit="0",
                           http_client=httpx.Client(transport=transport),
                           async_http_client=httpx.AsyncClient(transport=transport))


def test_one_listing_per_customer_and_a_late_rerun_creates_nothing(tmp_path: Path) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    for n in range(60):
        source.create_grant(bc.CreditGrant(
            customer_id=f"cus_{n % 2}", amount=bc.Money(amount=Decimal(n + 1), currency="USD"),
            effective_at=HOUR - timedelta(days=1), idempotency_key=f"app-{n}"))
    fake = StripeFake(seed=5)
    target = stripe(fake)
    plan = bc.plan_migration(source, target)
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert (report.created, report.failed) == (60, [])
    listings = [r for r in fake.requests if r.method == "GET"]
    assert len(listings) == 2  # one page per customer, no lookup before each create

    fake.advance(timedelta(days=3).total_seconds())  # Stripe has forgotten every key
    (tmp_path / "j.db").unlink()
    fake.requests.clear()
    again = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert (again.created, again.already_done, again.failed) == (0, 60, [])
    assert [r.method for r in fake.requests] == ["GET", "GET"]
    assert len(fake.grants) == 60
