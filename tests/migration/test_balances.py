"""Migration uses balances: plan says where remaining amounts came from; verify compares the
usable balance on the source before with the target's after (issue 11)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import billing_credits as bc


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


class NoBalance(bc.Provider):
    """A local store that does not report balances."""

    name = "no-balance"
    capabilities = bc.Capabilities(operations=frozenset({"create", "list", "get"}))

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.inner = bc.get_provider("local", path=str(path))

    def _create(self, grant, key):  # type: ignore[no-untyped-def]
        return self.inner._create(grant, key)

    def _list_page(self, query, cursor):  # type: ignore[no-untyped-def]
        return self.inner._list_page(query, cursor)

    def _get(self, grant_id):  # type: ignore[no-untyped-def]
        return self.inner._get(grant_id)


def seed(source: bc.Provider) -> None:
    now = datetime.now(UTC)
    for customer, amounts in (("cus_a", ("10.00", "5.50")), ("cus_b", ("7.25",))):
        for n, amount in enumerate(amounts):
            source.create_grant(bc.CreditGrant(
                customer_id=customer, amount=usd(amount), priority=n,
                effective_at=now - timedelta(days=1), expires_at=now + timedelta(days=30)))
    source.consume("cus_a", usd("11.25"), reference="u-1")


def test_verify_compares_usable_balances_before_and_after(tmp_path: Path) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "source.db"))
    target = bc.get_provider("local", path=str(tmp_path / "target.db"))
    seed(source)
    plan = bc.plan_migration(source, target, customer_map={"cus_a": "new_a", "cus_b": "new_b"})
    assert plan.header.remaining_source is not None
    assert plan.header.remaining_source.startswith("local: local ledger")
    assert plan.header.source_balances == {"new_a": {"USD": "4.25"}, "new_b": {"USD": "7.25"}}
    plan.save(tmp_path / "plan.jsonl")
    plan = bc.MigrationPlan.load(tmp_path / "plan.jsonl")
    assert plan.header.source_balances == {"new_a": {"USD": "4.25"}, "new_b": {"USD": "7.25"}}

    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert report.failed == []
    verified = bc.verify_plan(plan, target)
    assert verified.ok, verified.lines()
    assert verified.balances == {
        "new_a": {"USD": {"source_before": "4.25", "target_after": "4.25"}},
        "new_b": {"USD": {"source_before": "7.25", "target_after": "7.25"}}}

    target.consume("new_b", usd("0.01"), reference="after")
    verified = bc.verify_plan(plan, target)
    assert not verified.ok
    assert "new_b usable balance USD: planned 7.25, found 7.24" in verified.lines()


def test_without_source_balances_verify_checks_grants_only(tmp_path: Path) -> None:
    inner = bc.get_provider("local", path=str(tmp_path / "source.db"))
    seed(inner)
    source = NoBalance(tmp_path / "source.db")
    target = bc.get_provider("local", path=str(tmp_path / "target.db"))
    plan = bc.plan_migration(source, target)
    assert plan.header.remaining_source == "no-balance: each grant's balance as listed"
    assert plan.header.source_balances is None
    asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    verified = bc.verify_plan(plan, target)
    assert verified.ok
    assert verified.balances == {}
    original = bc.plan_migration(inner, target, amount_mode="original")
    assert original.header.remaining_source is None
    assert original.header.source_balances is None


def test_a_balance_too_large_to_read_does_not_stop_the_plan(tmp_path: Path) -> None:
    """Two grants of one customer adding up to more than 40 digits: that customer's source
    balance is not available (with why), the plan goes on, verify skips it and says so."""

    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    big = Decimal("999999999999999999999999999999.9999999999")
    for customer, amount in (("big", big), ("big", big), ("small", Decimal(5))):
        source.create_grant(bc.CreditGrant(customer_id=customer,
                                           amount=bc.Money(amount=amount, currency="USD")))
    plan = bc.plan_migration(source, target)
    assert len(plan.to_create) == 3
    assert plan.header.source_balances == {"small": {"USD": "5"}}
    assert "big" in plan.header.source_balances_unavailable
    assert "40 significant digits" in plan.header.source_balances_unavailable["big"]
    plan.save(tmp_path / "plan.jsonl")
    plan = bc.MigrationPlan.load(tmp_path / "plan.jsonl")
    asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j"))
    report = bc.verify_plan(plan, target)
    assert report.ok, report.lines()
    assert set(report.balances_skipped) == {"big"}
    why = plan.header.source_balances_unavailable["big"]
    assert report.notes() == [f"big: balance not compared ({why})"]
    assert "small" in report.balances
