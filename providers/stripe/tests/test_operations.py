"""Must show 1: every operation through ``get_provider("stripe", …)`` against the fake,
over loopback HTTP and in process, sync and async."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from billing_credits_stripe import StripeProvider
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc

NOW = datetime.now(UTC).replace(microsecond=0)


def grant(customer: str = "cus_ops", n: int = 0, **changes: object) -> bc.CreditGrant:
    data: dict[str, object] = {
        "customer_id": customer,
        "amount": bc.Money(amount=Decimal("25.00") + n, currency="USD"),
        "name": f"Grant {n}",
        "reason": "Make good for the outage",
        "category": bc.Category.PROMOTIONAL,
        "effective_at": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(days=30),
        "priority": Decimal(10),
        "scope": bc.Scope(price_ids=("price_A", "price_B")),
        "metadata": {"order": f"ord-{n}"},
        "idempotency_key": f"ops-{customer}-{n}",
    }
    data.update(changes)
    return bc.CreditGrant.model_validate(data)


def exercise(provider: StripeProvider, fake: StripeFake) -> None:
    created = [provider.create_grant(grant(n=n)) for n in range(7)]
    for n, stored in enumerate(created):
        assert stored.id is not None
        assert stored.id.startswith("credgr_test_")
        assert stored.as_new() == grant(n=n), "neutral -> Stripe -> neutral is lossless"
        assert stored.status is bc.GrantStatus.ACTIVE
        assert stored.adjustments == ()

    before = provider.runtime.calls
    listed = list(provider.list_grants("cus_ops", page_size=2))
    assert provider.runtime.calls - before == 4, "7 grants at 2 a page: 4 pages"
    assert sorted(g.id or "" for g in listed) == sorted(g.id or "" for g in created)
    pages = [r for r in fake.requests if r.method == "GET" and r.path.endswith("credit_grants")
             and r.params.get("limit") == "2"]  # not the lookups before each keyed create
    assert [r.params.get("starting_after") for r in pages[1:]] == [
        listed[1].id, listed[3].id, listed[5].id]

    one = created[0].id
    assert one is not None
    assert provider.get_grant(one) == created[0]

    fake.consume(one, 700)
    assert provider.grant_balance(one) == bc.Money(amount=Decimal("18.00"), currency="USD")

    expired = provider.expire_grant(one)
    assert expired.status is bc.GrantStatus.EXPIRED
    assert expired.expires_at is not None
    assert expired.expires_at <= datetime.now(UTC)
    assert provider.grant_balance(one).amount == 0

    voided = provider.void_grant(created[1].id or "")
    assert voided.status is bc.GrantStatus.VOIDED
    assert voided.raw is not None
    assert voided.raw["voided_at"] is not None

    with pytest.raises(bc.NotFoundError) as missing:
        provider.get_grant("credgr_test_missing")
    assert missing.value.status == 404
    assert missing.value.request_id
    assert missing.value.request_id.startswith("req_")


async def aexercise(provider: StripeProvider, fake: StripeFake) -> None:
    created = [await provider.acreate_grant(grant("cus_async", n)) for n in range(5)]
    for n, stored in enumerate(created):
        assert stored.as_new() == grant("cus_async", n)
    before = provider.runtime.calls
    listed = [g async for g in provider.alist_grants("cus_async", page_size=2)]
    assert provider.runtime.calls - before == 3, "5 grants at 2 a page: 3 pages"
    assert {g.id for g in listed} == {g.id for g in created}
    one = created[0].id or ""
    assert await provider.aget_grant(one) == created[0]
    fake.consume(one, 500)
    assert (await provider.agrant_balance(one)).amount == Decimal("20.00")
    assert (await provider.aexpire_grant(one)).status is bc.GrantStatus.EXPIRED
    assert (await provider.avoid_grant(created[1].id or "")).status is bc.GrantStatus.VOIDED


def test_sync_over_loopback_http(http_provider: StripeProvider, fake: StripeFake,
                                 server: object) -> None:
    assert http_provider.base_url.startswith("http://127.0.0.1:")
    exercise(http_provider, fake)


def test_sync_in_process(provider: StripeProvider, fake: StripeFake) -> None:
    exercise(provider, fake)


async def test_async_over_loopback_http(ahttp_provider: StripeProvider, fake: StripeFake) -> None:
    await aexercise(ahttp_provider, fake)


async def test_async_in_process(provider: StripeProvider, fake: StripeFake) -> None:
    await aexercise(provider, fake)


def test_include_balance_costs_one_call_per_grant(
    fake: StripeFake, server: object, runtime: bc.Runtime, api_key: str
) -> None:
    url = server.url  # type: ignore[attr-defined]
    with bc.get_provider("stripe", api_key=api_key, base_url=url, runtime=runtime,
                         include_balance=True) as provider:
        created = [provider.create_grant(grant("cus_bal", n)) for n in range(3)]
        assert created[0].balance is None, "create does not read the balance"
        fake.consume(created[0].id or "", 100)
        before = provider.runtime.calls
        listed = {g.id: g for g in provider.list_grants("cus_bal")}
        assert provider.runtime.calls - before == 1 + 3
        assert listed[created[0].id].balance == bc.Money(amount=Decimal("24.00"), currency="USD")
        assert listed[created[1].id].balance == bc.Money(amount=Decimal("26.00"), currency="USD")


def test_default_provider_reads_the_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, api_key: str
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", api_key)
    provider = bc.get_provider("stripe")
    assert isinstance(provider, StripeProvider)
    assert provider.base_url == "https://api.stripe.com"
    assert provider.runtime.rate_limit.per_second == 25
    live = bc.get_provider("stripe", api_key="sk_live_x")
    assert live.runtime.rate_limit.per_second == 100
    custom = bc.get_provider("stripe", api_key="sk_live_x", rate_limit="7")
    assert custom.runtime.rate_limit.per_second == 7
    monkeypatch.delenv("STRIPE_API_KEY")
    with pytest.raises(bc.ConfigurationError, match="STRIPE_API_KEY"):
        bc.get_provider("stripe")
