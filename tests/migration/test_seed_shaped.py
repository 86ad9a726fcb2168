"""Seed-shaped Metronome grants migrated to Stripe (issue 5, Must show 1).

The seeds' grants: one in a custom pricing unit paid in USD cents, paid and promotional USD
grants, a multi-segment customer credit, priorities 0.5 / 1 / 100. The plan must name every
lossy change and every refusal; with the order-preserving policy each customer's consumption
order must be the same on both sides.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from billing_credits_metronome.testing import MetronomeFake
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc
from billing_credits.testing import FakeApp, FakeTransport

TOKEN = "mtr_test_seed_token"
CCU = "fa2f1b3d-9d52-4951-a099-25991fd394d6"
PRODUCT = "f14d6729-6a44-4b13-9908-9387f1918790"
ALICE = "d7abd0cd-4ae9-4db7-8676-e986a4ebd8dc"
BOB = "0e5b8609-d901-4992-b394-c3c2e3f37b1c"
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def wired(name: str, app: FakeApp, **settings: object) -> bc.Provider:
    transport = FakeTransport(app)
    return bc.get_provider(name, http_client=httpx.Client(transport=transport),
                           async_http_client=httpx.AsyncClient(transport=transport), **settings)


@pytest.fixture
def providers() -> tuple[bc.Provider, bc.Provider, bc.Provider, StripeFake]:
    metronome = MetronomeFake(token=TOKEN, credit_types={CCU: "cloud consumption units"})
    stripe = StripeFake(seed=1)
    plans = wired("metronome-plans", metronome, bearer_token=TOKEN,
                  custom_field_keys="x_account_id")
    credits = wired("metronome", metronome, bearer_token=TOKEN, product_id=PRODUCT,
                    custom_field_keys="x_account_id")
    plans.setup()  # Metronome accepts only custom-field keys registered beforehand
    credits.setup()
    target = wired("stripe", stripe, api_key="sk_test_seed", rate_limit="0")
    return plans, credits, target, stripe


def seed(plans: bc.Provider, credits: bc.Provider) -> dict[str, bc.CreditGrant]:
    window = {"effective_at": HOUR - timedelta(days=3), "expires_at": HOUR + timedelta(days=60)}
    made = {
        "custom_unit": plans.create_grant(bc.CreditGrant(
            customer_id=ALICE, name="Initial credit purchase", reason="Prepayment",
            amount=bc.Money(amount=Decimal(100), unit=bc.CreditUnit(
                id=CCU, name="cloud consumption units")),
            paid_amount=usd("0.10"), category_label="enterprise", priority=Decimal("0.5"),
            metadata={"x_account_id": "KyVnHhSBWl7eY2bl"}, **window)),
        "paid": plans.create_grant(bc.CreditGrant(
            customer_id=ALICE, name="Top-up", amount=usd("50.00"), paid_amount=usd("50.00"),
            category=bc.Category.PAID, priority=Decimal(1), **window)),
        "promo": plans.create_grant(bc.CreditGrant(
            customer_id=ALICE, name="Welcome", amount=usd("20.00"),
            category=bc.Category.PROMOTIONAL, category_label="trial", priority=Decimal(100),
            **window)),
        "bob_first": plans.create_grant(bc.CreditGrant(
            customer_id=BOB, name="Bob first", amount=usd("5.00"), priority=Decimal("0.5"),
            **window)),
        "bob_second": plans.create_grant(bc.CreditGrant(
            customer_id=BOB, name="Bob second", amount=usd("7.00"), priority=Decimal("0.75"),
            **window)),
    }
    made["segments"] = credits.create_grant(bc.CreditGrant(
        customer_id=BOB, name="Quarterly credit", amount=usd("30.00"), priority=Decimal(100),
        schedule=tuple(
            bc.Segment(amount=Decimal(10), starts_at=HOUR + timedelta(days=30 * i - 10),
                       ends_before=HOUR + timedelta(days=30 * i + 20))
            for i in range(3))))
    return made


def test_plan_names_every_lossy_change_and_refusal(
    providers: tuple[bc.Provider, bc.Provider, bc.Provider, StripeFake],
) -> None:
    plans, credits, target, _ = providers
    made = seed(plans, credits)
    exact = bc.plan_migration(plans, target, strict=False)
    refused = {i.source_id: i.reason or "" for i in exact.refusals}
    assert set(refused) == {made["custom_unit"].id, made["bob_first"].id, made["bob_second"].id}
    assert "amount: custom credit units are not supported" in refused[made["custom_unit"].id]
    assert "priority: 0.5 must be a whole number" in refused[made["custom_unit"].id]
    assert "priority: 0.75 must be a whole number" in refused[made["bob_second"].id]
    # What does migrate carries Stripe's narrowing of "all usage", named in the plan.
    promo = next(i for i in exact.to_create if i.source_id == made["promo"].id)
    assert ("scope", "all usage", "price_type=metered") in {
        (c.field, c.source, c.target) for c in promo.changes}
    assert promo.grant is not None
    assert promo.grant.category_label == "trial"  # kept (in Stripe metadata), not lost

    # The customer credit's three windows become one Stripe grant each; the ended one
    # (none here: it started ten days ago) would be listed as gone.
    split = bc.plan_migration(credits, target, customers=[BOB])
    assert [i.segment for i in split.to_create] == [0, 1, 2]
    assert all("schedule" in {c.field for c in i.changes} for i in split.to_create)


def test_order_preserving_policy_keeps_each_customers_consumption_order(
    providers: tuple[bc.Provider, bc.Provider, bc.Provider, StripeFake], tmp_path: Path,
) -> None:
    plans, credits, target, stripe = providers
    made = seed(plans, credits)
    plan = bc.plan_migration(plans, target, priority_policy="preserve-order", strict=False)
    assert [i.source_id for i in plan.refusals] == [made["custom_unit"].id]  # the unit only
    changes = {(i.source_id, c.source, c.target) for i in plan.items for c in i.changes
               if c.field == "priority"}
    assert (made["bob_first"].id, "0.5", "0") in changes
    assert (made["bob_second"].id, "0.75", "1") in changes

    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert report.ok
    assert report.created == len(plan.to_create) == 4
    assert bc.verify_plan(plan, target).ok

    for customer, migrated in ((ALICE, ("paid", "promo")), (BOB, ("bob_first", "bob_second"))):
        source_order = [g.id for g in sorted(
            (made[name] for name in migrated), key=lambda g: g.priority or 0)]
        on_stripe = list(target.list_grants(plan_customer(plan, customer)))
        target_order = [g.metadata["migrated_from_grant"] for g in sorted(
            on_stripe, key=lambda g: g.priority or 0)]
        assert target_order == source_order
        assert len({g.priority for g in on_stripe}) == len(on_stripe)  # no new ties
    assert len(stripe.grants) == 4


def plan_customer(plan: bc.MigrationPlan, source_customer: str) -> str:
    return next(i.grant.customer_id for i in plan.to_create
                if i.customer_id == source_customer and i.grant is not None)
