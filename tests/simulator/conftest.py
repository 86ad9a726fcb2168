"""Consumption orders shaped like the vendors' documented rules, for tests.

The providers' own declarations (``Provider.consumption_order``) belong to the vendor
adapters; these are built here so the simulator's tests do not depend on them.
"""

from __future__ import annotations

import pytest

import billing_credits as bc

PLANS_DOC = "https://docs.metronome.com/invoicing/how-billing-works/manage-credits/"
CONTRACTS_DOC = "https://docs.metronome.com/pricing-packaging/apply-credits-commits/prioritization-rules"
STRIPE_DOC = "https://docs.stripe.com/billing/subscriptions/usage-based/billing-credits"

METRONOME_PLANS = bc.ConsumptionOrder(
    provider="metronome-plans",
    rules=(
        bc.OrderRule("priority", "asc", PLANS_DOC, "lower priority applies first"),
        bc.OrderRule("expires_at", "asc", PLANS_DOC, "on a tie, the sooner expiry first"),
    ),
    documented_tie_break=True,
)

METRONOME_CONTRACTS = bc.ConsumptionOrder(
    provider="metronome",
    rules=(
        bc.OrderRule("priority", "asc", CONTRACTS_DOC),
        bc.OrderRule("contract_before_customer", "asc", CONTRACTS_DOC),
        bc.OrderRule("cost_basis", "asc", CONTRACTS_DOC, "$0 cost basis first"),
        bc.OrderRule("fewest_products", "asc", CONTRACTS_DOC),
        bc.OrderRule("expires_at", "asc", CONTRACTS_DOC),
        bc.OrderRule("starts_at", "asc", CONTRACTS_DOC),
    ),
    documented_tie_break=False,
)

STRIPE = bc.ConsumptionOrder(
    provider="stripe",
    rules=(bc.OrderRule("priority", "asc", STRIPE_DOC, "0-100, lower first"),),
    documented_tie_break=False,  # Stripe documents nothing after priority
)


@pytest.fixture(scope="session")
def plans_order() -> bc.ConsumptionOrder:
    return METRONOME_PLANS


@pytest.fixture(scope="session")
def contracts_order() -> bc.ConsumptionOrder:
    return METRONOME_CONTRACTS


@pytest.fixture(scope="session")
def stripe_order() -> bc.ConsumptionOrder:
    return STRIPE


@pytest.fixture(scope="session")
def comparison() -> bc.Comparison:
    """A small comparison: one customer whose tie Stripe breaks otherwise, one the same, one
    in two units, and one whose id needs escaping."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from billing_credits.migrate._plan import PlanHeader

    start = datetime(2026, 1, 1, tzinfo=UTC)
    items = []
    for customer, name, amount, currency, priority, days in (
        ("cus_tie", "Top-up", "50.00", "USD", 5, 30),
        ("cus_tie", "Welcome", "20.00", "USD", 5, 60),
        ("cus_same", "Only", "10.00", "USD", 1, 20),
        ("cus_two_units", "Dollars", "10.00", "USD", 1, 20),
        ("cus_two_units", "Euros", "7.00", "EUR", 2, 40),
        ('<script>alert("x")</script>', "Hostile <b>", "3.00", "USD", 1, 10),
    ):
        items.append(bc.CreditGrant(
            customer_id=customer, name=name, priority=Decimal(priority),
            amount=bc.Money(amount=Decimal(amount), currency=currency), effective_at=start,
            expires_at=start + timedelta(days=days), idempotency_key=f"{customer}-{name}"))
    plan = bc.MigrationPlan(PlanHeader(
        source="metronome-plans", target="stripe", created_at=start, amount_mode="original",
        priority_policy="exact", strict=True))
    for index, grant in enumerate(items):
        plan.items.append(bc.PlanItem(source_id=f"src_{index}", customer_id=grant.customer_id,
                                      action="migrate", grant=grant))
    return bc.compare_plan(plan, METRONOME_PLANS, STRIPE)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show where the browser test wrote its screenshots (issue 20, Must show 3)."""
    from .test_browser import SCREENSHOTS

    for path in SCREENSHOTS:
        terminalreporter.write_line(f"report screenshot: {path}")
