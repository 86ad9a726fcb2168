"""Issue 12, Must show 1: seed-shaped Metronome grants whose order Stripe breaks differently.

Carol holds two credits at the same priority, as the seeds' Top-up and Welcome grants: a
paid top-up expiring in 30 days and a promotional credit expiring in 60. Metronome (Plans)
breaks the tie on the sooner expiry; Stripe documents nothing after priority. The plan names
Carol and the rule; with ``preserve-order`` her target priorities follow Metronome's order and
the simulated orders become identical, on the plan and on what Stripe holds after apply.
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
ALICE = "d7abd0cd-4ae9-4db7-8676-e986a4ebd8dc"
CAROL = "5c3f8a9e-1d2b-4c6a-9e7f-0a1b2c3d4e5f"
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def wired(name: str, app: FakeApp, **settings: object) -> bc.Provider:
    transport = FakeTransport(app)
    return bc.get_provider(name, http_client=httpx.Client(transport=transport),
                           async_http_client=httpx.AsyncClient(transport=transport), **settings)


@pytest.fixture
def sides(monkeypatch: pytest.MonkeyPatch, plans_order: bc.ConsumptionOrder,
          stripe_order: bc.ConsumptionOrder) -> tuple[bc.Provider, bc.Provider]:
    source = wired("metronome-plans", MetronomeFake(token=TOKEN), bearer_token=TOKEN)
    target = wired("stripe", StripeFake(seed=1), api_key="sk_test_seed", rate_limit="0")
    source.setup()  # register the custom-field keys the provider writes, as a user does once
    monkeypatch.setattr(source, "consumption_order", plans_order)
    monkeypatch.setattr(target, "consumption_order", stripe_order)
    start = HOUR - timedelta(days=3)
    for customer, name, amount, paid, priority, days, category in (
        (ALICE, "Top-up", "50.00", "50.00", 1, 60, bc.Category.PAID),
        (ALICE, "Welcome", "20.00", "0", 100, 60, bc.Category.PROMOTIONAL),
        (CAROL, "Top-up", "50.00", "50.00", 5, 30, bc.Category.PAID),
        (CAROL, "Welcome", "20.00", "0", 5, 60, bc.Category.PROMOTIONAL),
    ):
        source.create_grant(bc.CreditGrant(
            customer_id=customer, name=name, amount=usd(amount), paid_amount=usd(paid),
            category=category, priority=Decimal(priority), effective_at=start,
            expires_at=HOUR + timedelta(days=days)))
    return source, target


def test_plan_names_the_customer_and_the_tie_break_rule(
    sides: tuple[bc.Provider, bc.Provider],
) -> None:
    source, target = sides
    plan = bc.plan_migration(source, target)
    assert not plan.refusals
    comparison = bc.compare_plan(plan, source.consumption_order, target.consumption_order)
    assert [d.customer_id for d in comparison.differences] == [CAROL]  # Alice's order is the same
    carol = comparison.differences[0]
    assert "burn order" in carol.kinds
    assert carol.rule == (
        "metronome-plans breaks the tie between Top-up and Welcome on expires_at (lowest first); "
        "stripe on nothing documented (the engine breaks the tie by grant id)")


def test_preserve_order_makes_the_orders_identical_on_the_plan_and_on_stripe(
    sides: tuple[bc.Provider, bc.Provider], tmp_path: Path,
) -> None:
    source, target = sides
    plan = bc.plan_migration(source, target, priority_policy="preserve-order")
    assert not plan.refusals
    carol = {i.grant.name: i for i in plan.to_create if i.customer_id == CAROL and i.grant}
    assert carol["Top-up"].grant
    assert carol["Welcome"].grant
    assert carol["Top-up"].grant.priority is not None
    assert carol["Welcome"].grant.priority is not None
    assert carol["Top-up"].grant.priority < carol["Welcome"].grant.priority
    why = next(c.why for c in carol["Welcome"].changes if c.field == "priority")
    assert "burn order" in why
    assert "expires_at" in why
    # Alice's priorities (1 and 100) already fit Stripe and order her grants alike: unchanged.
    alice = [i for i in plan.to_create if i.customer_id == ALICE]
    assert not any(c.field == "priority" for i in alice for c in i.changes)
    assert not any(c.field == "consumption_order" for i in plan.items for c in i.changes)

    comparison = bc.compare_plan(plan, source.consumption_order, target.consumption_order)
    assert comparison.ok, comparison.lines()
    carol_source = comparison.source.customers[CAROL]
    carol_target = comparison.target.customers[CAROL]
    assert [comparison.label(g) for g in carol_target.burn_order] == list(carol_source.burn_order)

    # migrate verify: the same comparison against what Stripe actually holds.
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "journal.db"))
    assert report.ok
    keys = {i.key for i in plan.to_create}
    held = {g.idempotency_key: g for c in (ALICE, CAROL) for g in target.list_grants(c)
            if g.idempotency_key in keys}
    assert len(held) == len(keys)
    after = bc.compare_plan(plan, source.consumption_order, target.consumption_order, held=held)
    assert after.ok, after.lines()
