"""Money: ISO 4217 currencies, custom credit units, exact amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits.testing import strategies as bcst


@pytest.mark.parametrize(
    ("code", "exponent"), [("USD", 2), ("usd", 2), ("JPY", 0), ("KWD", 3), ("EUR", 2), ("XAU", None)]
)
def test_currency_exponent(code: str, exponent: int | None) -> None:
    assert bc.is_iso_currency(code)
    assert bc.currency_exponent(code) == exponent


@pytest.mark.parametrize("code", ["XYZ", "", "US", "DOLLAR", "credits"])
def test_unknown_currency_codes(code: str) -> None:
    assert not bc.is_iso_currency(code)
    with pytest.raises(bc.InvalidGrantError) as info:
        bc.Money(amount=Decimal(1), currency=code)
    assert info.value.fields == ("currency",)


def test_unit_key_and_same_unit() -> None:
    usd = bc.Money(amount=Decimal(1), currency="USD")
    ccu = bc.Money(amount=Decimal(1), unit=bc.CreditUnit(id="ccu", name="cloud units"))
    assert usd.unit_key == "USD"
    assert ccu.unit_key == "unit:ccu"
    assert usd.same_unit(bc.Money(amount=Decimal(5), currency="usd"))
    assert not usd.same_unit(ccu)
    assert not ccu.same_unit(bc.Money(amount=Decimal(1), unit=bc.CreditUnit(id="other")))
    assert str(usd) == "1 USD"
    assert str(ccu) == "1 cloud units"
    assert str(bc.Money(amount=Decimal("2.50"), unit=bc.CreditUnit(id="x"))) == "2.50 x"


def test_with_amount_keeps_the_unit_and_validates() -> None:
    money = bc.Money(amount=Decimal("1.00"), currency="EUR")
    assert money.with_amount(Decimal("3.25")) == bc.Money(amount=Decimal("3.25"), currency="EUR")
    with pytest.raises(bc.InvalidGrantError):
        money.with_amount(Decimal("NaN"))


def test_credit_unit_id_bounds() -> None:
    with pytest.raises(bc.InvalidGrantError) as info:
        bc.CreditUnit(id="")
    assert info.value.fields == ("id",)
    with pytest.raises(bc.InvalidGrantError):
        bc.CreditUnit(id="x" * 257)


@given(bcst.money(allow_zero=True))
def test_money_json_round_trip_is_exact(money: bc.Money) -> None:
    back = bc.Money.model_validate_json(money.model_dump_json())
    assert back == money
    assert back.amount.as_tuple() == money.amount.as_tuple()


@given(bcst.money(bc.Capabilities(minor_units_only=True, custom_units=False)))
def test_money_strategy_respects_minor_units(money: bc.Money) -> None:
    assert money.currency is not None
    exponent = bc.currency_exponent(money.currency)
    assert exponent is not None
    assert money.amount == money.amount.quantize(Decimal(1).scaleb(-exponent))
    assert money.amount > 0


# -- exactness done by pydantic's core (issue 17: no Python conversion per decimal) -----------


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_float_is_taken_from_its_shortest_text(number: float) -> None:
    """pydantic-core converts a float as ``exact_decimal`` would: ``Decimal(repr(f))``,
    digit for digit and exponent for exponent (``5.0`` stays ``5.0``, ``1e22`` is ``1E+22``)."""
    exact = Decimal(repr(number))
    parts = exact.as_tuple()
    if len(parts.digits) > 40 or (exact and exact.adjusted() >= 40) or int(parts.exponent) < -40:
        with pytest.raises(bc.InvalidGrantError) as refused:  # beyond the digit bounds
            bc.Money(amount=number, currency="USD")
        assert refused.value.fields == ("amount",)
        return
    money = bc.Money(amount=number, currency="USD")
    assert money.amount.as_tuple() == exact.as_tuple()
    grant = bc.CreditGrant(customer_id="c", amount={"amount": 1, "currency": "USD"},
                           priority=number)
    assert grant.priority is not None
    assert grant.priority.as_tuple() == exact.as_tuple()


@pytest.mark.parametrize("bad", [True, False, float("nan"), float("-inf"), "NaN", "sNaN",
                                 Decimal("Infinity")])
def test_booleans_and_non_finite_numbers_are_refused(bad: object) -> None:
    with pytest.raises(bc.InvalidGrantError) as info:
        bc.Money(amount=bad, currency="USD")  # type: ignore[arg-type]
    assert info.value.fields == ("amount",)
    if isinstance(bad, bool):
        assert info.value.problems[0].message == "a boolean is not a number"
    else:
        assert "finite" in info.value.problems[0].message
