"""Provider behaviour over ``OrbFake``: keys, refusals before I/O, invoicing, external ids,
faults, consumption and the ledger. Each test drives the provider through the SDK over the
fake (in process or loopback) and checks the fake's own state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_credits_orb import OrbProvider, map_error
from billing_credits_orb.testing import OrbFake

import billing_credits as bc
from billing_credits.testing import Faults

from .conftest import API_KEY

DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def _grant(customer: str, amount: str = "10", **changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "customer_id": customer, "amount": bc.Money(amount=Decimal(amount), currency="USD"),
        "effective_at": DAY, "expires_at": DAY + timedelta(days=30)}
    data.update(changes)
    return bc.CreditGrant(**data)


def _provider(fake: OrbFake, runtime: bc.Runtime, faults: Faults | None = None,
              **settings: Any) -> OrbProvider:
    transport = fake.transport(faults)
    made = bc.get_provider("orb", api_key=API_KEY, http_client=httpx.Client(transport=transport),
                           async_http_client=httpx.AsyncClient(transport=transport),
                           runtime=runtime, **settings)
    assert isinstance(made, OrbProvider)
    return made


def test_a_key_orb_forgot_is_found_again(provider: OrbProvider, fake: OrbFake) -> None:
    customer = fake.add_customer()
    first = provider.create_grant(_grant(customer, idempotency_key="order-1"))
    assert first.replayed is False
    fake.forget_idempotency_keys()  # as Orb does after 48 hours
    again = provider.create_grant(_grant(customer, idempotency_key="order-1"))
    assert again.id == first.id
    assert again.replayed is True
    assert len(fake.blocks) == 1
    with pytest.raises(bc.ConflictError):
        provider.create_grant(_grant(customer, "11", idempotency_key="order-1"))
    assert len(fake.blocks) == 1


def test_a_replayed_create_says_so(fake: OrbFake, runtime: bc.Runtime) -> None:
    customer = fake.add_customer()
    provider = _provider(fake, runtime, find_existing="off")
    first = provider.create_grant(_grant(customer, idempotency_key="order-2"))
    again = provider.create_grant(_grant(customer, idempotency_key="order-2"))
    assert (first.replayed, again.replayed) == (False, True)
    assert again.id == first.id
    assert len(fake.blocks) == 1


def test_a_key_longer_than_orbs_64_characters_is_kept_whole(
        provider: OrbProvider, fake: OrbFake) -> None:
    customer = fake.add_customer()
    key = "k" * 100
    created = provider.create_grant(_grant(customer, idempotency_key=key))
    assert created.idempotency_key == key
    sent = [r for r in fake.requests if r.method == "POST"][-1]
    assert len(sent.headers["idempotency-key"]) <= 64


def test_priority_is_refused_before_any_request(provider: OrbProvider, fake: OrbFake) -> None:
    customer = fake.add_customer()
    before = provider.runtime.calls
    with pytest.raises(bc.NotRepresentableError) as refused:
        provider.create_grant(_grant(customer, priority=Decimal(5)))
    assert refused.value.fields == ("priority",)
    assert provider.runtime.calls == before
    assert not [r for r in fake.requests if r.method == "POST"]


def test_record_policy_creates_with_an_adjustment(fake: OrbFake, runtime: bc.Runtime) -> None:
    customer = fake.add_customer()
    provider = _provider(fake, runtime, priority="record")
    assert provider.preview(_grant(customer, priority=Decimal(5)))[0].field == "priority"
    created = provider.create_grant(_grant(customer, priority=Decimal(5)))
    assert created.priority == 5
    assert [a.field for a in created.adjustments] == ["priority"]
    assert "does not order consumption" in created.adjustments[0].reason


def test_paid_credit_is_marked_paid_unless_invoicing_is_asked(
        fake: OrbFake, runtime: bc.Runtime) -> None:
    customer = fake.add_customer()
    paid = bc.Money(amount=Decimal("8"), currency="USD")
    plain = _provider(fake, runtime)
    plain.create_grant(_grant(customer, paid_amount=paid))
    assert [i["status"] for i in fake.invoices] == ["paid"]
    invoicing = _provider(fake, runtime, invoice="on", net_terms="15")
    assert invoicing.capabilities.invoices_paid_amount
    invoicing.create_grant(_grant(customer, paid_amount=paid))
    assert fake.invoices[-1]["status"] == "issued"
    assert Decimal(fake.invoices[-1]["amount_due"]) == 8
    recorder = invoicing.record_only()
    assert not recorder.capabilities.invoices_paid_amount
    recorder.create_grant(_grant(customer, paid_amount=paid))
    assert fake.invoices[-1]["status"] == "paid"
    assert invoicing.invoice, "record_only() is a copy; the instance still invoices"


def test_customers_by_external_id(fake: OrbFake, runtime: bc.Runtime) -> None:
    fake.add_customer(external_id="acct-7")
    provider = _provider(fake, runtime, customer_ids="external")
    created = provider.create_grant(_grant("acct-7", idempotency_key="ext-1"))
    assert created.customer_id == "acct-7"
    assert [g.id for g in provider.list_grants("acct-7")] == [created.id]
    assert provider.get_balance("acct-7")[0].usable.amount == 10
    assert any("/external_customer_id/acct-7/" in r.path for r in fake.requests)


def test_faults_never_make_two_blocks(fake: OrbFake, runtime: bc.Runtime,
                                      sleeps: Any) -> None:
    customer = fake.add_customer()
    faults = Faults(script=["timeout_after_commit", "500", "429", "reset"])
    provider = _provider(fake, runtime, faults)
    created = provider.create_grant(_grant(customer, idempotency_key="faulty"))
    assert len(fake.blocks) == 1
    assert created.id in fake.blocks
    assert len(sleeps.waits) == 4


def test_errors_carry_status_body_and_retryability(fake: OrbFake, runtime: bc.Runtime) -> None:
    import orb

    customer = fake.add_customer()
    client = orb.Orb(api_key=API_KEY, base_url="http://orb.test/v1", max_retries=0,
                     http_client=httpx.Client(transport=fake.transport()))
    with pytest.raises(orb.NotFoundError) as missing:
        client.credit_blocks.retrieve("nope")
    mapped = map_error(missing.value)
    assert isinstance(mapped, bc.NotFoundError)
    assert mapped.status == 404
    assert mapped.code == "404-resource-not-found"
    assert not mapped.retryable
    client.customers.credits.ledger.create_entry(customer, entry_type="increment", amount=1,
                                                 currency="USD", idempotency_key="x")
    with pytest.raises(orb.ConflictError) as conflict:
        client.customers.credits.ledger.create_entry(customer, entry_type="increment",
                                                     amount=2, currency="USD",
                                                     idempotency_key="x")
    assert map_error(conflict.value).retryable  # 409: "Retrying these requests should be safe"
    provider = _provider(fake, runtime, Faults(script=["503"] * 9))
    with pytest.raises(bc.UnavailableError) as down:
        provider.get_balance(customer)
    assert down.value.status == 503
    assert down.value.retryable


def test_the_key_never_shows(fake: OrbFake, runtime: bc.Runtime) -> None:
    provider = _provider(fake, runtime)
    assert API_KEY not in repr(provider)
    assert API_KEY not in provider.identity()
    with pytest.raises(bc.ProviderError) as failed:
        provider.get_grant("missing")
    assert API_KEY not in str(failed.value)
    assert API_KEY not in repr(failed.value.body)


def test_consume_is_refused_beyond_the_usable_credit(provider: OrbProvider,
                                                     fake: OrbFake) -> None:
    customer = fake.add_customer()
    provider.create_grant(_grant(customer, "5"))
    with pytest.raises(bc.ConflictError):
        provider.consume(customer, bc.Money(amount=Decimal("5.01"), currency="USD"),
                         reference="too-much")
    assert fake.balance(customer, "USD") == 5
    assert not [e for e in fake.entries[customer] if e["entry_type"] == "decrement"]


def test_consume_is_applied_once_even_after_orb_forgets_the_key(
        provider: OrbProvider, fake: OrbFake) -> None:
    customer = fake.add_customer()
    soon = provider.create_grant(_grant(customer, "4", expires_at=DAY + timedelta(days=3)))
    late = provider.create_grant(_grant(customer, "10"))
    usage = bc.Money(amount=Decimal("6"), currency="USD")
    entries = provider.consume(customer, usage, reference="inv-9")
    assert {e.grant_id: e.amount.amount for e in entries} == {soon.id: -4, late.id: -2}
    fake.forget_idempotency_keys()
    again = provider.consume(customer, usage, reference="inv-9")
    assert [e.vendor_id for e in again] == [e.vendor_id for e in entries]
    assert fake.balance(customer, "USD") == 8
    with pytest.raises(bc.ConflictError):
        provider.consume(customer, bc.Money(amount=Decimal("1"), currency="USD"),
                         reference="inv-9")


def test_void_takes_what_is_left_and_the_ledger_reconciles(provider: OrbProvider,
                                                            fake: OrbFake) -> None:
    customer = fake.add_customer()
    grant = provider.create_grant(_grant(customer, "10"))
    assert grant.id is not None
    provider.consume(customer, bc.Money(amount=Decimal("2.5"), currency="USD"), reference="u1")
    voided = provider.void_grant(grant.id)
    assert voided.status is bc.GrantStatus.VOIDED
    void = [e for e in fake.entries[customer] if e["entry_type"] == "void"]
    assert [e["amount"] for e in void] == [Decimal("7.5")]
    mine = list(provider.list_ledger(customer, grant_id=grant.id))
    assert bc.exact_sum(e.amount.amount for e in mine) == 0
    assert {e.kind for e in mine} == {bc.LedgerKind.GRANTED, bc.LedgerKind.CONSUMED,
                                      bc.LedgerKind.VOIDED}


def test_update_expiry_and_metadata(provider: OrbProvider, fake: OrbFake) -> None:
    customer = fake.add_customer()
    grant = provider.create_grant(_grant(customer, metadata={"a": "1", "b": "2"}))
    assert grant.id is not None
    later = DAY + timedelta(days=90)
    updated = provider.update_grant(grant.id, expires_at=later, metadata={"b": "3"})
    assert updated.expires_at == later
    assert updated.metadata == {"b": "3"}
    assert fake.blocks[grant.id].expiry == later
    with pytest.raises(bc.NotRepresentableError):
        provider.update_grant(grant.id, name="renamed")
    with pytest.raises(bc.NotRepresentableError):
        provider.update_grant(grant.id, expires_at=None)


def test_list_every_customer_and_ended_blocks(provider: OrbProvider, fake: OrbFake) -> None:
    customers = [fake.add_customer() for _ in range(3)]
    made = [provider.create_grant(_grant(c)) for c in customers]
    assert made[0].id is not None
    provider.void_grant(made[0].id)
    listed = {g.id: g.status for g in provider.list_grants(page_size=2)}
    assert set(listed) == {g.id for g in made}
    assert listed[made[0].id] is bc.GrantStatus.VOIDED


def test_sync_and_async_over_loopback(http_provider: OrbProvider, fake: OrbFake) -> None:
    customer = fake.add_customer()

    async def run() -> bc.CreditGrant:
        return await http_provider.acreate_grant(_grant(customer, idempotency_key="a-1"))

    created = asyncio.run(run())
    assert http_provider.get_grant(created.id or "") == created


def test_listing_by_external_id_reports_customers_without_one(fake: OrbFake,
                                                              runtime: bc.Runtime) -> None:
    fake.add_customer(external_id="acct-1")
    orphan = fake.add_customer()
    provider = _provider(fake, runtime, customer_ids="external")
    provider.create_grant(_grant("acct-1"))
    seen: list[bc.UnreadableGrant] = []
    assert len(list(provider.list_grants(on_unreadable=seen.append))) == 1
    assert [u.vendor_id for u in seen] == [orphan]
    assert "external_customer_id" in seen[0].problem


def test_async_faults_never_make_two_blocks(fake: OrbFake, runtime: bc.Runtime,
                                            sleeps: Any) -> None:
    customer = fake.add_customer()
    faults = Faults(script=[None, "timeout_after_commit", "503", "reset"])  # lookup, then create
    provider = _provider(fake, runtime, faults)

    async def run() -> list[bc.CreditGrant]:
        return list(await asyncio.gather(*(provider.acreate_grant(
            _grant(customer, idempotency_key="async-faulty")) for _ in range(3))))

    made = asyncio.run(run())
    assert {g.id for g in made} == set(fake.blocks)
    assert len(fake.blocks) == 1
    assert sleeps.waits, "the faults were retried"
