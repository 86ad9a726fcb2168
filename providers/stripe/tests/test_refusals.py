"""Must show 3: each non-representable input is refused before any request, naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from billing_credits_stripe import StripeProvider
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc
from billing_credits.testing import Faults

START = datetime(2026, 3, 1, tzinfo=UTC)


def base(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "customer_id": "cus_refuse",
        "amount": bc.Money(amount=Decimal("10.00"), currency="USD"),
        "effective_at": START,
        "expires_at": START + timedelta(days=30),
    }
    data.update(changes)
    return data


def usd(text: str) -> bc.Money:
    return bc.Money(amount=Decimal(text), currency="USD")


CASES: dict[str, tuple[dict[str, Any], str]] = {
    # the six the issue names
    "fractional_cent": (base(amount=usd("10.005")), "amount"),
    "custom_unit": (base(amount=bc.Money(amount=Decimal(100), unit=bc.CreditUnit(
        id="cu_1", name="cloud consumption units"))), "amount"),
    "priority_half": (base(priority=Decimal("0.5")), "priority"),
    "21_prices": (base(scope=bc.Scope(price_ids=tuple(f"price_{i}" for i in range(21)))),
                  "scope.price_ids"),
    "product_tags": (base(scope=bc.Scope(product_tags=("compute",))), "scope.product_tags"),
    "41_char_metadata_key": (base(metadata={"k" * 41: "v"}), "metadata." + "k" * 41),
    # and the rest of Stripe's limits
    "priority_above_100": (base(priority=Decimal(101)), "priority"),
    "product_ids": (base(scope=bc.Scope(product_ids=("prod_1",))), "scope.product_ids"),
    "contracts": (base(scope=bc.Scope(contract_ids=("c_1",))), "scope.contract_ids"),
    "specifiers": (base(scope=bc.Scope(specifiers=(bc.Specifier(product_id="p"),))),
                   "scope.specifiers"),
    "two_segments": (base(effective_at=None, expires_at=START + timedelta(days=2), schedule=(
        bc.Segment(amount=Decimal(5), starts_at=START, ends_before=START + timedelta(days=1)),
        bc.Segment(amount=Decimal(5), starts_at=START + timedelta(days=1),
                   ends_before=START + timedelta(days=2)),
    )), "schedule"),
    "name_101": (base(name="n" * 101), "name"),
    "bracket_in_key": (base(metadata={"a[b]": "v"}), "metadata.a[b]"),
    "value_501": (base(metadata={"k": "v" * 501}), "metadata.k"),
    "51_keys": (base(metadata={f"k{i}": "v" for i in range(51)}), "metadata"),
    "reserved_prefix": (base(metadata={"bc_reason": "spoof"}), "metadata.bc_reason"),
    "keys_plus_reserved_over_50": (base(reason="r", metadata={f"k{i}": "v" for i in range(50)}),
                                   "metadata"),
    "keys_plus_flags_over_50": (base(metadata={f"k{i}": "v" for i in range(50)}), "metadata"),
    "reason_501": (base(reason="r" * 501), "reason"),
    "empty_metadata_value": (base(metadata={"k": ""}), "metadata.k"),
    "empty_name": (base(name=""), "name"),
    "sub_second_time": (base(effective_at=START + timedelta(microseconds=500)), "effective_at"),
    "mga_fraction": (base(amount=bc.Money(amount=Decimal("10.50"), currency="MGA")), "amount"),
    "kwd_last_digit": (base(amount=bc.Money(amount=Decimal("1.005"), currency="KWD")), "amount"),
    "paid_fractional_cent": (base(paid_amount=usd("1.001")), "paid_amount"),
    "no_minor_unit": (base(amount=bc.Money(amount=Decimal(1), currency="XAU")), "amount"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_before_any_request(case: str, provider: StripeProvider, fake: StripeFake,
                                    faults: Faults) -> None:
    data, field = CASES[case]
    before = provider.runtime.calls
    with pytest.raises(bc.NotRepresentableError) as refused:
        provider.create_grant(data)
    assert field in refused.value.fields, refused.value.fields
    assert refused.value.provider == "stripe"
    assert field in str(refused.value)
    assert provider.runtime.calls == before
    assert faults.stats.requests == 0
    assert fake.requests == []


def test_every_problem_is_named_at_once(provider: StripeProvider) -> None:
    data = base(amount=usd("10.005"), priority=Decimal("0.5"),
                scope=bc.Scope(product_tags=("t",)), metadata={"k" * 41: "v"})
    with pytest.raises(bc.NotRepresentableError) as refused:
        provider.create_grant(data)
    assert {"amount", "priority", "scope.product_tags", "metadata." + "k" * 41} <= set(
        refused.value.fields)


async def test_refused_async_too(provider: StripeProvider, faults: Faults) -> None:
    with pytest.raises(bc.NotRepresentableError):
        await provider.acreate_grant(base(priority=Decimal("0.5")))
    assert faults.stats.requests == 0


def test_what_fits_exactly_is_accepted(provider: StripeProvider) -> None:
    """The limits are limits, not off by one: 20 prices, 40-char keys, 100-char names,
    50 keys including the provider's own, 500-char values, priorities 0 and 100."""
    keys = {f"{i:02d}" + "k" * 38: "v" * 500 for i in range(48)}
    fields = base(
        name="n" * 100, reason="why", metadata=keys, priority=Decimal(0),
        category=bc.Category.PAID,
        scope=bc.Scope(price_ids=tuple(f"price_{i}" for i in range(20))),
        idempotency_key="fits-1",
    )
    created = provider.create_grant(fields)
    assert created.as_new() == bc.CreditGrant.model_validate(fields)
    assert created.raw is not None
    assert len(created.raw["metadata"]) == 50
    top = provider.create_grant(base(priority=Decimal(100), customer_id="cus_top"))
    assert top.priority == 100
