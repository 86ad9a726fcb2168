"""Issue 8.1 end to end: re-applying a migration whose journal is gone, into a Stripe that no
longer remembers the idempotency keys, makes no second grant (it doubled every grant before)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from billing_credits_stripe import StripeProvider
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def target(fake: StripeFake, runtime: bc.Runtime) -> Iterator[StripeProvider]:
    transport = fake.transport()
    with httpx.Client(transport=transport) as client:
        provider = bc.get_provider("stripe", api_key="sk_test_migration", http_client=client,
                                   async_http_client=httpx.AsyncClient(transport=transport),
                                   runtime=runtime)
        assert isinstance(provider, StripeProvider)
        yield provider


def test_reapply_without_journal_after_stripe_forgot_the_keys(
        tmp_path: Path, fake: StripeFake, target: StripeProvider) -> None:
    with bc.get_provider("local", path=str(tmp_path / "source.db")) as source:
        for n in range(12):
            source.create_grant(bc.CreditGrant(
                customer_id=f"cus_{n % 3}", amount=bc.Money(amount=Decimal(10 + n), currency="USD"),
                effective_at=START, expires_at=START + timedelta(days=3650),
                idempotency_key=f"src-{n}"))
        plan = bc.plan_migration(source, target, amount_mode="original")
    assert len(plan.to_create) == 12

    journal = tmp_path / "plan.journal"
    asyncio.run(bc.apply_plan(plan, target, journal=journal))
    assert len(fake.grants) == 12

    for _ in range(2):  # the journal is lost and Stripe forgets every key, twice
        journal.unlink(missing_ok=True)
        fake.advance(25 * 3600)
        fake.forget_idempotency_keys()
        asyncio.run(bc.apply_plan(plan, target, journal=journal))

    assert len(fake.grants) == 12, "a key never yields two grants"
    keys = Counter(g["metadata"]["bc_idempotency_key"] for g in fake.grants.values())
    assert set(keys.values()) == {1}
    totals = Counter[str]()
    for grant in fake.grants.values():
        totals[grant["customer"]] += grant["amount"]["monetary"]["value"]
    assert sum(totals.values()) == sum((10 + n) * 100 for n in range(12))
    assert bc.verify_plan(plan, target).ok
