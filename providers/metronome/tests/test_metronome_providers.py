"""Both providers through ``billing_credits.get_provider`` against the fake: in process and over
loopback HTTP, sync and async. Idempotency, retries, errors and secrecy."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_credits_metronome import MetronomeCreditsProvider, MetronomePlansProvider
from billing_credits_metronome._translate import floor_hour
from billing_credits_metronome.testing import MetronomeFake
from metronome_helpers import PRODUCT, TOKEN, Sleeps, make_fake, runtime

import billing_credits as bc
from billing_credits.testing import FakeTransport, Faults

Connect = Callable[..., tuple[bc.Provider, Faults]]
PROVIDERS = ["metronome", "metronome-plans"]
LIST_PATH = {"metronome": "/v1/contracts/customerCredits/list",
             "metronome-plans": "/v1/credits/listGrants"}
CREATE_PATH = {"metronome": "/v1/contracts/customerCredits/create",
               "metronome-plans": "/v1/credits/createGrant"}


def sample(customer: str, i: int = 0, **changes: Any) -> bc.CreditGrant:
    start = floor_hour(datetime.now(UTC)) - timedelta(hours=2)
    data: dict[str, Any] = {
        "customer_id": customer,
        "amount": bc.Money(amount=Decimal("10.00") + i, currency="USD"),
        "name": f"Credit {i}", "reason": "goodwill", "effective_at": start,
        "expires_at": start + timedelta(days=30), "priority": Decimal("0.5"),
        "metadata": {"n": str(i)}, "idempotency_key": f"must-show-{uuid.uuid4()}",
    }
    data.update(changes)
    return bc.CreditGrant(**data)


def _creates(fake: MetronomeFake) -> int:
    return len(fake.grants) + len(fake.credits)


# -- must show 1: create, list 3+ pages, get, void, expire ----------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
def test_lifecycle_sync(name: str, connect: Connect, fake: MetronomeFake) -> None:
    provider, _ = connect(name)
    customer = str(uuid.uuid4())
    created = [provider.create_grant(sample(customer, i)) for i in range(5)]
    assert all(g.status is bc.GrantStatus.ACTIVE and g.provider == name for g in created)
    assert created[0].amount == bc.Money(amount=Decimal("10.00"), currency="USD")

    pages_before = sum(1 for r in fake.requests if r[0] == LIST_PATH[name])
    listed = list(provider.list_grants(customer, page_size=2))
    pages = sum(1 for r in fake.requests if r[0] == LIST_PATH[name]) - pages_before
    assert pages == 3
    assert [g.id for g in listed] == [g.id for g in created]
    assert listed == created

    assert created[0].id is not None
    fetched = provider.get_grant(created[0].id)
    assert fetched == created[0]
    assert fetched.balance == bc.Money(amount=Decimal("10.00"), currency="USD")

    assert created[1].id is not None
    if name == "metronome-plans":
        voided = provider.void_grant(created[1].id)
        assert voided.status is bc.GrantStatus.VOIDED
        assert voided.balance == bc.Money(amount=Decimal(0), currency="USD")
        with pytest.raises(bc.NotFoundError):
            provider.get_grant(created[1].id)
        assert len(list(provider.list_grants(customer))) == 4
    else:
        with pytest.raises(bc.UnsupportedOperationError):
            provider.void_grant(created[1].id)

    assert created[2].id is not None
    expired = provider.expire_grant(created[2].id)
    assert expired.status is bc.GrantStatus.EXPIRED
    assert expired.expires_at == floor_hour(datetime.now(UTC))
    assert [a.field for a in expired.adjustments] == ["expires_at"]
    assert provider.get_grant(created[2].id).status is bc.GrantStatus.EXPIRED


@pytest.mark.parametrize("name", PROVIDERS)
async def test_lifecycle_async(name: str, connect: Connect, fake: MetronomeFake) -> None:
    provider, _ = connect(name)
    customer = str(uuid.uuid4())
    created = [await provider.acreate_grant(sample(customer, i)) for i in range(5)]
    pages_before = sum(1 for r in fake.requests if r[0] == LIST_PATH[name])
    listed = [g async for g in provider.alist_grants(customer, page_size=2)]
    assert sum(1 for r in fake.requests if r[0] == LIST_PATH[name]) - pages_before == 3
    assert listed == created
    assert created[0].id is not None
    assert await provider.aget_grant(created[0].id) == created[0]
    assert created[1].id is not None
    if name == "metronome-plans":
        voided = await provider.avoid_grant(created[1].id)
        assert voided.status is bc.GrantStatus.VOIDED
        with pytest.raises(bc.NotFoundError):
            await provider.aget_grant(created[1].id)
    else:
        with pytest.raises(bc.UnsupportedOperationError):
            await provider.avoid_grant(created[1].id)
    assert created[2].id is not None
    expired = await provider.aexpire_grant(created[2].id)
    assert expired.status is bc.GrantStatus.EXPIRED
    await provider.aclose()


def test_multi_segment_credit_lives_through_the_api(connect: Connect) -> None:
    provider, _ = connect("metronome")
    start = floor_hour(datetime.now(UTC)) - timedelta(days=10)
    segments = tuple(
        bc.Segment(amount=Decimal(a), starts_at=start + timedelta(days=20 * i),
                   ends_before=start + timedelta(days=20 * (i + 1)))
        for i, a in enumerate(["1.25", "2.50", "3.75"]))
    grant = bc.CreditGrant(customer_id=str(uuid.uuid4()),
                           amount=bc.Money(amount=Decimal("7.50"), currency="USD"),
                           schedule=segments, priority=Decimal(3),
                           scope=bc.Scope(specifiers=(bc.Specifier(product_id=PRODUCT),)))
    created = provider.create_grant(grant)
    assert created.schedule is not None
    assert [(s.amount, s.starts_at, s.ends_before) for s in created.schedule] == [
        (s.amount, s.starts_at, s.ends_before) for s in segments]
    assert all(s.id for s in created.schedule)
    # The neutral balance: Metronome's usable-now 1.25 plus the two segments still to come.
    assert created.balance == bc.Money(amount=Decimal("7.50"), currency="USD")
    assert created.id is not None
    expired = provider.expire_grant(created.id)
    # later segments are dropped, the current one cut short: one window is left
    assert expired.schedule is None
    assert expired.amount == bc.Money(amount=Decimal("1.25"), currency="USD")
    assert expired.expires_at == floor_hour(datetime.now(UTC))
    assert expired.status is bc.GrantStatus.EXPIRED


# -- must show 3: one grant per uniqueness key; 429 then success ------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
def test_same_uniqueness_key_twice_is_one_grant(name: str, connect: Connect,
                                                fake: MetronomeFake) -> None:
    provider, _ = connect(name)
    grant = sample(str(uuid.uuid4()))
    first = provider.create_grant(grant)
    second = provider.create_grant(grant)
    assert second.id == first.id
    assert second == first
    assert _creates(fake) == 1
    creates = [r for r in fake.requests if r[0] == CREATE_PATH[name]]
    assert len(creates) == 2  # the 409 was not retried
    assert [g.id for g in provider.list_grants(grant.customer_id)] == [first.id]


@pytest.mark.parametrize("name", PROVIDERS)
def test_same_key_for_a_different_grant_is_a_conflict(name: str, connect: Connect,
                                                      fake: MetronomeFake) -> None:
    provider, _ = connect(name)
    grant = sample(str(uuid.uuid4()))
    provider.create_grant(grant)
    other = grant.model_copy(update={"amount": bc.Money(amount=Decimal(99), currency="USD")})
    with pytest.raises(bc.ConflictError, match="different") as conflict:
        provider.create_grant(other)
    assert conflict.value.status == 409
    assert conflict.value.retryable is False
    assert _creates(fake) == 1


@pytest.mark.parametrize("name", PROVIDERS)
def test_429_with_retry_after_then_success_is_one_grant(
    name: str, connect: Connect, fake: MetronomeFake, sleeps: Sleeps
) -> None:
    provider, faults = connect(name, Faults(script=["429"], retry_after=3))
    created = provider.create_grant(sample(str(uuid.uuid4())))
    assert created.id
    assert faults.stats.injected["429"] == 1
    assert sleeps.waits
    assert sleeps.waits[0] >= 3
    assert _creates(fake) == 1


@pytest.mark.parametrize("name", PROVIDERS)
async def test_429_then_success_async(name: str, connect: Connect, fake: MetronomeFake,
                                      sleeps: Sleeps) -> None:
    provider, faults = connect(name, Faults(script=["429"], retry_after=2))
    await provider.acreate_grant(sample(str(uuid.uuid4())))
    assert faults.stats.injected["429"] == 1
    assert sleeps.waits[0] >= 2
    assert _creates(fake) == 1
    await provider.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
def test_timeout_after_commit_is_still_one_grant(name: str, connect: Connect,
                                                 fake: MetronomeFake) -> None:
    provider, faults = connect(name, Faults(script=["timeout_after_commit"]))
    grant = sample(str(uuid.uuid4()))
    created = provider.create_grant(grant)
    assert faults.stats.injected["timeout_after_commit"] == 1
    assert _creates(fake) == 1
    assert [g.id for g in provider.list_grants(grant.customer_id)] == [created.id]
    assert created.idempotency_key == grant.idempotency_key


@pytest.mark.parametrize("name", PROVIDERS)
def test_timeout_after_commit_without_a_caller_key_is_one_grant(
    name: str, connect: Connect, fake: MetronomeFake
) -> None:
    provider, _ = connect(name, Faults(script=["timeout_after_commit"]))
    grant = sample(str(uuid.uuid4()), idempotency_key=None)
    created = provider.create_grant(grant)
    assert _creates(fake) == 1
    assert created.idempotency_key is None


@pytest.mark.parametrize("name", PROVIDERS)
def test_5xx_and_resets_are_retried(name: str, connect: Connect, fake: MetronomeFake,
                                    sleeps: Sleeps) -> None:
    provider, _faults = connect(name, Faults(script=["500", "reset", "503"]))
    provider.create_grant(sample(str(uuid.uuid4())))
    assert len(sleeps.waits) == 3
    assert _creates(fake) == 1


@pytest.mark.parametrize("name", PROVIDERS)
def test_other_4xx_are_not_retried_and_carry_context(name: str, connect: Connect,
                                                     fake: MetronomeFake, sleeps: Sleeps) -> None:
    provider, _ = connect(name)
    unknown_unit = bc.Money(amount=Decimal(5), unit=bc.CreditUnit(id=str(uuid.uuid4())))
    with pytest.raises(bc.NotFoundError) as missing:
        provider.create_grant(sample(str(uuid.uuid4()), amount=unknown_unit))
    error = missing.value
    assert error.status == 404
    assert isinstance(error.body, dict)
    assert "Credit type" in error.body["message"]
    assert error.request_id
    assert sleeps.waits == []
    assert len([r for r in fake.requests if r[0] == CREATE_PATH[name]]) == 1


def test_retries_stop_after_max_retries() -> None:
    recorder = Sleeps()
    faults = Faults(probabilities={"503": 1.0})
    transport = FakeTransport(make_fake(), faults)
    provider = bc.get_provider(
        "metronome-plans", bearer_token=TOKEN, http_client=httpx.Client(transport=transport),
        runtime=runtime(recorder, attempts=3))
    with pytest.raises(bc.UnavailableError) as failed:
        provider.get_grant(str(uuid.uuid4()))
    assert failed.value.status == 503
    assert faults.stats.injected["503"] == 3


# -- errors and secrecy -----------------------------------------------------------------------


def test_token_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = FakeTransport(MetronomeFake(token="another-token"))
    provider = bc.get_provider("metronome-plans", bearer_token=TOKEN,
                               http_client=httpx.Client(transport=transport), runtime=runtime())
    with pytest.raises(bc.AuthenticationError) as denied:
        provider.create_grant(sample(str(uuid.uuid4())))
    texts = [str(denied.value), repr(denied.value), repr(provider), str(provider),
             repr(vars(provider)), str(denied.value.body), caplog.text]
    assert all(TOKEN not in text for text in texts)
    assert denied.value.status == 401
    info = {p.name: p for p in bc.available_providers()}
    assert all(s.secret for s in info["metronome"].settings if s.name == "bearer_token")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRONOME_BEARER_TOKEN", TOKEN)
    monkeypatch.setenv("METRONOME_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("METRONOME_CREDIT_PRODUCT_ID", PRODUCT)
    credits = bc.get_provider("metronome")
    assert isinstance(credits, MetronomeCreditsProvider)
    assert credits.config.product_id == PRODUCT
    assert "127.0.0.1:9" in repr(credits)
    plans = bc.get_provider("metronome-plans", rate_limit="5", max_retries="1",
                            default_priority="7.5", credit_types={"eur-type": "EUR"})
    assert isinstance(plans, MetronomePlansProvider)
    assert plans.runtime.rate_limit.per_second == 5
    assert plans.runtime.retry.attempts == 2
    assert plans.capabilities.priority.default == Decimal("7.5")
    assert plans.capabilities.currencies == frozenset({"USD", "EUR"})
    with pytest.raises(bc.ConfigurationError):
        bc.get_provider("metronome-plans", product_id=PRODUCT)
    monkeypatch.delenv("METRONOME_BEARER_TOKEN")
    with pytest.raises(bc.ConfigurationError, match="bearer_token"):
        bc.get_provider("metronome-plans")


def test_default_rate_limit_is_cautious() -> None:
    provider = bc.get_provider("metronome-plans", bearer_token=TOKEN)
    assert provider.runtime.rate_limit.per_second == 10
    assert provider.runtime.retry.attempts == 5


def test_invoicing_opt_in_sends_the_paid_amount(fake: MetronomeFake) -> None:
    transport = FakeTransport(fake)
    provider = bc.get_provider("metronome-plans", bearer_token=TOKEN, invoice_paid_amount=True,
                               http_client=httpx.Client(transport=transport), runtime=runtime())
    paid = provider.create_grant(sample(str(uuid.uuid4()), category=bc.Category.PAID,
                                        paid_amount=bc.Money(amount=Decimal(25), currency="USD")))
    body = next(r[2] for r in fake.requests if r[0] == "/v1/credits/createGrant")
    assert body["paid_amount"]["amount"] == 2500
    assert paid.paid_amount == bc.Money(amount=Decimal(25), currency="USD")
    assert paid.raw is not None
    assert paid.raw.get("invoice_id")


def test_balance_reflects_deductions(fake: MetronomeFake) -> None:
    transport = FakeTransport(fake)
    provider = bc.get_provider("metronome-plans", bearer_token=TOKEN,
                               http_client=httpx.Client(transport=transport), runtime=runtime())
    created = provider.create_grant(sample(str(uuid.uuid4())))
    assert created.id is not None
    fake.deduct(created.id, 250)
    fake.deduct(created.id, 100, pending=True)
    read = provider.get_grant(created.id)
    assert read.balance == bc.Money(amount=Decimal("6.50"), currency="USD")
    assert read.raw is not None
    assert read.raw["_summary"]["deductions"]["amount"] == "250"
    assert read.raw["_summary"]["pending_deductions"]["amount"] == "100"


def test_listing_customer_credits_needs_a_customer(connect: Connect) -> None:
    provider, _ = connect("metronome")
    with pytest.raises(bc.UnsupportedOperationError, match="customer_id"):
        list(provider.list_grants())


def test_plans_list_every_customer(connect: Connect) -> None:
    provider, _ = connect("metronome-plans")
    a = provider.create_grant(sample(str(uuid.uuid4())))
    b = provider.create_grant(sample(str(uuid.uuid4())))
    assert {g.id for g in provider.list_grants(page_size=1)} == {a.id, b.id}


def test_the_socket_guard_allows_only_loopback() -> None:
    import socket

    with pytest.raises(RuntimeError, match="only loopback"):
        socket.create_connection(("203.0.113.7", 443), timeout=0.1)
    with pytest.raises(RuntimeError, match="only loopback"):
        socket.getaddrinfo("api.metronome.com", 443)
    provider = bc.get_provider("metronome-plans", bearer_token=TOKEN, runtime=runtime(attempts=1))
    with pytest.raises(RuntimeError, match="only loopback"):  # never reaches the real host
        provider.get_grant(str(uuid.uuid4()))
