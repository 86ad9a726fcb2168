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


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Stripe's presentment currencies, written out here from
# https://docs.stripe.com/currencies#presentment-currencies rather than imported from the
# provider: a code added to (or dropped from) ``STRIPE_CURRENCIES`` or the fake must be matched
# here on purpose, against the docs.
DOCUMENTED = _codes("""
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BWP BYN
    BZD CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL GIP GMD
    GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR ISK JMD JOD JPY KES KGS KHR KMF KRW KWD KYD KZT LAK
    LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD
    OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SEK SGD SHP SLE SOS SRD SZL
    THB TJS TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VND VUV WST XAF XCD XCG XOF XPF YER ZAR
    ZMW""")
# https://docs.stripe.com/currencies#zero-decimal and #three-decimal; ISK's special case
# (https://docs.stripe.com/currencies#special-cases): two decimals in the API.
DOCUMENTED_ZERO_DECIMAL = _codes("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF")
DOCUMENTED_THREE_DECIMAL = _codes("BHD JOD KWD OMR TND")
# A second, older source: the Currency enum of the stripe-rust SDK, "the list of supported
# currencies" (https://docs.rs/stripe-rust/0.5.3/stripe/enum.Currency.html, 2018).
STRIPE_RUST_2018 = _codes("""
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BIF BMD BND BOB BRL BSD BWP BZD CAD
    CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EEK EGP ETB EUR FJD FKP GBP GEL GIP GMD GNF
    GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR ISK JMD JPY KES KGS KHR KMF KRW KYD KZT LAK LBP LKR
    LRD LSL LTL LVL MAD MDL MGA MKD MNT MOP MRO MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD
    PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SEK SGD SHP SLL SOS SRD STD SVC
    SZL THB TJS TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VEF VND VUV WST XAF XCD XOF XPF YER ZAR
    ZMW""")


def _iso4217() -> dict[str, int | None]:
    """The ISO 4217 table of the ``iso4217`` package, read directly (not through the core)."""
    from iso4217 import Currency

    return {c.code: c.exponent for c in Currency}


def test_the_documented_list_agrees_with_iso_4217_and_an_older_sdk_list() -> None:
    iso = _iso4217()
    # ANG and BGN left ISO 4217 (replaced by XCG and EUR); Stripe's page still lists them.
    assert {code for code in DOCUMENTED if code not in iso} == {"ANG", "BGN"}
    # The older list differs by currencies ISO 4217 withdrew since, the ones that replaced
    # them and the ones Stripe added; SVC, still in ISO 4217, is the one 2018 code the list
    # above does not have.
    dropped, added = STRIPE_RUST_2018 - DOCUMENTED, DOCUMENTED - STRIPE_RUST_2018
    assert dropped == {"EEK", "HRK", "LTL", "LVL", "MRO", "SLL", "STD", "VEF", "SVC"}
    assert all(code not in iso for code in dropped - {"SVC"})
    assert added == DOCUMENTED_THREE_DECIMAL | {"BYN", "MMK", "SLE", "XCG"}
    assert {code for code in DOCUMENTED if iso.get(code) == 3} == DOCUMENTED_THREE_DECIMAL


def test_the_provider_and_the_fake_take_exactly_the_documented_currencies(
        provider: StripeProvider, fake: StripeFake) -> None:
    """Every ISO 4217 code (and each documented one): the provider's capabilities and the fake
    both accept it exactly when Stripe documents it, in the exponent Stripe documents."""
    assert provider.capabilities.currencies == DOCUMENTED
    iso = _iso4217()
    accepted = set()
    with httpx.Client(transport=fake.transport(), base_url="https://api.stripe.com") as http:
        for code in sorted(set(iso) | DOCUMENTED):
            body = ("amount[type]=monetary"
                    f"&amount[monetary][currency]={code.lower()}&amount[monetary][value]=1000"
                    "&applicability_config[scope][price_type]=metered&customer=cus_x")
            answer = http.post("/v1/billing/credit_grants", content=body, headers={
                "Authorization": "Bearer sk_test_x",
                "Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code in (200, 400), (code, answer.text)
            if answer.status_code == 200:
                accepted.add(code)
            else:
                assert answer.json()["error"]["param"] == "amount[monetary][currency]", code
    assert accepted == DOCUMENTED
    for code in DOCUMENTED:
        # No exponent for ANG and BGN: no ``bc.Money`` is in a code ISO 4217 withdrew.
        expected = (0 if code in DOCUMENTED_ZERO_DECIMAL else 2 if code == "ISK"
                    else iso.get(code))
        assert tr.stripe_exponent(code) == expected, code
    for code in set(iso) - DOCUMENTED:
        assert tr.stripe_exponent(code) is None, code


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
