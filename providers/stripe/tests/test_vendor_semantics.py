"""Issue 18 (points 1, 2, 4, 5) on Stripe: the balance summary's two figures as Stripe documents
them, test clocks, edits refused before any request, and ledger entries Stripe leaves unnamed.
Each test here failed on the code before issue 18 (the failure is named in its docstring)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_credits_stripe import StripeProvider
from billing_credits_stripe._ledger import entry_from_transaction
from billing_credits_stripe.testing import StripeFake, undeclared_params
from hypothesis import given
from hypothesis import strategies as st

import billing_credits as bc

API_KEY = "sk_test_semantics"
CUSTOMER = "cus_semantics"
T0 = datetime(2026, 6, 1, tzinfo=UTC)


class Clock:
    """The library's clock (a datetime), separate from the fake's (Unix seconds)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.fixture
def fake_now() -> list[int]:
    return [seconds(T0)]


@pytest.fixture
def fake(fake_now: list[int]) -> StripeFake:
    return StripeFake(clock=lambda: fake_now[0], seed=18)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def provider(fake: StripeFake, clock: Clock) -> Iterator[StripeProvider]:
    transport = fake.transport()
    with StripeProvider(
        API_KEY, http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport), clock=clock,
        runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)),
    ) as created:
        yield created


def usd(text: str) -> bc.Money:
    return bc.Money(amount=Decimal(text), currency="USD")


def grant(amount: str, *, starts: datetime | None, ends: datetime | None,
          priority: int = 50) -> bc.CreditGrant:
    return bc.CreditGrant(customer_id=CUSTOMER, amount=usd(amount), name="g",
                          priority=Decimal(priority), effective_at=starts, expires_at=ends)


def checked(fake: StripeFake) -> None:
    """Every request the provider sent is one the stripe SDK's params declare."""
    for request in fake.requests:
        assert undeclared_params(request.method, request.path, request.raw_params) == [], request


# -- 1. available_balance vs ledger_balance --------------------------------------------------


def test_an_expiry_not_yet_posted_is_expired_credit_not_pending(
    provider: StripeProvider, fake: StripeFake, fake_now: list[int], clock: Clock
) -> None:
    """Before issue 18 the difference ledger_balance - available_balance was reported as
    ``pending`` (10.00 here) and the fake's two figures were always equal. Stripe: available is
    the ledger "less any expired billing credits for which expiration ledger transaction
    entries haven't yet been committed" (credit-balance-summary/object)."""
    fake.expiry_commit_delay = 3600
    made = provider.create_grant(grant("10.00", starts=T0 - timedelta(days=1),
                                       ends=T0 + timedelta(seconds=30)))
    fake_now[0] += 60  # Stripe's side: the grant expired 30 s ago, its expiry is not posted
    # The library's clock lags Stripe's by a minute: it still reads the grant as live.
    [balance] = provider.get_balance(CUSTOMER)
    assert balance.usable == usd("0")
    assert balance.pending == usd("0"), "expired credit is not pending usage"
    assert balance.uninvoiced_usage_deducted is False
    [note] = [n for n in balance.notes if made.id and made.id in n]
    assert "10.00 USD expired credit not yet posted" in note
    kinds = [e.kind for e in provider.list_ledger(CUSTOMER)]
    assert bc.LedgerKind.EXPIRED not in kinds, "no credits_expired entry before the commit"

    fake.commit_expirations()
    [after] = provider.get_balance(CUSTOMER)
    assert after.usable == usd("0")
    assert not [n for n in after.notes if "not yet posted" in n]
    entries = list(provider.list_ledger(CUSTOMER))
    assert [(e.kind, e.amount) for e in entries if e.kind is bc.LedgerKind.EXPIRED] == [
        (bc.LedgerKind.EXPIRED, usd("-10.00"))]
    checked(fake)


def test_every_stripe_balance_says_uninvoiced_usage_is_not_deducted(
    provider: StripeProvider
) -> None:
    """Before issue 18 ``Balance`` had no way to say it (no field, no note)."""
    provider.create_grant(grant("5.00", starts=T0 - timedelta(days=1), ends=None))
    [balance] = provider.get_balance(CUSTOMER)
    assert balance.usable == usd("5.00")
    assert balance.uninvoiced_usage_deducted is False
    assert any("not yet invoiced is not deducted" in n for n in balance.notes)


# -- 2. test clocks ----------------------------------------------------------------------------


def test_a_grant_on_a_test_clock_lives_on_the_clocks_frozen_time(
    provider: StripeProvider, fake: StripeFake, fake_now: list[int], clock: Clock
) -> None:
    """Before issue 18 status and balance used the wall clock (here a year after the frozen
    time: every grant read EXPIRED, balance 0) and the fake had no test clocks."""
    clock_id = fake.create_test_clock(seconds(T0))
    fake.attach_test_clock(CUSTOMER, clock_id)
    fake_now[0] = seconds(T0 + timedelta(days=365))
    clock.now = T0 + timedelta(days=365)
    first = provider.create_grant(grant("10.00", starts=None, ends=T0 + timedelta(days=1)))
    second = provider.create_grant(grant("4.00", starts=T0 - timedelta(hours=1),
                                         ends=T0 + timedelta(days=2), priority=10))
    assert first.raw is not None
    assert first.raw["test_clock"] == clock_id
    assert first.raw["effective_at"] == seconds(T0), "effective_at defaults to the frozen time"
    assert {first.status, second.status} == {bc.GrantStatus.ACTIVE}

    listed = list(provider.list_grants(CUSTOMER))
    assert {g.status for g in listed} == {bc.GrantStatus.ACTIVE}
    assert provider.get_grant(first.id or "").status is bc.GrantStatus.ACTIVE
    [balance] = provider.get_balance(CUSTOMER)
    assert balance.usable == usd("14.00")
    assert balance.as_of == T0
    assert any(clock_id in n for n in balance.notes)
    clock_reads = [r for r in fake.requests if r.path.startswith("/v1/test_helpers/test_clocks/")]
    assert len(clock_reads) == 1, "one GET per clock for the provider's life"
    assert clock_reads[0].method == "GET"

    # Consumption happens on the clock's time too: priority 10 first, then the other.
    drawn = fake.consume(CUSTOMER, 600)
    assert [(d["credit_grant"], d["debit"]["amount"]["monetary"]["value"]) for d in drawn] == [
        (second.id, 400), (first.id, 200)]
    assert all(d["effective_at"] == seconds(T0) and d["test_clock"] == clock_id for d in drawn)
    assert provider.get_balance(CUSTOMER)[0].usable == usd("8.00")

    fake.advance_test_clock(clock_id, seconds(T0 + timedelta(days=1, hours=1)))
    provider.forget_test_clocks()
    assert provider.get_grant(first.id or "").status is bc.GrantStatus.EXPIRED
    assert provider.get_grant(second.id or "").status is bc.GrantStatus.ACTIVE
    checked(fake)


def test_the_fake_refuses_moving_a_test_clock_back(fake: StripeFake) -> None:
    """``TestClockAdvanceParams.frozen_time``: "Must be after the test clock's current frozen
    time". Before issue 18 the fake had no test-clock endpoints (404)."""
    with httpx.Client(transport=fake.transport(), base_url="https://api.stripe.com",
                      headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        made = client.post("/v1/test_helpers/test_clocks",
                           data={"frozen_time": str(seconds(T0))})
        assert made.status_code == 200, made.text
        clock_id = made.json()["id"]
        assert made.json()["object"] == "test_helpers.test_clock"
        back = client.post(f"/v1/test_helpers/test_clocks/{clock_id}/advance",
                           data={"frozen_time": str(seconds(T0) - 1)})
        assert back.status_code == 400
        ahead = client.post(f"/v1/test_helpers/test_clocks/{clock_id}/advance",
                            data={"frozen_time": str(seconds(T0) + 3600)})
        assert ahead.json()["frozen_time"] == seconds(T0) + 3600
        assert client.get(f"/v1/test_helpers/test_clocks/{clock_id}").json()["status"] == "ready"
        assert client.get("/v1/test_helpers/test_clocks/clock_nope").status_code == 404


# -- 4. updates refused before any request ---------------------------------------------------


def test_update_refusals_send_no_request(provider: StripeProvider, fake: StripeFake) -> None:
    """Before issue 18 the update flow read the grant (a GET) before refusing what did not
    depend on it: ``update_grant(metadata={"a": ""})`` and ``GrantUpdate(name=..., metadata=...)``
    each sent one request."""
    made = provider.create_grant(grant("1.00", starts=T0, ends=None))
    before = len(fake.requests)
    with pytest.raises(bc.NotRepresentableError, match="unset"):
        provider.update_grant(made.id or "", metadata={"a": ""})
    assert len(fake.requests) == before, "no GET before refusing an empty value"
    with pytest.raises(bc.NotRepresentableError, match="name"):
        provider.runtime.run(provider._update(
            made.id or "", bc.GrantUpdate(name="renamed", metadata={"a": "b"})))
    assert len(fake.requests) == before, "no GET before refusing name"
    with pytest.raises(bc.NotRepresentableError, match="category"):
        provider.update_grant(made.id or "", category="promotional")
    with pytest.raises(bc.NotRepresentableError, match="name"):
        provider.update_grant(made.id or "", name="renamed", metadata={"a": "b"})
    assert len(fake.requests) == before, "no request at all"


# -- 5. ledger entries Stripe does not name ----------------------------------------------------


def _transaction(type_: str | None, *, credit: Any = None, debit: Any = None) -> dict[str, Any]:
    return {"id": "cbtxn_odd", "object": "billing.credit_balance_transaction",
            "created": seconds(T0), "effective_at": seconds(T0), "credit_grant": "credgr_1",
            "livemode": False, "test_clock": None, "type": type_, "credit": credit,
            "debit": debit}


def _detail(sub: str, value: int) -> dict[str, Any]:
    return {"amount": {"type": "monetary", "monetary": {"currency": "usd", "value": value}},
            "type": sub}


def test_a_null_type_reads_as_adjusted_signed_by_the_detail_present() -> None:
    """``type`` is nullable (SDK ``Optional[...]``, OpenAPI ``nullable: true``); before issue 18
    a null type was refused (InvalidResponseError)."""
    debit = entry_from_transaction(_transaction(None, debit=_detail("credits_applied", 250)),
                                   CUSTOMER)
    assert (debit.kind, debit.amount) == (bc.LedgerKind.ADJUSTED, usd("-2.50"))
    assert debit.raw is not None
    assert debit.raw["type"] is None, "the raw entry is kept"
    credit = entry_from_transaction(_transaction(None, credit=_detail("credits_granted", 100)),
                                    CUSTOMER)
    assert (credit.kind, credit.amount) == (bc.LedgerKind.ADJUSTED, usd("1.00"))
    with pytest.raises(bc.InvalidResponseError, match=r"cbtxn_odd.*no amount"):
        entry_from_transaction(_transaction(None), CUSTOMER)
    with pytest.raises(bc.InvalidResponseError, match="both"):
        entry_from_transaction(_transaction(None, credit=_detail("credits_granted", 1),
                                            debit=_detail("credits_applied", 1)), CUSTOMER)


def test_unknown_kinds_follow_one_rule() -> None:
    """An unknown sub-type reads as adjusted (open enums in the SDK); an unknown top-level
    type is refused. The README said unknown types were errors while the code read unknown
    sub-types as adjusted; now both say the same (README, "Ledger")."""
    odd = entry_from_transaction(_transaction("debit", debit=_detail("credits_clawed", 75)),
                                 CUSTOMER)
    assert (odd.kind, odd.amount) == (bc.LedgerKind.ADJUSTED, usd("-0.75"))
    with pytest.raises(bc.InvalidResponseError, match="refund"):
        entry_from_transaction(_transaction("refund", debit=_detail("credits_applied", 1)),
                               CUSTOMER)


def test_the_ledger_lists_a_null_type_entry(provider: StripeProvider, fake: StripeFake) -> None:
    """Through the provider: one entry with ``type: null`` no longer fails the whole page."""
    made = provider.create_grant(grant("3.00", starts=T0 - timedelta(days=1), ends=None))
    fake.applied.append({**_transaction(None, debit=_detail("credits_applied", 50)),
                         "id": "cbtxn_null", "credit_grant": made.id, "customer": CUSTOMER})
    entries = list(provider.list_ledger(CUSTOMER))
    assert [(e.kind, e.amount) for e in entries] == [
        (bc.LedgerKind.ADJUSTED, usd("-0.50")), (bc.LedgerKind.GRANTED, usd("3.00"))]


def test_a_clock_stripe_no_longer_has_is_a_clear_error(
    provider: StripeProvider, fake: StripeFake
) -> None:
    """Clocks auto-delete (``deletes_after``): a grant whose clock is gone raises a
    ``NotFoundError`` naming the clock, sync and async, not a crash."""
    import asyncio

    clock_id = fake.create_test_clock(seconds(T0))
    fake.attach_test_clock(CUSTOMER, clock_id)
    made = provider.create_grant(grant("1.00", starts=T0, ends=None))
    provider.forget_test_clocks()
    del fake.test_clocks[clock_id]
    with pytest.raises(bc.NotFoundError, match="test_clock"):
        provider.get_grant(made.id or "")
    with pytest.raises(bc.NotFoundError, match="test_clock"):
        asyncio.run(provider.aget_grant(made.id or ""))


@given(value=st.integers(min_value=0, max_value=2**63 - 1),
       side=st.sampled_from(["credit", "debit"]),
       sub=st.one_of(st.sampled_from(["credits_applied", "credits_granted", "credits_expired"]),
                     st.text(min_size=1, max_size=30)),
       top=st.sampled_from([None, "same"]))
def test_unnamed_kinds_read_exactly_as_adjusted(value: int, side: str, sub: str,
                                                top: str | None) -> None:
    """Whatever the amount and sub-type, an entry read as adjusted keeps the exact amount in
    minor units, signed by its side, and its raw payload."""
    known = {"credit": {"credits_granted", "credits_application_invoice_voided"},
             "debit": {"credits_applied", "credits_expired", "credits_voided"}}
    type_ = None if top is None else side
    entry = entry_from_transaction(_transaction(type_, **{side: _detail(sub, value)}), CUSTOMER)
    if type_ is None or sub not in known[side]:
        assert entry.kind is bc.LedgerKind.ADJUSTED
    expected = Decimal(value).scaleb(-2)
    assert entry.amount.amount == (expected if side == "credit" else -expected)
    assert entry.raw == _transaction(type_, **{side: _detail(sub, value)})
