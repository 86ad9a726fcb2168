"""Priority normalization: the three guarantees, property-tested."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits.testing import strategies as bcst

STRIPE = bc.PriorityDomain("integer", Decimal(0), Decimal(100), default=Decimal(50))
SMALL = bc.PriorityDomain("integer", Decimal(-3), Decimal(7))
BOUNDED_FLOAT = bc.PriorityDomain("float64", Decimal(0), Decimal(1))

any_decimals = st.one_of(
    st.integers(min_value=-300, max_value=300).map(Decimal),
    st.decimals(min_value=-300, max_value=300, places=3, allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda f: Decimal(repr(f))),
)


def bits(value: float) -> bytes:
    return struct.pack(">d", value)


# -- 1. each domain's own values round-trip exactly ---------------------------------------------


@given(st.integers(min_value=0, max_value=100))
def test_integer_domain_round_trips_its_own_values(value: int) -> None:
    neutral = STRIPE.from_vendor(value)
    back = STRIPE.to_vendor(neutral)
    assert back == value
    assert type(back) is int


@given(st.floats(allow_nan=False, allow_infinity=False))
@example(0.1)
@example(-0.0)
@example(5e-324)
@example(1.7976931348623157e308)
def test_float64_domain_round_trips_any_finite_double_bit_exactly(value: float) -> None:
    neutral = bc.FLOAT64.from_vendor(value)
    assert neutral is not None
    assert bc.FLOAT64.contains(neutral)
    back = bc.FLOAT64.to_vendor(neutral)
    assert isinstance(back, float)
    assert bits(back) == bits(value)


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_domain_round_trips_any_decimal(value: Decimal) -> None:
    back = bc.ANY_DECIMAL.to_vendor(bc.ANY_DECIMAL.from_vendor(value))
    assert isinstance(back, Decimal)
    assert back.as_tuple() == value.as_tuple()


@given(st.one_of(bcst.priorities(STRIPE), bcst.priorities(SMALL), bcst.priorities(BOUNDED_FLOAT),
                 bcst.priorities(bc.FLOAT64), bcst.priorities(bc.ANY_DECIMAL)))
def test_priorities_strategy_stays_in_its_domain(value: Decimal) -> None:
    assert any(d.contains(value) for d in (STRIPE, SMALL, BOUNDED_FLOAT, bc.FLOAT64, bc.ANY_DECIMAL))


@given(bcst.priorities(STRIPE))
def test_integer_neutral_values_round_trip_through_the_vendor(value: Decimal) -> None:
    assert STRIPE.from_vendor(STRIPE.to_vendor(value)) == value


def test_no_priority_is_the_default() -> None:
    assert STRIPE.from_vendor(None) == Decimal(50)
    assert STRIPE.to_vendor(None) == 50
    assert bc.FLOAT64.to_vendor(None) is None
    assert bc.FLOAT64.from_vendor(None) is None
    # A vendor value that is no number is the project's error (issue 9.4), not a TypeError.
    for bad in (True, "NaN", "abc", [1], float("inf")):
        with pytest.raises(bc.InvalidGrantError):
            STRIPE.from_vendor(bad)  # type: ignore[arg-type]


def test_float64_exact() -> None:
    assert bc.float64_exact(Decimal("0.1"))
    assert bc.float64_exact(Decimal("-2.5E-300"))
    assert not bc.float64_exact(Decimal("0.10000000000000000001"))
    assert not bc.float64_exact(Decimal("1E+400"))
    assert not bc.float64_exact(Decimal("NaN"))
    assert not bc.float64_exact(Decimal("Infinity"))


# -- 2. what the target cannot hold is an error naming field, value and grant ---------------------


@pytest.mark.parametrize("value", ["0.5", "150", "-1", "100.000001", "NaN"])
def test_integer_domain_refuses_what_it_cannot_hold(value: str) -> None:
    with pytest.raises(bc.PriorityNotRepresentableError) as info:
        STRIPE.to_vendor(Decimal(value), provider="stripe", grant="grant_42")
    error = info.value
    assert error.fields == ("priority",)
    assert error.provider == "stripe"
    assert value in str(error)
    assert "grant_42" in str(error)
    assert isinstance(error, bc.NotRepresentableError)


@given(any_decimals)
def test_to_vendor_is_exact_or_refuses(value: Decimal) -> None:
    for domain in (STRIPE, SMALL, BOUNDED_FLOAT, bc.FLOAT64):
        if domain.contains(value):
            assert domain.from_vendor(domain.to_vendor(value)) == value
        else:
            with pytest.raises(bc.PriorityNotRepresentableError) as info:
                domain.to_vendor(value, grant="g1")
            assert info.value.fields == ("priority",)
            assert "g1" in str(info.value)


def test_float64_refuses_more_digits_than_a_double() -> None:
    with pytest.raises(bc.PriorityNotRepresentableError, match=r"0\.10000000000000000001"):
        bc.FLOAT64.to_vendor(Decimal("0.10000000000000000001"))


# -- 3. preserve_order ---------------------------------------------------------------------------


def check_order(values: list[Decimal], domain: bc.PriorityDomain) -> bc.PriorityMapping | None:
    """Run ``preserve_order``; when it succeeds, check every promise it makes."""
    try:
        mapping = bc.preserve_order(values, domain)
    except bc.PriorityNotRepresentableError as error:
        fields = error.fields
        mapping = None
    if mapping is None:
        assert fields == ("priority",)
        return None
    for a in values:
        assert domain.contains(mapping(a))
        for b in values:
            if a < b:
                assert mapping(a) < mapping(b)
            elif a == b:
                assert mapping(a) == mapping(b)
    moved = {(v, mapping(v)) for v in set(values) if mapping(v) != v}
    assert set(mapping.changes) == moved
    assert len(mapping.changes) == len(moved)
    return mapping


@given(st.lists(any_decimals, max_size=40))
def test_preserve_order_small_integer_domain(values: list[Decimal]) -> None:
    mapping = check_order(values, SMALL)
    assert (mapping is None) == (len(set(values)) > SMALL.capacity)  # type: ignore[operator]


@given(st.lists(any_decimals, min_size=90, max_size=130, unique=True)
       | st.lists(any_decimals, max_size=20))
def test_preserve_order_stripe_domain(values: list[Decimal]) -> None:
    mapping = check_order(values, STRIPE)
    assert STRIPE.capacity == 101
    assert (mapping is None) == (len(set(values)) > 101)


@given(st.lists(any_decimals, max_size=30))
def test_preserve_order_float64_domains(values: list[Decimal]) -> None:
    check_order(values, bc.FLOAT64)
    check_order(values, BOUNDED_FLOAT)


@given(st.lists(bcst.priorities(STRIPE), max_size=30))
def test_preserve_order_is_identity_when_everything_fits(values: list[Decimal]) -> None:
    mapping = check_order(values, STRIPE)
    assert mapping is not None
    assert mapping.method == "identity"
    assert mapping.changes == ()


def test_preserve_order_examples() -> None:
    mapping = bc.preserve_order([Decimal("0.5"), Decimal("1.5"), Decimal(200)], STRIPE)
    assert [mapping(Decimal(v)) for v in ("0.5", "1.5", "200")] == [0, 2, 100]
    assert mapping.method == "nearest"
    ties = bc.preserve_order([Decimal("0.1"), Decimal("0.2"), Decimal("0.1")], STRIPE)
    assert ties.method == "spread"
    assert ties(Decimal("0.1")) < ties(Decimal("0.2"))
    spread = bc.preserve_order([Decimal(i) / 10 for i in range(101)], STRIPE)
    assert sorted(spread.targets.values()) == [Decimal(i) for i in range(101)]
    with pytest.raises(bc.PriorityNotRepresentableError, match="102 distinct") as info:
        bc.preserve_order([Decimal(i) / 10 for i in range(102)], STRIPE, group="cus_1")
    assert "cus_1" in str(info.value)
