"""The neutral model: exact JSON round-trips, refusals naming their field, schedules, scopes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from pydantic import ValidationError

import billing_credits as bc
from billing_credits.testing import strategies as bcst

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def base(**changes: Any) -> dict[str, Any]:
    """A valid grant's fields, with ``changes`` applied."""
    data: dict[str, Any] = {
        "customer_id": "cus_1",
        "amount": {"amount": Decimal("10.00"), "currency": "USD"},
        "effective_at": T0,
        "expires_at": T0 + timedelta(days=30),
    }
    data.update(changes)
    return data


def refused(**changes: Any) -> bc.InvalidGrantError:
    with pytest.raises(bc.InvalidGrantError) as info:
        bc.CreditGrant(**base(**changes))
    return info.value


def _exact(grant: bc.CreditGrant) -> list[tuple[Any, ...]]:
    """Every decimal of a grant with its exact digits and exponent (``10.00`` is not ``10``)."""
    numbers = [grant.amount.amount, grant.priority]
    numbers += [s.amount for s in grant.schedule or ()]
    for money in (grant.paid_amount, grant.balance):
        numbers.append(money.amount if money is not None else None)
    return [n.as_tuple() if n is not None else None for n in numbers]


# -- JSON round trip -------------------------------------------------------------------------


@given(bcst.grants())
def test_json_round_trip_of_any_valid_grant(grant: bc.CreditGrant) -> None:
    text = grant.model_dump_json()
    back = bc.CreditGrant.model_validate_json(text)
    assert back == grant
    assert _exact(back) == _exact(grant)
    assert back.model_dump_json() == text


@given(bcst.grants(read_back=True))
def test_json_round_trip_of_read_back_grants(grant: bc.CreditGrant) -> None:
    back = bc.CreditGrant.model_validate_json(grant.model_dump_json())
    assert back == grant
    assert _exact(back) == _exact(grant)
    assert (back.id, back.provider, back.status, back.created_at) == (
        grant.id, grant.provider, grant.status, grant.created_at)


@given(bcst.grants())
def test_times_are_normalized_to_utc(grant: bc.CreditGrant) -> None:
    moments = [grant.effective_at, grant.expires_at]
    for segment in grant.schedule or ():
        moments += [segment.starts_at, segment.ends_before]
    for moment in moments:
        if moment is not None:
            assert moment.utcoffset() == timedelta(0)


def test_offset_datetime_is_the_same_instant_in_utc() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    grant = bc.CreditGrant(**base(effective_at=datetime(2030, 1, 1, 5, 30, tzinfo=india)))
    assert grant.effective_at == T0
    assert grant.effective_at is not None
    assert grant.effective_at.tzinfo is UTC


def test_every_time_of_a_grant_and_its_segments_is_held_in_utc_itself() -> None:
    """Times given as text ("Z", an offset) come out of pydantic's core in its own zone; the
    grant and each segment hold them in ``datetime.UTC`` itself, the same instants (the
    providers' fast paths test ``tzinfo is UTC``)."""
    grant = bc.CreditGrant.model_validate({
        "customer_id": "c", "amount": {"amount": "10", "currency": "USD"},
        "schedule": [
            {"amount": "4", "starts_at": "2030-01-01T00:00:00Z",
             "ends_before": "2030-01-01T02:00:00+01:00"},
            {"amount": "6", "starts_at": "2030-01-01T01:00:00Z",
             "ends_before": "2030-02-01T00:00:00-00:30"}],
        "created_at": "2029-12-31T23:00:00+00:00"})
    assert grant.schedule is not None
    moments = [grant.effective_at, grant.expires_at, grant.created_at,
               *(t for segment in grant.schedule for t in (segment.starts_at, segment.ends_before))]
    assert all(moment is not None and moment.tzinfo is UTC for moment in moments)
    assert moments == [T0, datetime(2030, 2, 1, 0, 30, tzinfo=UTC),
                       datetime(2029, 12, 31, 23, tzinfo=UTC), T0,
                       datetime(2030, 1, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, 1, tzinfo=UTC),
                       datetime(2030, 2, 1, 0, 30, tzinfo=UTC)]


def test_json_numbers_are_read_exactly_not_through_a_double() -> None:
    text = (
        '{"customer_id": "c", "priority": 0.30000000000000000001,'
        ' "amount": {"amount": 12345678901234567890.05, "currency": "USD"}}'
    )
    grant = bc.CreditGrant.model_validate_json(text)
    assert grant.amount.amount == Decimal("12345678901234567890.05")
    assert grant.priority == Decimal("0.30000000000000000001")
    money = bc.Money.model_validate_json('{"amount": 0.10000000000000000001, "currency": "EUR"}')
    assert money.amount == Decimal("0.10000000000000000001")


def test_invalid_json_is_an_invalid_grant() -> None:
    with pytest.raises(bc.InvalidGrantError, match="invalid JSON"):
        bc.CreditGrant.model_validate_json("{not json")


# -- refusals (Must show 4) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"effective_at": datetime(2030, 1, 1)}, "effective_at", id="naive-effective"),
        pytest.param({"expires_at": datetime(2031, 1, 1)}, "expires_at", id="naive-expiry"),
        pytest.param({"expires_at": T0}, "expires_at", id="expiry-equals-effect"),
        pytest.param({"expires_at": T0 - timedelta(seconds=1)}, "expires_at", id="expiry-before"),
        pytest.param({"amount": {"amount": 0, "currency": "USD"}}, "amount", id="zero"),
        pytest.param({"amount": {"amount": Decimal("-0.01"), "currency": "USD"}}, "amount",
                     id="negative"),
        pytest.param({"amount": {"amount": Decimal("NaN"), "currency": "USD"}}, "amount.amount",
                     id="nan"),
        pytest.param({"amount": {"amount": float("nan"), "currency": "USD"}}, "amount.amount",
                     id="float-nan"),
        pytest.param({"amount": {"amount": Decimal("Infinity"), "currency": "USD"}},
                     "amount.amount", id="infinity"),
        pytest.param({"amount": {"amount": float("-inf"), "currency": "USD"}}, "amount.amount",
                     id="minus-infinity"),
        pytest.param({"amount": {"amount": "Infinity", "currency": "USD"}}, "amount.amount",
                     id="infinity-text"),
        pytest.param({"idempotency_key": "k" * 129}, "idempotency_key", id="key-129"),
        pytest.param({"idempotency_key": ""}, "idempotency_key", id="key-empty"),
        pytest.param({"amount": {"amount": 1, "currency": "XYZ"}}, "amount.currency",
                     id="unknown-currency"),
        pytest.param({"customer_id": ""}, "customer_id", id="empty-customer"),
        pytest.param({"customer_id": "   "}, "customer_id", id="blank-customer"),
        pytest.param({"amount": {"amount": True, "currency": "USD"}}, "amount.amount",
                     id="bool-amount"),
        pytest.param({"priority": True}, "priority", id="bool-priority"),
        pytest.param({"priority": float("nan")}, "priority", id="nan-priority"),
        pytest.param({"paid_amount": {"amount": -1, "currency": "USD"}}, "paid_amount",
                     id="negative-paid"),
    ],
)
def test_refusals_name_the_field(changes: dict[str, Any], field: str) -> None:
    error = refused(**changes)
    assert field in error.fields
    assert isinstance(error, ValueError)
    assert "\n" not in str(error)


def test_refusals_are_the_same_from_json() -> None:
    naive = bc.CreditGrant(**base()).model_dump(mode="json")
    naive["effective_at"] = "2030-01-01T00:00:00"
    with pytest.raises(bc.InvalidGrantError) as info:
        bc.CreditGrant.model_validate(naive)
    assert info.value.fields == ("effective_at",)
    with pytest.raises(bc.InvalidGrantError) as info:
        bc.CreditGrant.model_validate_json(
            '{"customer_id": "c", "amount": {"amount": "NaN", "currency": "USD"}}')
    assert info.value.fields == ("amount.amount",)


def test_every_problem_is_reported_at_once() -> None:
    error = refused(customer_id="", idempotency_key="k" * 200,
                    amount={"amount": 1, "currency": "XYZ"})
    assert {"customer_id", "idempotency_key", "amount.currency"} <= set(error.fields)


def test_idempotency_key_of_128_characters_is_accepted() -> None:
    assert bc.CreditGrant(**base(idempotency_key="k" * 128)).idempotency_key == "k" * 128


def test_a_pydantic_error_never_escapes() -> None:
    with pytest.raises(bc.InvalidGrantError) as info:
        bc.CreditGrant.model_validate({"customer_id": "c"})
    assert not isinstance(info.value, ValidationError)
    assert "amount" in info.value.fields


def test_refused_before_any_io(tmp_path: Any) -> None:
    provider = bc.get_provider("local")
    with provider:
        for changes in ({"effective_at": datetime(2030, 1, 1)},
                        {"amount": {"amount": 0, "currency": "USD"}},
                        {"customer_id": ""}):
            with pytest.raises(bc.InvalidGrantError):
                provider.create_grant(base(**changes))
        assert provider.runtime.calls == 0
        assert list(provider.list_grants()) == []


# -- amounts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "exact"),
    [(0.1, "0.1"), (0.30000000000000004, "0.30000000000000004"), (1e-7, "1E-7"),
     (19.99, "19.99"), (1e22, "1E+22"), (5.0, "5.0")],
)
def test_floats_are_taken_from_their_decimal_text(number: float, exact: str) -> None:
    money = bc.Money(amount=number, currency="USD")  # type: ignore[arg-type]
    assert money.amount == Decimal(exact)
    assert str(money.amount) == str(Decimal(exact))


def test_a_float_is_not_taken_at_its_binary_value() -> None:
    assert Decimal(0.1) != Decimal("0.1")  # noqa: RUF032 - the trap being avoided
    assert bc.Money(amount=0.1, currency="USD").amount == Decimal("0.1")  # type: ignore[arg-type]


def test_currency_code_is_upper_cased() -> None:
    assert bc.Money(amount=Decimal(1), currency="usd").currency == "USD"


@pytest.mark.parametrize(
    "fields",
    [{}, {"currency": "USD", "unit": {"id": "u1"}}],
    ids=["neither", "both"],
)
def test_money_needs_exactly_one_unit(fields: dict[str, Any]) -> None:
    with pytest.raises(bc.InvalidGrantError, match="exactly one"):
        bc.Money(amount=Decimal(1), **fields)


def test_custom_unit_grant_and_zero_paid_amount() -> None:
    unit = {"id": "2714e483", "name": "cloud consumption units"}
    grant = bc.CreditGrant(**base(amount={"amount": Decimal("1.5"), "unit": unit},
                                  paid_amount={"amount": 0, "currency": "USD"}))
    assert grant.amount.unit == bc.CreditUnit(**unit)
    assert grant.paid_amount == bc.Money(amount=Decimal(0), currency="USD")


def test_balance_must_be_in_the_grant_unit() -> None:
    with pytest.raises(bc.InvalidGrantError, match="balance"):
        bc.CreditGrant(**base(balance={"amount": 1, "currency": "EUR"}))
    grant = bc.CreditGrant(**base(balance={"amount": 0, "currency": "USD"}))
    assert grant.balance == bc.Money(amount=Decimal(0), currency="USD")


# -- schedules -------------------------------------------------------------------------------


def seg(amount: str, start_days: int, end_days: int | None) -> dict[str, Any]:
    return {
        "amount": Decimal(amount),
        "starts_at": T0 + timedelta(days=start_days),
        "ends_before": None if end_days is None else T0 + timedelta(days=end_days),
    }


def scheduled(segments: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    total = sum((s["amount"] for s in segments), Decimal(0))
    data = base(amount={"amount": total, "currency": "USD"}, schedule=segments)
    del data["effective_at"], data["expires_at"]
    data.update(changes)
    return data


def test_schedule_sets_the_window_to_its_span() -> None:
    grant = bc.CreditGrant(**scheduled([seg("5", 0, 10), seg("7.50", 10, 20)]))
    assert grant.amount.amount == Decimal("12.50")
    assert grant.effective_at == T0
    assert grant.expires_at == T0 + timedelta(days=20)
    assert grant.segments == grant.schedule


def test_single_window_is_one_segment() -> None:
    grant = bc.CreditGrant(**base())
    (only,) = grant.segments
    assert (only.amount, only.starts_at, only.ends_before) == (
        Decimal("10.00"), grant.effective_at, grant.expires_at)


def test_open_last_segment_means_never_expires() -> None:
    grant = bc.CreditGrant(**scheduled([seg("1", 0, 5), seg("1", 5, None)]))
    assert grant.expires_at is None


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        pytest.param(scheduled([seg("5", 0, 10)], amount={"amount": 6, "currency": "USD"}),
                     "schedule", "sum", id="sum-differs"),
        pytest.param(scheduled([seg("1", 10, 20), seg("1", 0, 5)]), "schedule", "ordered",
                     id="unordered"),
        pytest.param(scheduled([seg("1", 0, None), seg("1", 5, 10)]), "schedule",
                     "only the last", id="open-middle"),
        pytest.param(scheduled([]), "schedule", "at least one", id="empty"),
        pytest.param(scheduled([seg("1", 0, 10)], effective_at=T0 + timedelta(days=1)),
                     "schedule", "effective_at", id="effective-mismatch"),
        pytest.param(scheduled([seg("1", 0, 10)], expires_at=T0 + timedelta(days=11)),
                     "schedule", "expires_at", id="expiry-mismatch"),
        pytest.param(scheduled([seg("0", 0, 10), seg("1", 10, 20)]), "schedule.0.amount",
                     "greater than zero", id="zero-segment"),
        pytest.param(scheduled([seg("1", 10, 10)]), "schedule.0.ends_before", "after",
                     id="empty-window"),
    ],
)
def test_schedule_consistency(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(bc.InvalidGrantError, match=message) as info:
        bc.CreditGrant(**data)
    assert field in info.value.fields


# -- scope -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"price_ids": ("price_1",), "metered_prices_only": True},
        {"specifiers": ({"product_id": "p"},), "product_ids": ("p",)},
        {"specifiers": ({"product_id": "p"},), "product_tags": ("t",)},
    ],
)
def test_scope_exclusivity(fields: dict[str, Any]) -> None:
    with pytest.raises(bc.InvalidGrantError, match="exclude"):
        bc.Scope(**fields)
    error = refused(scope=fields)
    assert "scope" in error.fields


def test_scope_combinations_that_are_allowed() -> None:
    scope = bc.Scope(product_ids=("b", "a"), product_tags=("t",), contract_ids=("c",))
    assert scope.product_ids == ("b", "a")  # order is meaning: kept as given
    assert scope.kinds() == {"product_ids", "product_tags", "contract_ids"}
    assert bc.Scope(metered_prices_only=True).kinds() == {"metered_prices_only"}
    assert bc.Scope().is_all_usage
    assert not scope.is_all_usage


def test_scope_ids_must_not_be_empty() -> None:
    with pytest.raises(bc.InvalidGrantError) as info:
        bc.Scope(price_ids=("",))
    assert info.value.fields == ("price_ids.0",)


# -- equality, read-back, as_new ---------------------------------------------------------------


def test_raw_and_adjustments_take_no_part_in_equality() -> None:
    adjustment = bc.Adjustment(field="effective_at", requested="a", stored="b", reason="floored")
    plain = bc.CreditGrant(**base())
    decorated = bc.CreditGrant(**base(raw={"vendor": 1}, adjustments=(adjustment,)))
    assert plain == decorated
    assert plain != bc.CreditGrant(**base(metadata={"k": "v"}))
    assert plain != bc.CreditGrant(**base(amount={"amount": Decimal("10.01"), "currency": "USD"}))
    with pytest.raises(TypeError):
        hash(plain)


def test_grants_are_frozen() -> None:
    grant = bc.CreditGrant(**base())
    with pytest.raises(ValidationError):
        grant.customer_id = "other"  # type: ignore[misc]


@given(bcst.grants(read_back=True))
def test_as_new_drops_read_back_fields_only(grant: bc.CreditGrant) -> None:
    fresh = grant.as_new()
    assert grant.is_read_back()
    assert not fresh.is_read_back()
    assert (fresh.id, fresh.provider, fresh.status, fresh.balance, fresh.created_at) == (
        None, None, None, None, None)
    assert all(segment.id is None for segment in fresh.schedule or ())
    expected = grant.request_fields()
    for segment in expected["schedule"] or ():
        segment["id"] = None  # vendor segment ids belong to the stored grant, not a new one
    assert fresh.request_fields() == expected


@given(bcst.grants(read_back=True))
def test_as_new_without_changes_is_what_validation_makes(grant: bc.CreditGrant) -> None:
    """``as_new()`` copies without validating again (issue 17): the copy is still exactly what
    validating its fields gives, and changes on top of it are validated with it."""
    fresh = grant.as_new()
    assert fresh == bc.CreditGrant.model_validate(fresh.model_dump())
    assert fresh.model_dump() == bc.CreditGrant.model_validate(fresh.model_dump()).model_dump()
    expected = fresh.request_fields()
    assert fresh.as_new(name="renamed").request_fields() == {**expected, "name": "renamed"}


def test_as_new_applies_changes_and_validates_them() -> None:
    grant = bc.CreditGrant(**base(id="g1", provider="local", status="active"))
    assert grant.as_new(customer_id="cus_2").customer_id == "cus_2"
    with pytest.raises(bc.InvalidGrantError) as info:
        grant.as_new(customer_id="")
    assert info.value.fields == ("customer_id",)


def test_status_at() -> None:
    grant = bc.CreditGrant(**base())
    assert grant.status_at(T0 - timedelta(microseconds=1)) is bc.GrantStatus.SCHEDULED
    assert grant.status_at(T0) is bc.GrantStatus.ACTIVE
    assert grant.status_at(T0 + timedelta(days=30)) is bc.GrantStatus.EXPIRED


def test_no_window_until_created() -> None:
    grant = bc.CreditGrant(customer_id="c", amount={"amount": 1, "currency": "USD"})
    with pytest.raises(ValueError, match="no window"):
        _ = grant.segments


# -- text and nesting checked by pydantic's core (issue 17) ----------------------------------


@pytest.mark.parametrize(("changes", "field"), [
    ({"customer_id": "cus_\ud800"}, "customer_id"),
    ({"name": "a\udfffb"}, "name"),
    ({"metadata": {"k": "v\ud800"}}, "metadata.k"),
    ({"metadata": {"k\udc80": "v"}}, "metadata.[key]"),
    ({"scope": {"product_ids": ("ok", "\ud800")}}, "scope.product_ids.1"),
    ({"scope": {"specifiers": ({"pricing_group_values": {"k": "\udc00"}},)}},
     "scope.specifiers.0.pricing_group_values.k"),
    ({"amount": {"amount": 1, "unit": {"id": "u\ud800"}}}, "amount.unit.id"),
    ({"adjustments": ({"field": "f", "requested": "\ud800", "stored": None, "reason": "r"},)},
     "adjustments.0.requested"),
    ({"raw": {"a": {"b": ["ok", "\ud800"]}}}, "raw.a.b.1"),
    ({"raw": {"\udc80": 1}}, "raw.[key]"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_a_lone_surrogate_anywhere_is_refused_by_name(changes: dict[str, Any], field: str) -> None:
    error = refused(**changes)
    assert error.fields == (field,)
    assert error.problems[0].message == "contains a lone surrogate (not valid Unicode text)"
    str(error).encode("utf-8")  # the refusal itself can be printed and logged


def test_every_neutral_model_is_validated_in_one_pass_of_the_core() -> None:
    """No neutral model has a custom ``__init__`` in pydantic's sense: a nested model is built
    by pydantic-core, not sent back through Python for each grant."""
    from billing_credits._base import NeutralModel

    def subclasses(cls: type) -> list[type]:
        return [cls, *(sub for direct in cls.__subclasses__() for sub in subclasses(direct))]

    models = [m for m in subclasses(NeutralModel) if m.__module__.startswith("billing_credits")]
    assert {bc.CreditGrant, bc.Money, bc.Segment, bc.Scope, bc.Specifier} <= set(models)
    for model in models:
        assert model.__pydantic_custom_init__ is False, model  # type: ignore[attr-defined]
    # ... and the top-level constructor still raises the project's error, not pydantic's
    with pytest.raises(bc.InvalidGrantError) as info:
        bc.CreditGrant(customer_id="c", amount={"amount": "x", "currency": "USD"})
    assert info.value.fields == ("amount.amount",)



@pytest.mark.parametrize("field", sorted(bc.CreditGrant.read_back_fields()))
def test_every_read_back_field_makes_a_grant_read_back(field: str) -> None:
    """``is_read_back`` names each read-back field (issue 17 wrote it without a loop)."""
    grant = bc.CreditGrant(customer_id="c", amount=bc.Money("1", "USD"))
    assert not grant.is_read_back()
    value: object = {
        "id": "g", "provider": "p", "status": bc.GrantStatus.ACTIVE,
        "balance": bc.Money("1", "USD"), "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "raw": {}, "adjustments": (bc.Adjustment(field="f", requested=None, stored=None,
                                                 reason="r"),),
        "replayed": False}[field]
    assert grant.model_copy(update={field: value}).is_read_back()


@pytest.mark.parametrize(("content", "valid"), [
    (b'{"a": "plain text, \xc3\xa9 and \xf0\x9f\x98\x80"}', True),
    (b'{"a": "an escape \\u00e9 of a letter"}', True),
    (b'{"a": "\\ud800"}', False),  # an escaped lone surrogate
    (b'{"a": "\\uDFFF"}', False),
    (b'{"a": "\\ud83d\\ude00"}', False),  # a pair: valid, but left to be checked string by string
    (b'{"a": "\xed\xa0\x80"}', False),  # a surrogate encoded in UTF-8 bytes
    (b'{"a": "\xff"}', False),  # not UTF-8
])
def test_json_text_is_valid_only_when_no_string_can_hold_a_surrogate(content: bytes,
                                                                       valid: bool) -> None:
    assert bc.json_text_is_valid(content) is valid
    if valid:  # then every decoded string encodes
        for text in json.loads(content).values():
            text.encode("utf-8")


def test_a_checked_payload_is_kept_and_any_other_mapping_checked() -> None:
    data = {"customer_id": "c", "amount": {"amount": "1", "currency": "USD"}, "id": "g"}
    (kept,) = bc.decode_vendor_json(b'{"data": [{"k": "v"}]}')["data"]
    assert bc.is_checked_payload(kept)
    assert bc.CreditGrant.model_validate({**data, "raw": kept}).raw is kept
    assert not bc.is_checked_payload(bc.decode_vendor_json(b'{"data": [{"k": "\\ud800"}]}')
                                     ["data"][0])
    with pytest.raises(bc.InvalidGrantError, match="surrogate"):
        bc.CreditGrant.model_validate({**data, "raw": {"k": "\ud800"}})
    mine = {"k": "v"}  # a caller's own mapping is copied, never kept
    assert bc.CreditGrant.model_validate({**data, "raw": mine}).raw is not mine
    assert not bc.is_checked_payload(bc.payload_copy(mine))
    assert bc.is_checked_payload(bc.payload_copy(kept))


def test_every_validation_entry_point_raises_the_projects_error() -> None:
    """``model_validate_strings`` too (pydantic's own entry point): only ``InvalidGrantError``."""
    with pytest.raises(bc.InvalidGrantError):
        bc.CreditGrant.model_validate_strings({"customer_id": "c", "amount": {"amount": "x"}})
    grant = bc.CreditGrant.model_validate_strings(
        {"customer_id": "c", "amount": {"amount": "10", "currency": "usd"},
         "effective_at": "2026-01-01T00:00:00+01:00"})
    assert grant.amount.currency == "USD"
    assert grant.effective_at == datetime(2025, 12, 31, 23, tzinfo=UTC)
