"""Must show 2: retries are the core Runtime's, honest and bounded, with one key throughout."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_credits_stripe import StripeProvider
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc
from billing_credits.testing import Faults

START = datetime(2026, 1, 1, tzinfo=UTC)


def grant(key: str | None = "retry-key-1", **changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "customer_id": "cus_retry",
        "amount": bc.Money(amount=Decimal("10.00"), currency="USD"),
        "effective_at": START,
        "expires_at": START + timedelta(days=365),
        "priority": Decimal(20),
        "idempotency_key": key,
    }
    data.update(changes)
    return bc.CreditGrant.model_validate(data)


class Sent:
    """Every request that left the client (an httpx event hook), faults included."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> None:
        self.requests.append(request)

    async def hook(self, request: httpx.Request) -> None:
        self.requests.append(request)

    def keys(self) -> list[str | None]:
        return [r.headers.get("idempotency-key") for r in self.requests]


@pytest.fixture(params=["in_process", "loopback"])
async def wired(request: pytest.FixtureRequest, fake: StripeFake, faults: Faults,
                runtime: bc.Runtime, api_key: str) -> AsyncIterator[tuple[StripeProvider, Sent]]:
    """The provider with every outgoing request recorded, in process or over loopback HTTP."""
    sent = Sent()
    in_process = request.param == "in_process"
    transport = fake.transport(faults) if in_process else None
    with contextlib.ExitStack() as stack:
        base_url = None if in_process else stack.enter_context(fake.serve(faults)).url
        client = stack.enter_context(
            httpx.Client(transport=transport, event_hooks={"request": [sent]}))
        async with httpx.AsyncClient(transport=transport,
                                     event_hooks={"request": [sent.hook]}) as aclient:
            # Transport behaviour only: the C1 lookup before keyed creates is tested apart.
            settings: dict[str, Any] = {"base_url": base_url} if base_url else {}
            settings["find_existing"] = False
            with bc.get_provider("stripe", api_key=api_key, http_client=client,
                                 async_http_client=aclient, runtime=runtime,
                                 **settings) as provider:
                assert isinstance(provider, StripeProvider)
                yield provider, sent


def test_429_with_retry_after_then_success(
    wired: tuple[StripeProvider, Sent], fake: StripeFake, faults: Faults, sleeps: Any
) -> None:
    provider, sent = wired
    faults.retry_after = 2
    faults.script = ["429", None]
    created = provider.create_grant(grant())
    assert faults.stats.injected["429"] == 1
    assert len(fake.grants) == 1, "one grant"
    assert list(fake.grants) == [created.id]
    assert len(sent.requests) == 2
    assert sent.keys() == ["retry-key-1", "retry-key-1"], "the same key on both attempts"
    assert len(sleeps.waits) == 1
    assert sleeps.waits[0] >= 2, f"Retry-After honoured: {sleeps.waits}"


async def test_429_async_and_a_generated_key_is_stable(
    wired: tuple[StripeProvider, Sent], fake: StripeFake, faults: Faults, sleeps: Any
) -> None:
    provider, sent = wired
    faults.retry_after = 2
    faults.script = ["429", "503", None]
    await provider.acreate_grant(grant(key=None))
    assert len(fake.grants) == 1
    keys = sent.keys()
    assert len(keys) == 3
    assert keys[0]
    assert keys[0].startswith("bc-")
    assert len(set(keys)) == 1, "a create without a key still uses one key for every attempt"
    assert sleeps.waits[0] >= 2


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_timeout_after_commit_then_retry_is_still_one_grant(
    wired: tuple[StripeProvider, Sent], fake: StripeFake, faults: Faults, asynchronous: bool
) -> None:
    provider, sent = wired
    faults.script = ["timeout_after_commit", None]
    if asynchronous:
        created = await provider.acreate_grant(grant())
    else:
        created = provider.create_grant(grant())
    assert faults.stats.injected["timeout_after_commit"] == 1
    assert len(fake.grants) == 1, "the replay returned the committed grant, not a second one"
    assert created.id in fake.grants
    assert len(set(sent.keys())) == 1
    assert len(sent.requests) == 2
    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) == 2, "both attempts reached the fake; the second was replayed"


def test_a_400_is_not_retried(wired: tuple[StripeProvider, Sent], fake: StripeFake,
                              sleeps: Any) -> None:
    provider, sent = wired
    fake.inject_error(400, type_="invalid_request_error", code="parameter_invalid_integer",
                      message="Invalid integer")
    before = provider.runtime.calls
    with pytest.raises(bc.BadRequestError) as refused:
        provider.create_grant(grant())
    assert provider.runtime.calls - before == 1
    assert len(sent.requests) == 1
    assert sleeps.waits == []
    error = refused.value
    assert error.status == 400
    assert error.code == "parameter_invalid_integer"
    assert error.request_id
    assert error.request_id.startswith("req_")
    assert isinstance(error.body, dict)
    assert error.body["error"]["type"] == "invalid_request_error"
    assert not fake.grants


def test_idempotency_mismatch_is_a_conflict_never_a_success(
    wired: tuple[StripeProvider, Sent], fake: StripeFake
) -> None:
    provider, sent = wired
    first = provider.create_grant(grant())
    again = provider.create_grant(grant())
    assert again.id == first.id, "same key, same params: the saved response"
    with pytest.raises(bc.ConflictError) as conflict:
        provider.create_grant(grant(amount=bc.Money(amount=Decimal("99.00"), currency="USD")))
    assert conflict.value.code == "idempotency_error"
    assert conflict.value.retryable is False
    assert conflict.value.status == 400
    assert len(sent.requests) == 3, "the conflict was not retried"
    assert len(fake.grants) == 1


def test_409_lock_conflict_is_retried(wired: tuple[StripeProvider, Sent], fake: StripeFake) -> None:
    provider, sent = wired
    fake.inject_error(409, type_="invalid_request_error", code="lock_timeout",
                      message="This object cannot be accessed right now")
    provider.create_grant(grant())
    assert len(sent.requests) == 2
    assert len(set(sent.keys())) == 1
    assert len(fake.grants) == 1


def test_stripe_should_retry_false_stops_a_5xx(
    wired: tuple[StripeProvider, Sent], fake: StripeFake
) -> None:
    provider, sent = wired
    fake.inject_error(500, headers={"Stripe-Should-Retry": "false"})
    with pytest.raises(bc.UnavailableError) as failed:
        provider.create_grant(grant())
    assert failed.value.retryable is False
    assert len(sent.requests) == 1


def test_stripe_should_retry_true_retries_a_400(
    wired: tuple[StripeProvider, Sent], fake: StripeFake
) -> None:
    provider, sent = wired
    fake.inject_error(400, type_="invalid_request_error", headers={"Stripe-Should-Retry": "true"})
    provider.create_grant(grant())
    assert len(sent.requests) == 2


def test_retries_are_bounded(wired: tuple[StripeProvider, Sent], faults: Faults,
                             fake: StripeFake) -> None:
    provider, sent = wired
    faults.script = ["503"] * 10
    with pytest.raises(bc.UnavailableError):
        provider.create_grant(grant())
    assert len(sent.requests) == 5, "attempts=5 in the test runtime"
    assert not fake.grants


def test_connection_reset_is_retried_and_void_keeps_its_key(
    wired: tuple[StripeProvider, Sent], faults: Faults, fake: StripeFake
) -> None:
    provider, sent = wired
    created = provider.create_grant(grant())
    faults.script = ["timeout_after_commit", None]
    voided = provider.void_grant(created.id or "")
    assert voided.status is bc.GrantStatus.VOIDED
    void_keys = [r.headers.get("idempotency-key") for r in sent.requests[1:]]
    assert len(void_keys) == 2
    assert len(set(void_keys)) == 1, "void retried under one key"
