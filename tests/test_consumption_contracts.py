"""Issue 18.3: the engine's contract vocabulary (vendor-neutral): ``fewest_contracts`` and usage
billed under a contract. Both failed before issue 18 (unknown rule; ``Usage`` had no
``contract_id``, so a contract-scoped grant admitted nothing)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import billing_credits as bc

AT = datetime(2026, 6, 1, tzinfo=UTC)


def _grant(gid: str, amount: str, contracts: tuple[str, ...] = ()) -> bc.CreditGrant:
    return bc.CreditGrant(id=gid, customer_id="c", amount=bc.Money(amount=Decimal(amount),
                                                                   currency="USD"),
                          effective_at=AT, scope=bc.Scope(contract_ids=contracts))


ORDER = bc.ConsumptionOrder(
    provider="test", rules=(bc.OrderRule("fewest_contracts", "asc", "test"),),
    documented_tie_break=False)


def test_fewer_contracts_pay_first_and_all_contracts_last() -> None:
    grants = [_grant("all", "5"), _grant("two", "5", ("k1", "k2")), _grant("one", "1", ("k1",))]
    usage = [bc.Usage(customer_id="c", amount=bc.Money(amount=Decimal("8"), currency="USD"),
                      at=AT, contract_id="k1")]
    allocation = bc.allocate(grants, usage, ORDER)
    assert [(d.grant_id, d.amount) for d in allocation.draws] == [
        ("one", Decimal(1)), ("two", Decimal(5)), ("all", Decimal(2))]
    assert allocation.ties == []


def test_a_contract_scoped_grant_admits_only_its_contracts() -> None:
    scoped = _grant("scoped", "5", ("k1",))
    under = bc.Usage(customer_id="c", amount=bc.Money(amount=Decimal(1), currency="USD"), at=AT,
                     contract_id="k1")
    assert bc.admits(scoped, under)
    assert not bc.admits(scoped, under.model_copy(update={"contract_id": "k2"}))
    assert not bc.admits(scoped, under.model_copy(update={"contract_id": None}))
    assert bc.admits(_grant("all", "5"), under)
