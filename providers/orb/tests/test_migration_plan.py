"""Planning a move to Orb, a vendor without priorities: the plan says, per customer, whether
the burn order survives, and which customers cannot keep it (``--priority preserve-order``);
without the ``record`` policy, priorities are refused naming the way out. In process, over both
fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from billing_credits_orb.testing import OrbFake
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc

NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _stripe(fake: StripeFake) -> bc.Provider:
    transport = fake.transport()
    return bc.get_provider("stripe", api_key="sk_test_plan_0000",
                           http_client=httpx.Client(transport=transport),
                           async_http_client=httpx.AsyncClient(transport=transport))


def _orb(fake: OrbFake, **settings: Any) -> bc.Provider:
    transport = fake.transport()
    return bc.get_provider("orb", api_key="orb_test_plan_0000",
                           http_client=httpx.Client(transport=transport),
                           async_http_client=httpx.AsyncClient(transport=transport), **settings)


def _seed(stripe: bc.Provider) -> None:
    """``kept``: the lower priority also expires sooner (Orb's order agrees); ``changed``: the
    lower priority expires later (Orb burns the sooner one first)."""
    for customer, (first_ends, second_ends) in {"cus_kept": (20, 60),
                                               "cus_changed": (60, 20)}.items():
        for n, (priority, days) in enumerate(((1, first_ends), (2, second_ends))):
            stripe.create_grant(bc.CreditGrant(
                customer_id=customer, name=f"{customer} {n}", priority=Decimal(priority),
                amount=bc.Money(amount=Decimal(10), currency="USD"),
                effective_at=NOW - timedelta(days=2), expires_at=NOW + timedelta(days=days)))


def _customers(plan: bc.MigrationPlan, field: str) -> set[str]:
    return {item.customer_id for item in plan.items if any(c.field == field for c in
                                                           item.changes)}


def test_the_plan_names_the_customers_whose_burn_order_changes() -> None:
    stripe_fake, orb_fake = StripeFake(seed=1), OrbFake(seed=2)
    for customer in ("cus_kept", "cus_changed"):
        orb_fake.add_customer(customer)
    stripe = _stripe(stripe_fake)
    _seed(stripe)
    plan = bc.plan_migration(stripe, _orb(orb_fake, priority="record"),
                             priority_policy="preserve-order", strict=False,
                             amount_mode="original")
    assert len(plan.to_create) == 4
    assert _customers(plan, "consumption_order") == {"cus_changed"}
    why = next(c.why for item in plan.items for c in item.changes
               if c.field == "consumption_order")
    assert "priority" in why, why
    assert "expires_at" in why, why
    # every grant says its priority is recorded only, not honoured
    assert _customers(plan, "priority") == {"cus_kept", "cus_changed"}


def test_without_the_record_policy_priorities_are_refused_naming_the_way_out() -> None:
    stripe_fake, orb_fake = StripeFake(seed=1), OrbFake(seed=2)
    for customer in ("cus_kept", "cus_changed"):
        orb_fake.add_customer(customer)
    stripe = _stripe(stripe_fake)
    _seed(stripe)
    plan = bc.plan_migration(stripe, _orb(orb_fake), priority_policy="preserve-order",
                             strict=False, amount_mode="original")
    assert plan.to_create == []
    assert len(plan.refusals) == 4
    assert all("priority=record" in (r.reason or "") for r in plan.refusals)
    assert not orb_fake.blocks, "planning writes nothing"
