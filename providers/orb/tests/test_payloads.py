"""Must-show 1: the request bodies the provider sends equal, byte for byte, what the
``orb-billing`` SDK itself sends for the same call (create, void, expire, decrement).

Both go to one ``OrbFake`` served on loopback, which records every request's bytes. The raw
SDK call is written out by hand here (its arguments as Orb's API reference and the SDK's
``ledger_create_entry_params.py`` name them), so the test pins the provider's translation to
an explicit SDK call rather than to itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orb
import pytest
from billing_credits_orb.testing import OrbFake, RecordedRequest

import billing_credits as bc

API_KEY = "orb_test_payload_key"
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


@pytest.fixture
def fake() -> OrbFake:
    return OrbFake(api_key=API_KEY, seed=3)


@pytest.fixture
def urls(fake: OrbFake) -> Iterator[str]:
    with fake.serve() as server:
        yield f"{server.url}/v1"


def _posts(fake: OrbFake, since: int) -> list[RecordedRequest]:
    return [r for r in fake.requests[since:] if r.method == "POST"]


def _sdk(url: str) -> orb.Orb:
    return orb.Orb(api_key=API_KEY, base_url=url, max_retries=0)


def test_create_body_is_the_sdks(fake: OrbFake, urls: str) -> None:
    customer = fake.add_customer()
    other = fake.add_customer()
    grant = bc.CreditGrant(
        customer_id=customer, amount=bc.Money(amount=Decimal("1250.50"), currency="USD"),
        name="Prepaid credit", reason="Annual prepayment", category=bc.Category.PAID,
        paid_amount=bc.Money(amount=Decimal("1000.40"), currency="USD"),
        effective_at=DAY, expires_at=DAY + timedelta(days=365),
        scope=bc.Scope(product_ids=("item_compute", "item_storage")),
        metadata={"order": "ord-42"}, idempotency_key="order-42-credit")
    with bc.get_provider("orb", api_key=API_KEY, base_url=urls) as provider:
        start = len(fake.requests)
        provider.create_grant(grant)
    ours = _posts(fake, start)
    start = len(fake.requests)
    with _sdk(urls) as client:
        client.customers.credits.ledger.create_entry(
            customer, entry_type="increment", amount=1250.5, currency="USD",
            description="Prepaid credit", effective_date=DAY,
            expiry_date=DAY + timedelta(days=365),
            filters=[{"field": "item_id", "operator": "includes",
                      "values": ["item_compute", "item_storage"]}],
            per_unit_cost_basis="0.8",
            invoice_settings={"auto_collection": False, "net_terms": 0, "mark_as_paid": True},
            metadata={"order": "ord-42", "bc_customer": customer, "bc_name": "Prepaid credit",
                      "bc_reason": "Annual prepayment", "bc_category": "paid",
                      "bc_idempotency_key": "order-42-credit"},
            idempotency_key="order-42-credit")
    theirs = _posts(fake, start)
    assert len(ours) == len(theirs) == 1
    assert ours[0].raw == theirs[0].raw
    assert ours[0].path == theirs[0].path
    assert ours[0].headers["idempotency-key"] == theirs[0].headers["idempotency-key"]
    body = json.loads(ours[0].raw, parse_float=Decimal)
    assert body["invoice_settings"]["mark_as_paid"] is True  # paid elsewhere: not billed
    assert Decimal(body["per_unit_cost_basis"]) * Decimal(str(body["amount"])) == Decimal(
        "1000.40")
    assert other  # a second customer exists; nothing was sent for it


def _block(fake: OrbFake, url: str) -> tuple[str, str, bc.CreditGrant]:
    customer = fake.add_customer()
    with bc.get_provider("orb", api_key=API_KEY, base_url=url) as provider:
        grant = provider.create_grant(bc.CreditGrant(
            customer_id=customer, amount=bc.Money(amount=Decimal("40.25"), currency="USD"),
            effective_at=DAY, expires_at=DAY + timedelta(days=30)))
    assert grant.id is not None
    return customer, grant.id, grant


def test_void_body_is_the_sdks(fake: OrbFake, urls: str) -> None:
    customer, block, _ = _block(fake, urls)
    with bc.get_provider("orb", api_key=API_KEY, base_url=urls) as provider:
        start = len(fake.requests)
        provider.void_grant(block)
    ours = _posts(fake, start)
    fake.blocks[block].balance = Decimal("40.25")  # the same state for the SDK's own call
    start = len(fake.requests)
    with _sdk(urls) as client:
        client.customers.credits.ledger.create_entry(
            customer, entry_type="void", amount=40.25, block_id=block, currency="USD",
            idempotency_key="void-1")
    theirs = _posts(fake, start)
    assert [r.raw for r in ours] == [r.raw for r in theirs]
    assert ours[0].headers.get("idempotency-key")


def test_expire_body_is_the_sdks(fake: OrbFake, urls: str) -> None:
    customer, block, grant = _block(fake, urls)
    with bc.get_provider("orb", api_key=API_KEY, base_url=urls) as provider:
        start = len(fake.requests)
        expired = provider.expire_grant(block)
    assert expired.status is bc.GrantStatus.EXPIRED
    ours = _posts(fake, start)
    start = len(fake.requests)
    with _sdk(urls) as client:
        client.customers.credits.ledger.create_entry(
            customer, entry_type="expiration_change", block_id=block,
            target_expiry_date=datetime.now(UTC).date(), currency="USD",
            expiry_date=grant.expires_at, idempotency_key="expire-1")
    theirs = _posts(fake, start)
    assert [r.raw for r in ours] == [r.raw for r in theirs]
    assert json.loads(ours[0].raw)["target_expiry_date"] == datetime.now(UTC).date().isoformat()


def test_decrement_body_is_the_sdks(fake: OrbFake, urls: str) -> None:
    customer, _, _ = _block(fake, urls)
    with bc.get_provider("orb", api_key=API_KEY, base_url=urls) as provider:
        start = len(fake.requests)
        entries = provider.consume(customer, bc.Money(amount=Decimal("3.75"), currency="USD"),
                                   reference="usage-7")
    assert [e.amount.amount for e in entries] == [Decimal("-3.75")]
    ours = _posts(fake, start)
    start = len(fake.requests)
    with _sdk(urls) as client:
        client.customers.credits.ledger.create_entry(
            customer, entry_type="decrement", amount=3.75, currency="USD",
            description="usage usage-7", metadata={"bc_usage_reference": "usage-7"},
            idempotency_key="usage-7")
    theirs = _posts(fake, start)
    assert [r.raw for r in ours] == [r.raw for r in theirs]
