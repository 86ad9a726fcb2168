"""Translation neutral ↔ Metronome: unit tests, the seed 003 fixture, hypothesis round trips."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from billing_credits_metronome import MetronomeCreditsProvider, MetronomePlansProvider
from billing_credits_metronome import _translate as tr
from billing_credits_metronome._transport import dumps, loads
from billing_credits_metronome.testing import MetronomeFake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metronome.types.v1 import CreditGrantListResponse
from metronome.types.v1.credit_grant_create_params import CreditGrantCreateParams
from metronome.types.v1.customers.credit_create_params import CreditCreateParams
from metronome_sdk_checks import check_params

import billing_credits as bc
from billing_credits.testing import strategies as bcst

SEED003 = Path(__file__).parent / "data" / "seed003_listGrants.json"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CUSTOMER = "13117714-3f05-48e5-a6e9-a66093f13b4d"
PRODUCT = "f14d6729-6a44-4b13-9908-9387f1918790"
PLANS = tr.TranslationConfig(provider="metronome-plans")
CREDITS = tr.TranslationConfig(product_id=PRODUCT)


def grant(**changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "customer_id": CUSTOMER, "amount": bc.Money(amount=Decimal("10.00"), currency="USD"),
        "name": "Promo", "effective_at": datetime(2026, 1, 1, tzinfo=UTC),
        "expires_at": datetime(2026, 4, 1, tzinfo=UTC), "priority": Decimal("0.5"),
    }
    data.update(changes)
    return bc.CreditGrant(**data)


# -- money, numbers, times --------------------------------------------------------------------


def test_usd_dollars_go_out_as_cents_exactly() -> None:
    payload, _ = tr.grant_create_payload(grant(), "k", PLANS, NOW)
    assert payload["grant_amount"] == {"amount": Decimal("1000.00"), "credit_type_id": tr.USD_CENTS}
    assert json.loads(dumps(payload))["grant_amount"]["amount"] == 1000
    assert b'"amount":1000,' in dumps(payload)


def test_cents_come_back_as_dollars_exactly() -> None:
    money = tr.money_from_vendor(1000, {"id": tr.USD_CENTS, "name": "USD (cents)"}, PLANS)
    assert money == bc.Money(amount=Decimal("10.00"), currency="USD")
    half_cent = tr.money_from_vendor(Decimal("1000.5"), None, PLANS)
    assert half_cent.amount == Decimal("10.005")


def test_long_vendor_amounts_scale_exactly_never_to_28_digits() -> None:
    """A vendor amount of more than 28 digits is scaled exactly (the thread's default decimal
    context would round it to 28 silently)."""
    cents = Decimal("1234567890123456789012345678901")  # 31 digits
    money = tr.money_from_vendor(cents, None, PLANS)
    assert money.amount == Decimal("12345678901234567890123456789.01")
    assert str(money.amount) == "12345678901234567890123456789.01"


@pytest.mark.parametrize("value", ["0.1", "1000.5", "123456789.125", "1e-7", "0"])
def test_json_number_says_exactly_the_decimal(value: str) -> None:
    number = tr.json_number(Decimal(value))
    assert loads(json.dumps(number)) == Decimal(value) or Decimal(repr(number)) == Decimal(value)


def test_inexact_amounts_are_refused_before_sending() -> None:
    inexact = grant(amount=bc.Money(amount=Decimal("0.1000000000000000000001"), currency="USD"))
    with pytest.raises(bc.NotRepresentableError) as refused:
        tr.grant_create_payload(inexact, "k", PLANS, NOW)
    assert "amount" in refused.value.fields
    with pytest.raises(ValueError, match="not exactly representable"):
        dumps({"amount": Decimal("0.1000000000000000000001")})


def test_a_currency_without_credit_type_is_refused() -> None:
    problems = tr.plans_problems(grant(amount=bc.Money(amount=Decimal(5), currency="EUR")), PLANS)
    assert problems
    assert "credit_types" in problems[0].message
    eur = tr.TranslationConfig(credit_types={
        tr.USD_CENTS: tr.CurrencyScale("USD", 2), "eur-id": tr.CurrencyScale("EUR", 2)})
    payload, _ = tr.grant_create_payload(
        grant(amount=bc.Money(amount=Decimal("5.25"), currency="EUR")), "k", eur, NOW)
    assert payload["grant_amount"] == {"amount": Decimal("525"), "credit_type_id": "eur-id"}


def test_times_go_out_as_utc_with_z() -> None:
    plus_two = datetime(2026, 1, 1, 2, 0, tzinfo=UTC) + timedelta(0)
    assert tr.format_time(plus_two) == "2026-01-01T02:00:00.000Z"
    with pytest.raises(ValueError, match="naive"):
        tr.format_time(datetime(2026, 1, 1))
    assert tr.parse_time("2022-04-01T00:00:00.000Z") == datetime(2022, 4, 1, tzinfo=UTC)


def test_hour_alignment_floors_start_ceils_end_and_reports_it() -> None:
    g = grant(effective_at=datetime(2026, 1, 1, 10, 30, tzinfo=UTC),
              expires_at=datetime(2026, 2, 1, 10, 0, 1, tzinfo=UTC))
    payload, adjustments = tr.grant_create_payload(g, "k", PLANS, NOW)
    assert payload["effective_at"] == "2026-01-01T10:00:00.000Z"
    assert payload["expires_at"] == "2026-02-01T11:00:00.000Z"
    assert [(a.field, a.requested, a.stored) for a in adjustments] == [
        ("effective_at", "2026-01-01T10:30:00.000Z", "2026-01-01T10:00:00.000Z"),
        ("expires_at", "2026-02-01T10:00:01.000Z", "2026-02-01T11:00:00.000Z"),
    ]


def test_strict_alignment_refuses_and_none_sends_milliseconds() -> None:
    g = grant(effective_at=datetime(2026, 1, 1, 10, 30, tzinfo=UTC))
    strict = tr.TranslationConfig(alignment="strict")
    assert [p.field for p in tr.plans_problems(g, strict)] == ["effective_at"]
    none = tr.TranslationConfig(alignment="none")
    payload, adjustments = tr.grant_create_payload(g, "k", none, NOW)
    assert payload["effective_at"] == "2026-01-01T10:30:00.000Z"
    assert not [a for a in adjustments if a.field == "effective_at"]
    micro = grant(effective_at=datetime(2026, 1, 1, 10, 30, 0, 1, tzinfo=UTC))
    assert [p.field for p in tr.plans_problems(micro, none)] == ["effective_at"]


def test_no_expiry_becomes_the_far_future_and_reads_back_as_none() -> None:
    payload, _ = tr.grant_create_payload(grant(expires_at=None), "k", PLANS, NOW)
    assert payload["expires_at"] == "2099-12-31T00:00:00.000Z"
    at_sentinel = grant(expires_at=datetime(2099, 12, 31, tzinfo=UTC))
    assert [p.field for p in tr.plans_problems(at_sentinel, PLANS)] == ["expires_at"]


def test_no_start_is_the_creation_hour_and_reported() -> None:
    payload, adjustments = tr.grant_create_payload(
        grant(effective_at=None), "k", PLANS, datetime(2026, 3, 1, 12, 41, tzinfo=UTC))
    assert payload["effective_at"] == "2026-03-01T12:00:00.000Z"
    assert adjustments[0].field == "effective_at"
    assert adjustments[0].requested is None


# -- the v1 grant payload ---------------------------------------------------------------------


def test_paid_amount_is_zero_unless_invoicing_is_opted_into() -> None:
    paid = grant(paid_amount=bc.Money(amount=Decimal("50.00"), currency="USD"),
                 category=bc.Category.PAID)
    payload, _ = tr.grant_create_payload(paid, "k", PLANS, NOW)
    assert payload["paid_amount"] == {"amount": 0, "credit_type_id": tr.USD_CENTS}
    assert payload["custom_fields"] == {"bc_paid_amount": "50.00", "bc_paid_unit": "USD"}
    invoicing = tr.TranslationConfig(invoice_paid_amount=True)
    payload, _ = tr.grant_create_payload(paid, "k", invoicing, NOW)
    assert payload["paid_amount"] == {"amount": Decimal("5000.00"),
                                      "credit_type_id": tr.USD_CENTS}
    assert "custom_fields" not in payload


def test_payload_keys_are_declared_by_the_sdk() -> None:
    full = grant(reason="why", category=bc.Category.PROMOTIONAL, category_label="trial",
                 scope=bc.Scope(product_ids=("p2", "p1")), metadata={"a": "b"},
                 idempotency_key="key-1")
    payload, _ = tr.grant_create_payload(full, "key-1", PLANS, NOW)
    check_params(CreditGrantCreateParams, loads(dumps(payload)))
    assert payload["product_ids"] == ["p2", "p1"]
    assert payload["credit_grant_type"] == "trial"
    assert payload["reason"] == "why"
    assert payload["uniqueness_key"] == "key-1"


@pytest.mark.parametrize(("category", "label", "paid", "sent", "marker"), [
    (bc.Category.PAID, None, None, "paid", None),
    (bc.Category.PROMOTIONAL, "trial", None, "trial", None),
    (None, "enterprise", None, "enterprise", "unset"),
    (bc.Category.PAID, "enterprise", None, "enterprise", "paid"),
    (bc.Category.PAID, "paid", None, "paid", "paid"),
    (None, None, None, None, None),
])
def test_category_and_label_round_trip(category: Any, label: Any, paid: Any, sent: Any,
                                       marker: Any) -> None:
    g = grant(category=category, category_label=label, paid_amount=paid)
    payload, _ = tr.grant_create_payload(g, "k", PLANS, NOW)
    assert payload.get("credit_grant_type") == sent
    assert (payload.get("custom_fields") or {}).get("bc_category") == marker
    assert tr._category_from(sent, paid, payload.get("custom_fields") or {}) == (category, label)


def test_priority_none_takes_the_default_and_reads_back_as_none() -> None:
    payload, adjustments = tr.grant_create_payload(grant(priority=None), "k", PLANS, NOW)
    assert payload["priority"] == Decimal(100)
    assert payload["custom_fields"]["bc_priority_default"] == "true"
    assert any(a.field == "priority" for a in adjustments)


def test_custom_field_values_over_200_are_refused() -> None:
    provider = MetronomePlansProvider(bearer_token="t")
    with pytest.raises(bc.NotRepresentableError) as refused:
        provider.check(grant(metadata={"k": "v" * 201}))
    assert refused.value.fields == ("metadata.k",)
    with pytest.raises(bc.NotRepresentableError):
        provider.check(grant(metadata={"bc_mine": "v"}))


def test_plans_refuse_what_v1_grants_cannot_hold() -> None:
    provider = MetronomePlansProvider(bearer_token="t")
    two = (bc.Segment(amount=Decimal(4), starts_at=datetime(2026, 1, 1, tzinfo=UTC),
                      ends_before=datetime(2026, 2, 1, tzinfo=UTC)),
           bc.Segment(amount=Decimal(6), starts_at=datetime(2026, 2, 1, tzinfo=UTC),
                      ends_before=datetime(2026, 3, 1, tzinfo=UTC)))
    for bad, field in [
        (grant(schedule=two, effective_at=None, expires_at=datetime(2026, 3, 1, tzinfo=UTC)),
         "schedule"),
        (grant(scope=bc.Scope(product_tags=("x",))), "scope.product_tags"),
        (grant(scope=bc.Scope(contract_ids=("x",))), "scope.contract_ids"),
        (grant(priority=Decimal("0.1000000000000000000001")), "priority"),
        (grant(name=""), "name"),
    ]:
        with pytest.raises(bc.NotRepresentableError) as refused:
            provider.check(bad)
        assert field in refused.value.fields


# -- the customer credit payload --------------------------------------------------------------


def test_multi_segment_schedule_goes_out_segment_by_segment() -> None:
    segments = (
        bc.Segment(amount=Decimal("10"), starts_at=datetime(2026, 1, 1, tzinfo=UTC),
                   ends_before=datetime(2026, 2, 1, tzinfo=UTC)),
        bc.Segment(amount=Decimal("20.5"), starts_at=datetime(2026, 2, 1, tzinfo=UTC),
                   ends_before=None),
    )
    g = grant(amount=bc.Money(amount=Decimal("30.5"), currency="USD"), schedule=segments,
              effective_at=None, expires_at=None,
              scope=bc.Scope(specifiers=(bc.Specifier(product_tags=("a",),
                                                      pricing_group_values={"r": "eu"}),),
                             contract_ids=("c1",)),
              reason="goodwill", metadata={"a": "b"}, category=bc.Category.PAID)
    payload, _ = tr.credit_create_payload(g, "k", CREDITS, NOW)
    check_params(CreditCreateParams, loads(dumps(payload)))
    assert payload["access_schedule"] == {"credit_type_id": tr.USD_CENTS, "schedule_items": [
        {"amount": Decimal("1000"), "starting_at": "2026-01-01T00:00:00.000Z",
         "ending_before": "2026-02-01T00:00:00.000Z"},
        {"amount": Decimal("2050.0"), "starting_at": "2026-02-01T00:00:00.000Z",
         "ending_before": "2099-12-31T00:00:00.000Z"},
    ]}
    assert payload["product_id"] == PRODUCT
    assert payload["description"] == "goodwill"
    assert payload["specifiers"] == [{"product_tags": ["a"], "pricing_group_values": {"r": "eu"}}]
    assert payload["applicable_contract_ids"] == ["c1"]
    assert payload["custom_fields"] == {"a": "b", "bc_category": "paid"}


def test_customer_credits_need_a_product_id_to_create_only() -> None:
    provider = MetronomeCreditsProvider(bearer_token="t")  # listing needs none (issue 10)
    grant = bc.CreditGrant(customer_id=str(uuid.UUID(int=1)),
                           amount=bc.Money(amount=Decimal(5), currency="USD"))
    with pytest.raises(bc.ConfigurationError, match="product_id"):
        provider.create_grant(grant)


# -- reading: seed 003 ------------------------------------------------------------------------


def test_seed_003_list_grants_reads_with_every_field_kept() -> None:
    response = loads(SEED003.read_bytes())
    item = response["data"][0]
    CreditGrantListResponse.model_validate(item)
    g = tr.grant_from_item(item, PLANS, NOW, provider="metronome-plans")
    unit = bc.CreditUnit(id="fa2f1b3d-9d52-4951-a099-25991fd394d6",
                         name="cloud consumption units")
    assert g.amount == bc.Money(amount=Decimal(100), unit=unit)
    assert g.paid_amount == bc.Money(amount=Decimal("0.10"), currency="USD")
    # expired at NOW: nothing left to use, whatever the stale balance says
    assert g.balance == bc.Money(amount=Decimal(0), unit=unit)
    during = tr.grant_from_item(item, PLANS, datetime(2022, 1, 15, tzinfo=UTC),
                                provider="metronome-plans")
    assert during.balance == bc.Money(amount=Decimal(80), unit=unit)
    assert during.raw is not None
    assert during.raw["_summary"]["balance_rule"] == "including_pending"
    assert (g.category, g.category_label) == (bc.Category.PAID, "enterprise")
    assert g.metadata == {"x_account_id": "KyVnHhSBWl7eY2bl"}
    assert g.name == "Initial credit purchase"
    assert g.reason == "Prepayment"
    assert g.priority == Decimal("0.5")
    assert g.idempotency_key == "823j7fqzo1"
    assert g.customer_id == "b310b282-d5cf-4e4f-915f-d8c3c4971e45"
    assert g.effective_at == datetime(2022, 1, 1, tzinfo=UTC)
    assert g.expires_at == datetime(2022, 4, 1, tzinfo=UTC)
    assert g.status is bc.GrantStatus.EXPIRED
    assert g.id == "9acbc1d0-2044-44c4-8577-f6078a1d8cd2"
    assert g.scope == bc.Scope()
    assert g.raw is not None
    summary = g.raw["_summary"]
    assert summary["deductions"] == {"count": 1, "amount": "20",
                                     "invoice_ids": ["b6a60e95-15f4-403c-be40-f1c1d58cee20"]}
    assert summary["pending_deductions"] == {"count": 0, "amount": "0", "invoice_ids": []}
    assert summary["balance_excluding_pending"] == "80"
    assert summary["balance_including_pending"] == "80"
    assert summary["native_paid_amount"] == "0.10 USD"
    # nothing of the item is lost: every key is either mapped or kept verbatim in raw
    assert {k: v for k, v in g.raw.items() if k != "_summary"} == item


_LEDGER_AMOUNTS = st.one_of(
    st.integers(min_value=-10**6, max_value=10**6),
    st.integers(min_value=10**99, max_value=10**120),  # beyond the whole-number shortcut
    st.decimals(allow_nan=False, allow_infinity=False, places=4,
                min_value=Decimal("-1e6"), max_value=Decimal("1e6")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries(
    {"amount": _LEDGER_AMOUNTS},
    optional={"invoice_id": st.sampled_from(["inv_b", "inv_a", "", "inv_b"])}), max_size=6))
def test_deductions_are_summed_exactly_with_their_invoices(entries: list[dict[str, Any]]) -> None:
    """A grant's deductions as its summary states them: how many, their exact sum (whole
    numbers, fractions and numbers of 100+ digits alike) and the invoices named, once each."""
    item = dict(loads(SEED003.read_bytes())["data"][0], deductions=entries)
    summary = tr.grant_from_item(item, PLANS, NOW, provider="metronome-plans").raw["_summary"]
    exact = bc.exact_sum(Decimal(e["amount"]) for e in entries)
    assert summary["deductions"]["count"] == len(entries)
    assert Decimal(summary["deductions"]["amount"]) == exact
    assert summary["deductions"]["invoice_ids"] == sorted(
        {e["invoice_id"] for e in entries if e.get("invoice_id")})


def test_a_paid_amount_is_read_in_its_own_credit_type_whatever_equals_the_grants() -> None:
    """The grant's credit type is looked up once and reused for the paid amount only when
    both name it by the same id text: ids equal as numbers (1 and 1.0) but written
    differently are looked up each by its own text, as the amount always was."""
    config = tr.TranslationConfig(provider="metronome-plans", credit_types={
        tr.USD_CENTS: tr.CurrencyScale("USD", 2), "1": tr.CurrencyScale("EUR", 5)})
    item = dict(loads(SEED003.read_bytes())["data"][0])
    item["grant_amount"] = {"amount": 100, "credit_type": {"id": 1, "name": "one"}}
    item["paid_amount"] = {"amount": Decimal("733749.89"),
                           "credit_type": {"id": Decimal("1.0"), "name": "one"}}
    read = tr.grant_from_item(item, config, NOW, provider="metronome-plans")
    assert read.amount == bc.Money(amount=Decimal("0.001"), currency="EUR")
    assert read.paid_amount == bc.Money(amount=Decimal("733749.89"),
                                        unit=bc.CreditUnit(id="1.0", name="one"))


def test_customer_credit_spec_example_reads() -> None:
    item = {"id": "fa411f5b-fb85-4755-9d4d-530717be083c", "type": "CREDIT",
            "rate_type": "LIST_RATE", "name": "My test credit",
            "description": "My test credit description", "priority": 100,
            "product": {"id": "2e30f074-d04c-412e-a134-851ebfa5ceb2", "name": "My product A"},
            "applicable_product_ids": ["13a2179b-f0cb-460b-85a1-cd42964ca533"],
            "applicable_contract_ids": ["d7abd0cd-4ae9-4db7-8676-e986a4ebd8dc"],
            "access_schedule": {"credit_type": {"id": tr.USD_CENTS, "name": "USD (cents)"},
                                "schedule_items": [{
                                    "id": "2d45952c-5a6e-43a9-8aab-f61ee21be81a",
                                    "amount": 10000000, "starting_at": "2020-02-01T00:00:00.000Z",
                                    "ending_before": "2021-02-01T00:00:00.000Z"}]},
            "uniqueness_key": "372p7cvwr3-uniqueness-key"}
    g = tr.credit_from_item(item, CUSTOMER, CREDITS, NOW, provider="metronome")
    assert g.amount == bc.Money(amount=Decimal("100000.00"), currency="USD")
    assert g.id == f"{CUSTOMER}:fa411f5b-fb85-4755-9d4d-530717be083c"
    assert g.reason == "My test credit description"
    assert g.scope.product_ids == ("13a2179b-f0cb-460b-85a1-cd42964ca533",)
    assert g.scope.contract_ids == ("d7abd0cd-4ae9-4db7-8676-e986a4ebd8dc",)
    assert g.schedule is None
    assert g.expires_at == datetime(2021, 2, 1, tzinfo=UTC)


# -- hypothesis: neutral → Metronome → neutral --------------------------------------------------


def canonical(g: bc.CreditGrant, unit_names: dict[str, str]) -> dict[str, Any]:
    """What a round trip must keep: the request fields, with documented normalisations:
    a one-segment schedule is a single window; Metronome assigns segment ids; a custom unit's
    name is Metronome's; a start chosen by the library is not compared."""
    fields = g.model_dump(exclude={"id", "provider", "status", "balance", "created_at", "raw",
                                   "adjustments"})
    schedule = fields.pop("schedule")
    if schedule is not None and len(schedule) > 1:
        fields["schedule"] = [{**s, "id": None} for s in schedule]
    else:
        fields["schedule"] = None
    for key in ("amount", "paid_amount"):
        money = fields.get(key)
        if money and money.get("unit"):
            money["unit"]["name"] = unit_names.get(money["unit"]["id"], money["unit"]["name"])
    return fields


def _post(fake: MetronomeFake, path: str, body: dict[str, Any],
          query: dict[str, Any] | None = None) -> Any:
    response = fake.handle(httpx.Request("POST", f"https://api.metronome.com{path}",
                                         params=query or {}, content=dumps(body)))
    assert response.status_code == 200, response.content
    return loads(response.content)


def _register_units(fake: MetronomeFake, g: bc.CreditGrant) -> dict[str, str]:
    for money in (g.amount, g.paid_amount):
        if money is not None and money.unit is not None:
            fake.credit_types.setdefault(money.unit.id, money.unit.name or "unnamed unit")
    return {k: v for k, v in fake.credit_types.items() if k != tr.USD_CENTS}


ROUND_TRIP = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
CUSTOMERS = st.uuids().map(str)


@pytest.mark.parametrize("alignment", ["hour", "none"])
def test_round_trip_v1_grants(alignment: str) -> None:
    provider = MetronomePlansProvider(bearer_token="t", time_alignment=alignment)
    step = timedelta(hours=1) if alignment == "hour" else timedelta(milliseconds=1)

    @ROUND_TRIP
    @given(bcst.grants(provider.capabilities, time_step=step, customer_ids=CUSTOMERS))
    def check(g: bc.CreditGrant) -> None:
        if problems := tr.plans_problems(g, provider.config, NOW):
            assert [p.field for p in problems] == ["expires_at"], problems
            return
        fake = MetronomeFake(strict_ids=False, require_hour_boundaries=alignment == "hour")
        fake.register_custom_field_keys("credit_grant", [*tr.RESERVED_KEYS, *g.metadata])
        names = _register_units(fake, g)
        key = g.idempotency_key or f"bc-{uuid.uuid4()}"
        payload, adjustments = tr.grant_create_payload(g, key, provider.config, NOW)
        assert not [a for a in adjustments
                    if a.field not in ("priority", "effective_at", "name", "paid_amount")]
        check_params(CreditGrantCreateParams, loads(dumps(payload)))
        grant_id = _post(fake, "/v1/credits/createGrant", payload)["data"]["id"]
        item = _post(fake, "/v1/credits/listGrants", {"credit_grant_ids": [grant_id]})["data"][0]
        CreditGrantListResponse.model_validate(item)
        back = tr.grant_from_item(item, provider.config, NOW, provider="metronome-plans")
        expected, actual = canonical(g, names), canonical(back, names)
        if g.effective_at is None:
            expected.pop("effective_at")
            actual.pop("effective_at")
        assert actual == expected

    check()


@pytest.mark.parametrize("alignment", ["hour", "none"])
def test_round_trip_customer_credits_including_multi_segment(alignment: str) -> None:
    from metronome.types.shared import Credit

    provider = MetronomeCreditsProvider(bearer_token="t", product_id=PRODUCT,
                                        time_alignment=alignment)
    step = timedelta(hours=1) if alignment == "hour" else timedelta(milliseconds=1)
    seen_segments: set[int] = set()

    @ROUND_TRIP
    @given(bcst.grants(provider.capabilities, time_step=step, customer_ids=CUSTOMERS))
    def check(g: bc.CreditGrant) -> None:
        if problems := tr.credits_problems(g, provider.config, NOW):
            assert [p.field for p in problems] == ["expires_at"], problems
            return
        seen_segments.add(len(g.schedule or ()))
        fake = MetronomeFake(strict_ids=False, require_hour_boundaries=alignment == "hour")
        fake.register_custom_field_keys("contract_credit", [*tr.RESERVED_KEYS, *g.metadata])
        names = _register_units(fake, g)
        key = g.idempotency_key or f"bc-{uuid.uuid4()}"
        payload, adjustments = tr.credit_create_payload(g, key, provider.config, NOW)
        assert not [a for a in adjustments if a.field not in ("priority", "effective_at")]
        check_params(CreditCreateParams, loads(dumps(payload)))
        credit = _post(fake, "/v1/contracts/customerCredits/create", payload)["data"]["id"]
        item = _post(fake, "/v1/contracts/customerCredits/list",
                     {"customer_id": g.customer_id, "credit_id": credit})["data"][0]
        Credit.model_validate(item)
        back = tr.credit_from_item(item, g.customer_id, provider.config, NOW,
                                   provider="metronome")
        expected, actual = canonical(g, names), canonical(back, names)
        if g.effective_at is None:
            expected.pop("effective_at")
            actual.pop("effective_at")
        assert actual == expected

    check()
    assert {2, 3} & seen_segments, "multi-segment schedules were drawn"


def test_the_kept_period_end_is_the_one_asked_for() -> None:
    """``grant_balance`` keeps the last billing-period end it parsed (the same on every grant
    of a page): a different text must be parsed anew, never answered from the kept one."""
    from billing_credits_metronome._balance import period_end
    from billing_credits_metronome._wire import parse_time

    for text in ("2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z",
                 "2026-02-01T00:00:00.000Z", "2026-01-31T19:00:00-05:00",
                 "2026-01-01T00:00:00.000Z"):
        assert period_end(text) == parse_time(text)
