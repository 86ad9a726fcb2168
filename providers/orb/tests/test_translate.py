"""Pure translation, both ways, property-tested: neutral grant → the SDK's increment
parameters → the block Orb stores from them → neutral grant again, exactly."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from billing_credits_orb import OrbProvider
from billing_credits_orb import _translate as tr
from hypothesis import assume, given
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits.testing.strategies import grants

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
RECORD_CAPS = replace(OrbProvider.capabilities, priority=bc.ANY_DECIMAL,
                      fields_in_metadata=OrbProvider.capabilities.fields_in_metadata
                      | {"priority"})


def _wire(value: Any) -> Any:
    """What the SDK sends (``openapi_dumps``: floats by ``repr``, datetimes ISO) and what the
    provider reads back (``parse_float=Decimal``)."""
    text = json.dumps(value, default=lambda o: o.isoformat())
    return json.loads(text, parse_float=Decimal)


def stored_block(params: dict[str, Any], block_id: str = "blk_1") -> dict[str, Any]:
    """The credit block Orb keeps for an increment (``CreditListResponse`` fields): the amount
    as the initial and current balance, the dates, filters, metadata and cost basis sent."""
    sent = _wire(params)
    return {"id": block_id, "balance": sent["amount"], "credit_block_source": "manual",
            "effective_date": sent.get("effective_date") or NOW.replace(
                hour=0).isoformat(),
            "expiry_date": sent.get("expiry_date"), "filters": sent.get("filters") or [],
            "maximum_initial_balance": sent["amount"], "metadata": sent["metadata"],
            "per_unit_cost_basis": sent.get("per_unit_cost_basis"), "status": "active"}


def _payable(grant: bc.CreditGrant) -> bc.CreditGrant:
    """A paid amount whose per-credit cost is a finite decimal (others are refused, tested
    below): replaced by a quarter of the amount."""
    try:
        tr.cost_basis(grant)
    except bc.NotRepresentableError:
        return grant.as_new(paid_amount=grant.amount.with_amount(grant.amount.amount / 4))
    return grant


def _orb_grants() -> st.SearchStrategy[bc.CreditGrant]:
    return grants(RECORD_CAPS, time_step=tr.DAY, now=NOW).map(_payable).filter(
        lambda g: not tr.problems(g))


@given(_orb_grants())
def test_round_trip_is_exact(grant: bc.CreditGrant) -> None:
    params = tr.increment_params(grant, policy="record")
    back = tr.from_block(stored_block(params), currency=params["currency"], now=NOW)
    assert back.as_new() == grant.as_new()
    if back.status in (bc.GrantStatus.ACTIVE, bc.GrantStatus.SCHEDULED):
        assert back.balance == grant.amount
    else:
        assert back.balance == grant.amount.with_amount(Decimal(0))
    if grant.priority is not None:
        assert "priority" in [a.field for a in back.adjustments], "a recorded priority is reported"


@given(_orb_grants())
def test_paid_amount_is_per_unit_cost_basis(grant: bc.CreditGrant) -> None:
    assume(grant.paid_amount is not None)
    params = tr.increment_params(grant, policy="record")
    basis = Decimal(params["per_unit_cost_basis"])
    assert grant.paid_amount is not None
    assert basis * grant.amount.amount == grant.paid_amount.amount
    settings = params.get("invoice_settings")
    assert (settings is not None) == (basis > 0), "an invoice exactly when the basis is above 0"
    if settings is not None:
        assert settings["mark_as_paid"] is True, "paid elsewhere: Orb's invoice is marked paid"


@given(_orb_grants())
def test_amount_on_the_wire_is_the_exact_decimal(grant: bc.CreditGrant) -> None:
    params = tr.increment_params(grant, policy="record")
    assert _wire(params)["amount"] == grant.amount.amount


def _grant(**changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {"customer_id": "cus_1", "effective_at": NOW.replace(hour=0),
                            "amount": bc.Money(amount=Decimal(10), currency="USD")}
    data.update(changes)
    return bc.CreditGrant(**data)


def test_a_cost_basis_that_is_not_a_finite_decimal_is_refused() -> None:
    grant = _grant(paid_amount=bc.Money(amount=Decimal(10), currency="USD"),
                   amount=bc.Money(amount=Decimal(3), currency="USD"))
    with pytest.raises(bc.NotRepresentableError) as refused:
        tr.increment_params(grant)
    assert refused.value.fields == ("paid_amount",)


def test_paid_amount_in_another_currency_is_refused() -> None:
    with pytest.raises(bc.NotRepresentableError) as refused:
        tr.increment_params(_grant(paid_amount=bc.Money(amount=Decimal(5), currency="EUR")))
    assert refused.value.fields == ("paid_amount",)


def test_priority_is_refused_unless_the_policy_records_it() -> None:
    grant = _grant(priority=Decimal(3))
    with pytest.raises(bc.NotRepresentableError) as refused:
        tr.increment_params(grant)
    assert refused.value.fields == ("priority",)
    assert tr.NO_PRIORITY.problem(Decimal(3))
    assert tr.increment_params(grant, policy="record")["metadata"]["bc_priority"] == "3"


def test_invoice_when_asked() -> None:
    grant = _grant(paid_amount=bc.Money(amount=Decimal(5), currency="USD"))
    assert tr.increment_params(grant)["invoice_settings"]["mark_as_paid"] is True
    asked = tr.increment_params(grant, invoice=True, net_terms=15)["invoice_settings"]
    assert asked == {"auto_collection": True, "net_terms": 15, "mark_as_paid": False}


def test_times_finer_than_a_day_are_refused() -> None:
    with pytest.raises(bc.NotRepresentableError) as refused:
        tr.increment_params(_grant(expires_at=NOW))
    assert refused.value.fields == ("expires_at",)


def test_an_excludes_filter_is_not_read_as_a_scope() -> None:
    block = stored_block(tr.increment_params(_grant()))
    block["filters"] = [{"field": "item_id", "operator": "excludes", "values": ["item_a"]}]
    with pytest.raises(bc.InvalidResponseError, match="excludes"):
        tr.from_block(block, currency="USD", now=NOW)


def test_long_idempotency_keys_get_a_stable_64_character_header() -> None:
    key = "k" * 128
    assert len(tr.header_key(key)) <= tr.MAX_IDEMPOTENCY_KEY_LENGTH
    assert tr.header_key(key) == tr.header_key(key)
    assert tr.header_key("short") == "short"
    assert tr.header_key("k" * 127) != tr.header_key(key)


def test_amounts_read_as_floats_are_refused() -> None:
    block = stored_block(tr.increment_params(_grant()))
    block["balance"] = 10.0
    with pytest.raises(bc.InvalidResponseError):
        tr.from_block(block, currency="USD", now=NOW)


@pytest.mark.parametrize(("entry_type", "kind", "sign"), [
    ("increment", bc.LedgerKind.GRANTED, 1), ("decrement", bc.LedgerKind.CONSUMED, -1),
    ("credit_block_expiry", bc.LedgerKind.EXPIRED, -1), ("void", bc.LedgerKind.VOIDED, -1),
    ("amendment", bc.LedgerKind.ADJUSTED, 1), ("expiration_change", bc.LedgerKind.ADJUSTED, 0),
    ("void_initiated", bc.LedgerKind.ADJUSTED, 0),
])
def test_every_entry_type_has_a_neutral_kind(entry_type: str, kind: bc.LedgerKind,
                                             sign: int) -> None:
    entry = {"id": "e1", "amount": Decimal("2.5"), "created_at": NOW.isoformat(),
             "credit_block": {"id": "blk_1"}, "currency": "USD", "entry_type": entry_type,
             "ending_balance": Decimal(5), "metadata": {}}
    read = tr.entry_to_ledger(entry, "cus_1")
    assert read.kind is kind
    assert read.amount.amount == sign * Decimal("2.5")
    assert read.grant_id == "blk_1"


def test_orbs_order_is_declared_with_citations() -> None:
    order = OrbProvider.consumption_order
    assert order is not None
    assert [r.name for r in order.rules] == ["expires_at", "cost_basis"]
    assert all("ledger.py" in r.cites for r in order.rules)
    assert order.documented_tie_break is False
    soon = _grant(expires_at=NOW.replace(hour=0) + timedelta(days=2), id="a",
                  created_at=NOW)
    later_cheap = _grant(expires_at=NOW.replace(hour=0) + timedelta(days=9), id="b",
                         created_at=NOW)
    usage = bc.Usage(customer_id="cus_1", amount=bc.Money(amount=Decimal(12), currency="USD"),
                     at=NOW)
    drawn = bc.allocate([later_cheap, soon], [usage], order).draws
    assert [d.grant_id for d in drawn] == ["a", "b"]
