"""Translation unit tests, and the property: neutral → Stripe → neutral is lossless."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_credits_stripe import StripeProvider
from billing_credits_stripe import _translate as tr
from billing_credits_stripe.testing import StripeFake
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits.testing import strategies as bcst

NOW = datetime(2026, 6, 1, tzinfo=UTC)

# -- money ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "currency", "wire"), [
    ("10.00", "USD", ("usd", 1000)),
    ("10", "USD", ("usd", 1000)),
    ("0.01", "EUR", ("eur", 1)),
    ("1200", "JPY", ("jpy", 1200)),
    ("5000", "KRW", ("krw", 5000)),
    ("7", "MGA", ("mga", 7)),
    ("1.250", "KWD", ("kwd", 1250)),
    ("3", "ISK", ("isk", 300)),
    ("123456789.99", "USD", ("usd", 12345678999)),
])
def test_minor_units_both_ways(amount: str, currency: str, wire: tuple[str, int]) -> None:
    money = bc.Money(amount=Decimal(amount), currency=currency)
    assert tr.to_minor_units(money) == wire
    back = tr.from_minor_units(*wire)
    assert back == money
    assert back.currency == currency


@pytest.mark.parametrize(("amount", "currency"), [
    ("10.005", "USD"), ("0.5", "JPY"), ("1.5", "MGA"), ("1.005", "KWD"), ("1.5", "ISK"),
])
def test_fractions_of_stripe_minor_units_are_refused(amount: str, currency: str) -> None:
    with pytest.raises(bc.NotRepresentableError) as refused:
        tr.to_minor_units(bc.Money(amount=Decimal(amount), currency=currency))
    assert refused.value.fields == ("amount",)


def test_custom_units_are_refused() -> None:
    money = bc.Money(amount=Decimal(1), unit=bc.CreditUnit(id="u"))
    with pytest.raises(bc.NotRepresentableError, match="custom credit units"):
        tr.to_minor_units(money)


def test_exponents_follow_stripe_not_only_iso() -> None:
    assert tr.stripe_exponent("usd") == 2
    assert tr.stripe_exponent("JPY") == 0
    assert tr.stripe_exponent("MGA") == 0
    assert bc.currency_exponent("MGA") == 2
    assert tr.stripe_exponent("ISK") == 2
    assert bc.currency_exponent("ISK") == 0
    assert tr.stripe_exponent("KWD") == 3
    assert tr.stripe_exponent("XAU") is None


def test_from_minor_units_refuses_non_integers() -> None:
    with pytest.raises(TypeError):
        tr.from_minor_units("usd", 10.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tr.from_minor_units("usd", True)


# -- requests ------------------------------------------------------------------------------


def test_create_params_match_the_documented_wire_capture() -> None:
    """The same request as the S-SDK wire capture in vendor-surface.md §5.1."""
    grant = bc.CreditGrant(
        customer_id="cus_123", amount=bc.Money(amount=Decimal("10.00"), currency="USD"),
        scope=bc.Scope(price_ids=("price_A", "price_B")), category=bc.Category.PROMOTIONAL,
        expires_at=datetime(2025, 1, 1, tzinfo=UTC), effective_at=datetime(2024, 1, 1, tzinfo=UTC),
        name="Promo", priority=Decimal(10), metadata={"neutral_id": "g-1"},
    )
    assert tr.create_params(grant) == {
        "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": 1000}},
        "applicability_config": {"scope": {"prices": [{"id": "price_A"}, {"id": "price_B"}]}},
        "category": "promotional",
        "customer": "cus_123",
        "effective_at": 1704067200,
        "expires_at": 1735689600,
        "metadata": {"neutral_id": "g-1"},
        "name": "Promo",
        "priority": 10,
    }


def test_all_usage_becomes_metered_and_is_flagged() -> None:
    grant = bc.CreditGrant(customer_id="cus_1", amount=bc.Money(amount=Decimal(1), currency="USD"))
    params = tr.create_params(grant)
    assert params["applicability_config"] == {"scope": {"price_type": "metered"}}
    assert "priority" not in params
    assert "category" not in params
    assert "effective_at" not in params
    assert "expires_at" not in params
    assert params["metadata"] == {
        "bc_flags": "unset:category,unset:effective_at,unset:priority,scope:all"}


def test_neutral_only_fields_travel_in_reserved_metadata() -> None:
    grant = bc.CreditGrant(
        customer_id="acct_1", amount=bc.Money(amount=Decimal(5), currency="EUR"),
        reason="goodwill", paid_amount=bc.Money(amount=Decimal("2.50"), currency="USD"),
        category=bc.Category.PAID, category_label="enterprise", idempotency_key="k-1",
        effective_at=NOW, priority=Decimal(1), scope=bc.Scope(metered_prices_only=True),
    )
    params = tr.create_params(grant)
    assert params["customer_account"] == "acct_1"
    assert "customer" not in params
    assert params["metadata"] == {"bc_reason": "goodwill", "bc_paid_amount": "2.50 USD",
                                  "bc_category_label": "enterprise", "bc_idempotency_key": "k-1"}


def test_list_and_balance_params() -> None:
    assert tr.list_params("cus_1") == {"limit": 100, "customer": "cus_1"}
    assert tr.list_params(None, limit=500, starting_after="credgr_9") == {
        "limit": 100, "starting_after": "credgr_9"}
    assert tr.list_params("cus_1", limit=0)["limit"] == 1
    assert tr.balance_params("cus_123", "credgr_1") == {
        "customer": "cus_123", "filter": {"type": "credit_grant", "credit_grant": "credgr_1"}}


# -- responses -----------------------------------------------------------------------------

DOC_CREATE = json.loads("""{"id":"credgr_test_61R9a6NUWsRmOW3RM41L6nFOS1ekDGHo",
"object":"billing.credit_grant","amount":{"monetary":{"currency":"usd","value":1000},
"type":"monetary"},"applicability_config":{"scope":{"price_type":"metered"}},"category":"paid",
"created":1726620803,"customer":"cus_QrvQguzkIK8zTj","effective_at":1729297860,
"expires_at":null,"livemode":false,"metadata":{},"name":"Purchased Credits","priority":null,
"test_clock":null,"updated":1726620803}""")


def test_documented_response_reads_back() -> None:
    """Stripe's docs example (an older API version: ``priority: null``)."""
    grant = tr.from_stripe(DOC_CREATE, now=NOW)
    assert grant.priority == 50, "priority null reads as 50"
    assert grant.amount == bc.Money(amount=Decimal("10.00"), currency="USD")
    assert grant.scope == bc.Scope(metered_prices_only=True)
    assert grant.category is bc.Category.PAID
    assert grant.customer_id == "cus_QrvQguzkIK8zTj"
    assert grant.effective_at == datetime.fromtimestamp(1729297860, UTC)
    assert grant.expires_at is None
    assert grant.status is bc.GrantStatus.ACTIVE
    assert grant.created_at == datetime.fromtimestamp(1726620803, UTC)
    assert grant.raw == DOC_CREATE
    assert grant.adjustments == ()


@pytest.mark.parametrize(("changes", "status"), [
    ({"voided_at": 1726688829}, bc.GrantStatus.VOIDED),
    ({"expires_at": 1726688796}, bc.GrantStatus.EXPIRED),
    ({"effective_at": int(NOW.timestamp()) + 60}, bc.GrantStatus.SCHEDULED),
    ({}, bc.GrantStatus.ACTIVE),
    ({"expires_at": int(NOW.timestamp()), "effective_at": 0}, bc.GrantStatus.EXPIRED),
])
def test_status_from_timestamps(changes: dict[str, Any], status: bc.GrantStatus) -> None:
    assert tr.status_of({**DOC_CREATE, **changes}, NOW) is status


def test_expanded_customer_and_unknown_reserved_keys() -> None:
    obj = {**DOC_CREATE, "customer": {"id": "cus_X", "object": "customer"},
           "metadata": {"bc_future": "x", "bc_paid_amount": "garbage", "plain": "y"}}
    grant = tr.from_stripe(obj, now=NOW)
    assert grant.customer_id == "cus_X"
    assert grant.metadata == {"plain": "y", "bc_future": "x", "bc_paid_amount": "garbage"}
    assert [a.field for a in grant.adjustments] == ["paid_amount"]


def test_non_monetary_amount_is_an_error_not_a_guess() -> None:
    with pytest.raises(bc.ProviderError, match="non-monetary"):
        tr.from_stripe({**DOC_CREATE, "amount": {"type": "custom_pricing_unit"}}, now=NOW)


def test_expired_before_effective_reads_without_inventing_credit() -> None:
    obj = {**DOC_CREATE, "effective_at": 2000, "expires_at": 1000}
    grant = tr.from_stripe(obj, now=NOW)
    assert grant.status is bc.GrantStatus.EXPIRED
    assert grant.effective_at is None
    assert grant.expires_at == datetime.fromtimestamp(1000, UTC)
    assert grant.adjustments[0].field == "effective_at"


def test_balance_is_the_smaller_figure_in_the_grant_currency() -> None:
    summary = {"object": "billing.credit_balance_summary", "balances": [
        {"available_balance": {"monetary": {"currency": "usd", "value": 700}, "type": "monetary"},
         "ledger_balance": {"monetary": {"currency": "usd", "value": 900}, "type": "monetary"}},
        {"available_balance": {"monetary": {"currency": "eur", "value": 5}, "type": "monetary"},
         "ledger_balance": {"monetary": {"currency": "eur", "value": 5}, "type": "monetary"}},
    ]}
    assert tr.balance_from_summary(summary, "USD") == bc.Money(amount=Decimal("7.00"),
                                                               currency="USD")
    assert tr.balance_from_summary({"balances": []}, "JPY").amount == 0


def test_differences_report_drift() -> None:
    asked = bc.CreditGrant(customer_id="c", amount=bc.Money(amount=Decimal(1), currency="USD"))
    stored = asked.as_new(name="changed")
    assert [a.field for a in tr.differences(asked, stored)] == ["name"]
    assert tr.differences(asked, asked) == []


# -- the round trip, as a property ---------------------------------------------------------

_FAKE = StripeFake(clock=lambda: 946_000_000, seed=3)  # 1999: before every generated time
_PROVIDER = StripeProvider(
    "sk_test_property", http_client=httpx.Client(transport=_FAKE.transport()),
    runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)), clock=lambda: NOW,
)
_EXPECTED_ADJUSTMENTS = {"scope", "category", "priority", "effective_at"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bcst.grants(StripeProvider.capabilities, time_step=timedelta(seconds=1)))
def test_neutral_to_stripe_to_neutral_is_lossless(grant: bc.CreditGrant) -> None:
    assume(not tr.problems(grant))  # Stripe's own rules beyond the capabilities (KWD to the ten)
    _FAKE.reset()
    created = _PROVIDER.create_grant(grant)
    assert created.as_new() == grant
    assert {a.field for a in created.adjustments} <= _EXPECTED_ADJUSTMENTS
    assert all(a.reason.startswith("Stripe") for a in created.adjustments)
    assert _PROVIDER.get_grant(created.id or "").as_new() == grant
    request = _FAKE.requests[0]
    assert set(request.params.get("metadata", {})) <= set(grant.metadata) | {
        tr.META_REASON, tr.META_PAID_AMOUNT, tr.META_CATEGORY_LABEL, tr.META_IDEMPOTENCY_KEY,
        tr.META_FLAGS}


@given(st.integers(min_value=1, max_value=10**15),
       st.sampled_from(["usd", "jpy", "kwd", "isk", "mga", "eur"]))
def test_minor_units_round_trip(value: int, currency: str) -> None:
    if currency == "isk":
        value *= 100
    if currency == "kwd":
        value *= 10
    money = tr.from_minor_units(currency, value)
    assert tr.to_minor_units(money) == (currency, value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(st.datetimes(min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29)),
       st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))]))
def test_timestamps_are_the_exact_whole_seconds(moment: datetime, zone: timezone) -> None:
    """``to_timestamp`` reads a UTC time through a double (issue 17): every whole second of
    years 1-9999 must come out exact, and any other zone and any fraction as before."""
    aware = moment.replace(tzinfo=zone)
    since = aware - _EPOCH
    if since.microseconds:
        with pytest.raises(ValueError, match="sub-second"):
            tr.to_timestamp(aware)
    else:
        assert tr.to_timestamp(aware) == since.days * 86_400 + since.seconds


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None,
                   min_value=Decimal("0.0000001"), max_value=Decimal("1e30")),
       st.sampled_from(["USD", "JPY", "KWD", "ISK", "EUR"]))
@example(Decimal("1234567890123456789012345678.91"), "USD")  # beyond 28 digits and a double
@example(Decimal("90071992547409.93"), "USD")
def test_minor_units_are_exact_or_refused(amount: Decimal, currency: str) -> None:
    """Minor units come from the amount's exact integer ratio (issue 17): a whole number of
    them is exact, never rounded; anything else is refused, never truncated."""
    try:
        money = bc.Money(amount=amount, currency=currency)
    except bc.InvalidGrantError:  # beyond what the model holds (40 digits)
        assume(False)
        return
    exponent = tr.stripe_exponent(currency)
    assert exponent is not None
    scaled = amount.scaleb(exponent, context=bc.exact_context())
    try:
        _, value = tr.to_minor_units(money)
    except bc.NotRepresentableError:
        assert scaled != scaled.to_integral_value() or scaled > tr.MAX_AMOUNT_VALUE \
            or currency in ("ISK", "KWD")
        return
    assert Decimal(value) == scaled
