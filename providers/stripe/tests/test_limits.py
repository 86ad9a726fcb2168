"""Issues 8.2, 8.7, 8.10, 9.4 on Stripe: exact minor units, Stripe's own limits before any
request, the balance of a grant still to come, and every field Stripe returns read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_credits_stripe import StripeProvider
from billing_credits_stripe import _translate as tr
from billing_credits_stripe.testing import StripeFake
from hypothesis import given
from hypothesis import strategies as st

import billing_credits as bc

NOW = datetime.now(UTC).replace(microsecond=0)


def grant(amount: str = "10.00", currency: str = "USD", **changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "customer_id": "cus_limits",
        "amount": bc.Money(amount=Decimal(amount), currency=currency),
        "effective_at": NOW - timedelta(hours=1),
    }
    data.update(changes)
    return bc.CreditGrant.model_validate(data)


def refused(provider: StripeProvider, fake: StripeFake, candidate: bc.CreditGrant) -> list[str]:
    """The fields named by the refusal; asserts nothing was sent."""
    with pytest.raises(bc.NotRepresentableError) as error:
        provider.create_grant(candidate)
    assert fake.requests == []
    return list(error.value.fields)


# -- 8.7 / 9.4: minor units in the exact context, Stripe's integer limit ----------------------


@pytest.mark.parametrize(("amount", "currency"), [
    ("1234567890123456789012345678.91", "USD"),  # was sent as ...567900 (28-digit rounding)
    ("1E+20", "USD"),                             # was sent as 10^22 cents
    ("123456789012345678901234567.890", "KWD"),   # was decimal.DivisionImpossible
    ("92233720368547758.08", "USD"),              # one cent past 2^63 - 1
])
def test_amounts_stripe_cannot_hold_are_refused_not_rounded(
        amount: str, currency: str, provider: StripeProvider, fake: StripeFake) -> None:
    assert refused(provider, fake, grant(amount, currency)) == ["amount"]


def test_the_largest_64_bit_amount_is_sent_exactly(provider: StripeProvider,
                                                    fake: StripeFake) -> None:
    created = provider.create_grant(grant("92233720368547758.07"))
    assert fake.requests[-1].params["amount"]["monetary"]["value"] == str(2**63 - 1)
    assert created.amount.amount == Decimal("92233720368547758.07")


def test_fake_refuses_values_past_64_bits(fake: StripeFake) -> None:
    body = ("amount[type]=monetary&amount[monetary][currency]=usd"
            f"&amount[monetary][value]={2**63}&applicability_config[scope][price_type]=metered"
            "&customer=cus_x")
    with httpx.Client(transport=fake.transport(), base_url="https://api.stripe.com") as http:
        answer = http.post("/v1/billing/credit_grants", content=body, headers={
            "Authorization": "Bearer sk_test_x",
            "Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "amount[monetary][value]"


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1E+35"), places=2,
                   allow_nan=False, allow_infinity=False))
def test_minor_units_are_exact_or_refused(amount: Decimal) -> None:
    money = bc.Money(amount=amount, currency="USD")
    try:
        currency, value = tr.to_minor_units(money)
    except bc.NotRepresentableError:
        assert amount * 100 > tr.MAX_AMOUNT_VALUE
        return
    assert currency == "usd"
    assert Decimal(value) == amount.scaleb(2, context=bc._money.exact())
    assert tr.from_minor_units("usd", value).amount == amount


def test_a_lone_surrogate_is_refused_before_io(provider: StripeProvider,
                                                fake: StripeFake) -> None:
    """The neutral model itself refuses text that is not valid Unicode, so such a grant never
    reaches Stripe (nor any provider)."""
    for changes, field in (({"name": "bad \udc80 name"}, "name"),
                           ({"metadata": {"k": "\ud800"}}, "metadata")):
        with pytest.raises(bc.InvalidGrantError) as caught:
            grant(**changes)
        assert caught.value.fields[0].startswith(field)
    assert fake.requests == []


@pytest.mark.parametrize("key", ["clé-1", "line\r\nbreak", "tab\there"])
def test_header_unsafe_idempotency_keys_are_refused(key: str, provider: StripeProvider,
                                                    fake: StripeFake) -> None:
    assert refused(provider, fake, grant(idempotency_key=key)) == ["idempotency_key"]


# -- 8.10: Stripe's currencies and id lengths -----------------------------------------------


def test_stripe_currencies_only_and_the_fake_takes_the_same(provider: StripeProvider,
                                                            fake: StripeFake) -> None:
    created = provider.create_grant(grant("150.00", "UAH"))
    assert created.amount == bc.Money(amount=Decimal("150.00"), currency="UAH")
    fake.requests.clear()
    assert refused(provider, fake, grant("1.00", "KPW")) == ["amount"]
    assert set(refused(provider, fake, grant("1", "XAU"))) == {"amount"}


def test_every_table_currency_is_iso_and_accepted_by_the_fake(fake: StripeFake) -> None:
    from billing_credits_stripe.testing import _fake

    assert {c.upper() for c in _fake._CURRENCIES} == tr.STRIPE_CURRENCIES
    withdrawn = {"ANG", "BGN"}  # left ISO 4217 (replaced by XCG, EUR); Stripe still lists them
    for code in tr.STRIPE_CURRENCIES - withdrawn:
        assert bc.is_iso_currency(code), code
        assert tr.stripe_exponent(code) is not None, code


def test_price_ids_longer_than_5000_are_refused(provider: StripeProvider,
                                                fake: StripeFake) -> None:
    long_price = "price_" + "x" * 4995
    assert refused(provider, fake, grant(scope=bc.Scope(price_ids=(long_price,)))) == [
        "scope.price_ids.0"]
    fits = provider.create_grant(grant(scope=bc.Scope(price_ids=(long_price[:5000],))))
    assert fits.scope.price_ids == (long_price[:5000],)


# -- 8.10: what Stripe returns is read back ---------------------------------------------------


def test_every_returned_field_is_read_back() -> None:
    obj = {
        "id": "credgr_1", "object": "billing.credit_grant",
        "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": 1000}},
        "applicability_config": {"scope": {"price_type": "metered"}}, "category": "paid",
        "created": 1726688817, "updated": 1726688829, "voided_at": 1726688829,
        "customer": "cus_1", "customer_account": "acct_1", "effective_at": 1726688817,
        "expires_at": None, "livemode": True, "test_clock": "clock_1", "metadata": {},
        "name": None, "priority": 50,
    }
    read = tr.from_stripe(obj, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert read.status is bc.GrantStatus.VOIDED
    assert read.customer_id == "cus_1"
    assert read.created_at == datetime.fromtimestamp(1726688817, UTC)
    assert read.raw is not None
    for name in ("voided_at", "updated", "livemode", "test_clock", "customer_account"):
        assert read.raw[name] == obj[name], name


# -- 8.2: a grant that starts later reads its whole amount --------------------------------


def test_a_future_grant_reads_its_whole_amount_as_balance(fake: StripeFake,
                                                          runtime: bc.Runtime) -> None:
    transport = fake.transport()
    with httpx.Client(transport=transport) as client, bc.get_provider(
            "stripe", api_key="sk_test_x", http_client=client, include_balance=True,
            runtime=runtime) as stripe:
        future = stripe.create_grant(grant("500.00", effective_at=NOW + timedelta(days=7)))
        active = stripe.create_grant(grant("80.00"))
        fake.consume(active.id or "", 3000)
        fake.requests.clear()
        balances = {g.id: g.balance for g in stripe.list_grants("cus_limits")}
        assert stripe.get_grant(future.id or "").balance == future.amount
    assert balances[future.id] == bc.Money(amount=Decimal("500.00"), currency="USD")
    assert balances[active.id] == bc.Money(amount=Decimal("50.00"), currency="USD")
    summaries = [r for r in fake.requests if r.path.endswith("credit_balance_summary")]
    assert len(summaries) == 1, "only the active grant needs Stripe's summary"


def test_the_fake_summary_counts_a_future_grant_as_zero_like_stripe(
        provider: StripeProvider, fake: StripeFake) -> None:
    """Stripe's summary holds what is available now; the provider, not the summary, knows
    the grant is still to come."""
    future = provider.create_grant(grant("5.00", effective_at=NOW + timedelta(days=7)))
    summary = fake._summary({"customer": "cus_limits",
                             "filter": {"type": "credit_grant", "credit_grant": future.id}},
                            live=False)
    assert summary["balances"][0]["available_balance"]["monetary"]["value"] == 0


@pytest.mark.parametrize("grant_id", ["", "  ", "credgr_\udc80", "credgr_" + "x" * 5000])
def test_ids_stripe_cannot_be_asked_for_are_refused_before_io(
        grant_id: str, provider: StripeProvider, fake: StripeFake) -> None:
    for operation in (provider.get_grant, provider.void_grant, provider.expire_grant,
                      provider.grant_balance):
        with pytest.raises(bc.InvalidGrantError, match="grant_id"):
            operation(grant_id)
    with pytest.raises(bc.InvalidGrantError, match="customer_id"):
        list(provider.list_grants(grant_id or "\ud800"))
    assert fake.requests == []
