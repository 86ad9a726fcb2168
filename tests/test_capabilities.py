"""Capabilities: every field a provider cannot hold is named, before any I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits.testing import strategies as bcst

T0 = datetime(2030, 1, 1, tzinfo=UTC)
STRIPE_PRIORITY = bc.PriorityDomain("integer", Decimal(0), Decimal(100), default=Decimal(50))

STRICT = bc.Capabilities(
    currencies=frozenset({"USD", "EUR"}),
    custom_units=False,
    minor_units_only=True,
    priority=STRIPE_PRIORITY,
    scope_kinds=frozenset({"price_ids", "metered_prices_only"}),
    max_price_ids=2,
    max_segments=1,
    name_max_length=5,
    time_resolution=timedelta(seconds=1),
    metadata=bc.MetadataLimits(max_keys=2, max_key_length=4, max_value_length=3,
                               forbidden_key_chars="[]", reserved_prefix="bc_"),
    fields_in_metadata=frozenset({"reason"}),
)
FLOATY = bc.Capabilities(amount_float64=True, priority=bc.FLOAT64, max_segments=3,
                         custom_units=True, time_resolution=timedelta(hours=1))


def grant(**changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "customer_id": "cus_1",
        "amount": {"amount": Decimal("10.00"), "currency": "USD"},
        "effective_at": T0,
        "expires_at": T0 + timedelta(days=1),
    }
    data.update(changes)
    return bc.CreditGrant(**data)


def fields(caps: bc.Capabilities, **changes: Any) -> list[str]:
    return [p.field for p in caps.check(grant(**changes))]


def test_a_grant_that_fits_has_no_problems() -> None:
    assert STRICT.check(grant(name="ok", metadata={"a": "b"}, priority=7)) == []


@pytest.mark.parametrize(
    ("changes", "expected", "words"),
    [
        ({"amount": {"amount": 1, "currency": "JPY"}}, ["amount"], "JPY is not supported"),
        ({"amount": {"amount": 1, "unit": {"id": "ccu"}}}, ["amount"], "custom credit units"),
        ({"amount": {"amount": Decimal("1.001"), "currency": "USD"}}, ["amount"],
         "minor units"),
        ({"paid_amount": {"amount": Decimal("0.001"), "currency": "EUR"}}, ["paid_amount"],
         "minor units"),
        ({"paid_amount": {"amount": 1, "currency": "GBP"}}, ["paid_amount"], "GBP"),
        ({"priority": Decimal("0.5")}, ["priority"], "whole number"),
        ({"priority": 101}, ["priority"], "at most 100"),
        ({"scope": {"product_ids": ("p",)}}, ["scope.product_ids"], "not supported"),
        ({"scope": {"price_ids": ("a", "b", "c")}}, ["scope.price_ids"], "at most 2"),
        ({"name": "sixsix"}, ["name"], "at most 5"),
        ({"metadata": {"a": "b", "c": "d", "e": "f"}}, ["metadata"], "at most 2"),
        ({"metadata": {"a": "b", "c": "d"}, "reason": "why"}, ["metadata"], "plus 1"),
        ({"metadata": {"toolong": "v"}}, ["metadata.toolong"], "key is 7"),
        ({"metadata": {"a[": "v"}}, ["metadata.a["], "may not contain ["),
        ({"metadata": {"k": "long"}}, ["metadata.k"], "value is 4"),
        ({"metadata": {"bc_x": "v"}}, ["metadata.bc_x"], "reserved"),
        ({"effective_at": T0 + timedelta(microseconds=5)}, ["effective_at"], "resolution"),
        ({"expires_at": T0 + timedelta(days=1, milliseconds=1)}, ["expires_at"], "resolution"),
    ],
)
def test_check_names_each_field(changes: dict[str, Any], expected: list[str], words: str) -> None:
    problems = STRICT.check(grant(**changes))
    assert [p.field for p in problems] == expected
    assert words in problems[0].message


def test_schedule_problems() -> None:
    segments = [
        {"amount": Decimal("1.005"), "starts_at": T0, "ends_before": T0 + timedelta(days=1)},
        {"amount": Decimal("1.005"), "starts_at": T0 + timedelta(days=1, microseconds=1),
         "ends_before": T0 + timedelta(days=2)},
    ]
    scheduled = grant(amount={"amount": Decimal("2.01"), "currency": "USD"}, schedule=segments,
                      effective_at=T0, expires_at=T0 + timedelta(days=2))
    names = [p.field for p in STRICT.check(scheduled)]
    assert "schedule" in names  # two segments, one fits
    assert names.count("schedule.amount") == 2  # each segment is 1.005 USD
    assert "schedule.1.starts_at" in names
    assert "amount" not in names  # 2.01 USD is whole cents


def test_float64_amounts_and_priorities() -> None:
    hour = T0 + timedelta(hours=1)
    assert FLOATY.check(grant(amount={"amount": Decimal("0.1"), "unit": {"id": "u"}},
                              expires_at=hour, priority=Decimal("0.1"))) == []
    names = fields(FLOATY, amount={"amount": Decimal("0.10000000000000000001"), "currency": "USD"},
                   priority=Decimal("0.10000000000000000001"), expires_at=hour)
    assert names == ["amount", "priority"]
    assert fields(FLOATY, expires_at=T0 + timedelta(minutes=90)) == ["expires_at"]


def test_every_problem_at_once() -> None:
    names = fields(STRICT, amount={"amount": 1, "currency": "JPY"}, priority=200, name="toolong",
                   scope={"contract_ids": ("c",)})
    assert set(names) == {"amount", "priority", "name", "scope.contract_ids"}


def test_ensure_raises_not_representable_naming_fields() -> None:
    STRICT.ensure(grant(), "strict")
    with pytest.raises(bc.NotRepresentableError) as info:
        STRICT.ensure(grant(name="sixsix", priority=Decimal("0.5")), "strict")
    assert info.value.fields == ("priority", "name")
    assert info.value.provider == "strict"
    assert "strict" in str(info.value)


def test_default_capabilities_claim_only_the_basics() -> None:
    """Capabilities() advertises nothing a provider must write code for (issue 10)."""
    caps = bc.Capabilities()
    assert {op for op in bc.ALL_OPERATIONS if caps.supports(op)} == {"create", "list", "get"}
    assert caps.scope_kinds == frozenset()
    assert caps.max_segments == 1
    assert not caps.custom_units
    assert caps.metadata == bc.CONSERVATIVE_METADATA
    assert caps.check(grant(priority=Decimal("0.5"),
                            effective_at=T0 + timedelta(microseconds=1))) == []
    names = fields(caps, amount={"amount": Decimal("1"), "unit": {"id": "u"}},
                   scope={"product_ids": ("p",)}, metadata={f"k{i}": "v" for i in range(21)})
    assert set(names) == {"amount", "scope.product_ids", "metadata"}
    assert not bc.Capabilities(operations=frozenset({"create"})).supports("void")


def test_opting_in_holds_everything() -> None:
    caps = bc.Capabilities(custom_units=True, scope_kinds=bc.ALL_SCOPE_KINDS, max_segments=None,
                           metadata=bc.MetadataLimits(), operations=bc.ALL_OPERATIONS)
    assert caps.check(grant(amount={"amount": Decimal("1.0000001"), "unit": {"id": "u"}},
                            priority=Decimal("0.123456789123456789123"),
                            effective_at=T0 + timedelta(microseconds=1))) == []
    assert all(caps.supports(op) for op in bc.ALL_OPERATIONS)


def test_describe_rows() -> None:
    rows = dict(STRICT.describe())
    assert rows["currencies"] == "EUR, USD"
    assert rows["custom credit units"] == "no"
    assert rows["amount precision"] == "whole minor units"
    assert rows["priority"].startswith("integer 0..100")
    assert rows["scope"] == "metered_prices_only, price_ids"
    assert rows["max price ids"] == "2"
    assert rows["schedule segments"] == "1"
    assert rows["name max length"] == "5"
    assert "1" in rows["time resolution"]
    assert "2 keys" in rows["metadata"]
    assert rows["carried in metadata"] == "reason"
    default = dict(bc.Capabilities(notes=("hello",)).describe())
    assert default["currencies"] == "any ISO 4217"
    assert default["max price ids"] == "unlimited"
    assert default["amount precision"] == "exact decimal"
    assert dict(FLOATY.describe())["amount precision"] == "exact double"
    assert ("note", "hello") in bc.Capabilities(notes=("hello",)).describe()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in STRICT.describe())


# -- the strategies build grants to fit ------------------------------------------------------------

CAPABILITY_SETS = [
    STRICT,
    FLOATY,
    bc.Capabilities(scope_kinds=frozenset({"specifiers", "product_ids", "product_tags"}),
                    custom_units=True, currencies=frozenset({"KWD"}), max_segments=4,
                    metadata=bc.MetadataLimits(max_keys=1), fields_in_metadata=frozenset()),
    bc.Capabilities(scope_kinds=frozenset(), metadata=bc.MetadataLimits(max_keys=0)),
]


@settings(max_examples=150)
@given(st.data())
def test_strategy_grants_fit_their_capabilities(data: st.DataObject) -> None:
    caps = data.draw(st.sampled_from(CAPABILITY_SETS))
    drawn = data.draw(bcst.grants(caps))
    assert caps.check(drawn) == []
    assert drawn.scope.kinds() <= caps.scope_kinds
    assert len(drawn.segments if drawn.effective_at else ()) <= (caps.max_segments or 4)
