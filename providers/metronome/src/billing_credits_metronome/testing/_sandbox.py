"""The ``metronome`` sandbox: ``MetronomeFake`` on loopback with a demo account.

Shaped like the Metronome API reference examples (v1 ``createGrant`` and contract
``customerCredits/create``): a grant in a custom credit unit with a paid amount in USD cents,
paid and promotional USD grants, a credit released in three windows, priorities 0.5, 1, 100
and 0.75, across three customers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import billing_credits as bc

TOKEN = "mtr_sandbox_token"  # noqa: S105 - the sandbox's own fake token
CLOUD_UNITS = "fa2f1b3d-9d52-4951-a099-25991fd394d6"
COMPUTE = "f14d6729-6a44-4b13-9908-9387f1918790"
CREDIT_PRODUCT = "3b0c7f5e-2d64-4c1a-9a7e-5f3d2f0f7a11"
CUSTOMERS = {
    "d7abd0cd-4ae9-4db7-8676-e986a4ebd8dc": "cus_sandbox_acme",
    "0e5b8609-d901-4992-b394-c3c2e3f37b1c": "cus_sandbox_globex",
    "6f1c2b8e-3e4a-4d55-8a9b-1c2d3e4f5a6b": "cus_sandbox_initech",
}
PRICES = {COMPUTE: ["price_sandbox_compute"]}


def _usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def seed(plans: bc.Provider, credits: bc.Provider, now: datetime) -> list[bc.CreditGrant]:
    """Create the demo account's grants; return them as created."""
    acme, globex, initech = CUSTOMERS
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    window = {"effective_at": hour - timedelta(days=3), "expires_at": hour + timedelta(days=90)}
    made = [
        plans.create_grant(bc.CreditGrant(
            customer_id=acme, name="Initial credit purchase", reason="Prepayment",
            amount=bc.Money(amount=Decimal(100), unit=bc.CreditUnit(
                id=CLOUD_UNITS, name="cloud consumption units")),
            paid_amount=_usd("0.10"), category_label="enterprise", priority=Decimal("0.5"),
            idempotency_key="sandbox-acme-units", **window)),
        plans.create_grant(bc.CreditGrant(
            customer_id=acme, name="Top-up", amount=_usd("50.00"), paid_amount=_usd("50.00"),
            category=bc.Category.PAID, priority=Decimal(1), idempotency_key="sandbox-acme-topup",
            **window)),
        plans.create_grant(bc.CreditGrant(
            customer_id=acme, name="Welcome", amount=_usd("20.00"),
            category=bc.Category.PROMOTIONAL, category_label="trial", priority=Decimal(100),
            idempotency_key="sandbox-acme-welcome", **window)),
        plans.create_grant(bc.CreditGrant(
            customer_id=globex, name="Make-good", reason="Outage on 2026-03-02",
            amount=_usd("5.00"), priority=Decimal("0.5"), idempotency_key="sandbox-globex-1",
            **window)),
        plans.create_grant(bc.CreditGrant(
            customer_id=globex, name="Compute credit", amount=_usd("7.00"),
            priority=Decimal("0.75"), scope=bc.Scope(product_ids=(COMPUTE,)),
            idempotency_key="sandbox-globex-2", **window)),
        plans.create_grant(bc.CreditGrant(
            customer_id=initech, name="Pilot", amount=_usd("12.50"), priority=Decimal(1),
            metadata={"deal": "pilot-2026"}, idempotency_key="sandbox-initech-pilot", **window)),
        credits.create_grant(bc.CreditGrant(
            customer_id=globex, name="Quarterly credit", amount=_usd("30.00"),
            priority=Decimal(100), idempotency_key="sandbox-globex-quarterly",
            schedule=tuple(
                bc.Segment(amount=Decimal(10), starts_at=hour + timedelta(days=30 * i - 10),
                           ends_before=hour + timedelta(days=30 * i + 20))
                for i in range(3)))),
    ]
    return made


def _csv(rows: dict[str, str] | dict[str, list[str]], header: str) -> str:
    lines = [header]
    for key, value in rows.items():
        lines.extend(f"{key},{target}" for target in (value if isinstance(value, list) else [value]))
    return "\n".join(lines) + "\n"


@contextmanager
def start() -> Iterator[bc.Sandbox]:
    """Serve a seeded ``MetronomeFake`` on 127.0.0.1 for the ``with`` block."""
    from billing_credits.testing import serve

    from ._fake import MetronomeFake

    fake = MetronomeFake(token=TOKEN, credit_types={CLOUD_UNITS: "cloud consumption units"},
                         products={COMPUTE: "Compute", CREDIT_PRODUCT: "Credits"})
    with serve(fake) as server:
        environment = {"METRONOME_BEARER_TOKEN": TOKEN, "METRONOME_BASE_URL": server.url,
                       "METRONOME_CREDIT_PRODUCT_ID": CREDIT_PRODUCT}
        settings = {"bearer_token": TOKEN, "base_url": server.url, "rate_limit": "0",
                    "custom_field_keys": "deal"}  # the demo's own metadata key
        with bc.get_provider("metronome-plans", **settings) as plans, bc.get_provider(
                "metronome", product_id=CREDIT_PRODUCT, **settings) as credits:
            # The demo account is set up as a user's would be (``billing-credits setup``):
            # Metronome takes only custom-field keys registered beforehand.
            plans.setup()
            credits.setup()
            made = seed(plans, credits, datetime.now(UTC))
        yield bc.Sandbox(
            name="metronome",
            url=server.url,
            environment=environment,
            providers=("metronome", "metronome-plans"),
            seeded=[f"{g.provider} {g.customer_id} {g.amount} priority {g.priority} "
                    f"{g.name!r}" + (f" ({len(g.schedule)} windows)" if g.schedule else "")
                    for g in made],
            files={"customers.csv": _csv(CUSTOMERS, "source,target"),
                   "prices.csv": _csv(PRICES, "product,price")},
        )
