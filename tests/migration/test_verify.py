"""``verify_plan`` checks each comparison it documents, and retiring checks the target grant
(issue 21).

Each test applies a plan to a real ``local`` target, then reads that target through
``Tampered``, a provider that lists the same grants with one defect (an amount changed, a grant
listed twice, one left out…), and asserts the exact difference ``verify_plan`` reports. Each
fails when the comparison it names is removed from ``verify_plan`` (see tests/README.md and
``scripts/mutations.py``, which remove each one and run the test).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import billing_credits as bc

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
Tamper = Callable[[list[bc.CreditGrant]], list[bc.CreditGrant]]


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


class Tampered(bc.Provider):
    """Lists ``inner``'s grants after ``tamper`` changed them; the customer filter is passed on
    but not re-checked, as a vendor could get it wrong."""

    name = "tampered"
    capabilities = bc.Capabilities()

    def __init__(self, inner: bc.Provider, tamper: Tamper) -> None:
        super().__init__()
        self.inner = inner
        self.tamper = tamper

    def _create(self, grant, key):  # type: ignore[no-untyped-def]
        return self.inner._create(grant, key)

    def _get(self, grant_id):  # type: ignore[no-untyped-def]
        return self.inner._get(grant_id)

    def _list_page(self, query, cursor):  # type: ignore[no-untyped-def]
        page = yield from self.inner._list_page(query, cursor)
        return dataclasses.replace(page, grants=self.tamper(list(page.grants)))


@pytest.fixture
def applied(tmp_path: Path) -> tuple[bc.MigrationPlan, bc.Provider]:
    """A plan of two grants of one customer (10.00 at priority 5, 7.00 at priority 9), applied
    to a local target."""
    source = bc.get_provider("local", path=str(tmp_path / "source.db"))
    for amount, priority in (("10.00", 5), ("7.00", 9)):
        source.create_grant(bc.CreditGrant(
            customer_id="cus_v", amount=usd(amount), priority=Decimal(priority),
            effective_at=NOW - timedelta(days=1), expires_at=NOW + timedelta(days=30)))
    target = bc.get_provider("local", path=str(tmp_path / "target.db"))
    plan = bc.plan_migration(source, target)
    assert asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db")).created == 2
    return plan, target


def keys(plan: bc.MigrationPlan) -> list[str]:
    return [item.key or "" for item in plan.iter_items() if item.action == "migrate"]


def changed(match: str, **update: object) -> Tamper:
    """Change the listed grant whose idempotency key is ``match``."""
    return lambda grants: [g.model_copy(update=update) if g.idempotency_key == match else g
                           for g in grants]


def test_an_untouched_target_verifies(applied: tuple[bc.MigrationPlan, bc.Provider]) -> None:
    plan, target = applied
    report = bc.verify_plan(plan, Tampered(target, lambda grants: grants))
    assert report.ok, report.lines()
    assert report.checked == 2
    assert report.totals == {"cus_v": {"USD": {"planned": "17.00", "found": "17.00"}}}


def test_a_different_amount_is_reported(applied: tuple[bc.MigrationPlan, bc.Provider]) -> None:
    plan, target = applied
    first = keys(plan)[0]
    report = bc.verify_plan(plan, Tampered(target, changed(first, amount=usd("9.99"))))
    assert (first, "amount", "10.00 USD", "9.99 USD") in report.different, report.different
    assert not report.ok


def test_a_different_priority_is_reported(applied: tuple[bc.MigrationPlan, bc.Provider]) -> None:
    plan, target = applied
    first = keys(plan)[0]
    report = bc.verify_plan(plan, Tampered(target, changed(first, priority=Decimal(6))))
    assert report.different == [(first, "priority", "5", "6")]
    assert not report.ok


def test_a_different_customer_is_reported(applied: tuple[bc.MigrationPlan, bc.Provider]) -> None:
    plan, target = applied
    first = keys(plan)[0]
    report = bc.verify_plan(plan, Tampered(target, changed(first, customer_id="cus_other")))
    assert report.different == [(first, "customer_id", "cus_v", "cus_other")]
    assert not report.ok


def test_a_per_customer_total_that_differs_is_reported(
        applied: tuple[bc.MigrationPlan, bc.Provider]) -> None:
    plan, target = applied
    first = keys(plan)[0]
    report = bc.verify_plan(plan, Tampered(target, changed(first, amount=usd("9.99"))))
    assert ("cus_v", "total USD", "17.00", "16.99") in report.different, report.different
    assert report.totals == {"cus_v": {"USD": {"planned": "17.00", "found": "16.99"}}}


def test_a_duplicate_is_reported(applied: tuple[bc.MigrationPlan, bc.Provider]) -> None:
    plan, target = applied
    first = keys(plan)[0]

    def twice(grants: list[bc.CreditGrant]) -> list[bc.CreditGrant]:
        extra = [g.model_copy(update={"id": f"{g.id}-again"}) for g in grants
                 if g.idempotency_key == first]
        return grants + extra

    report = bc.verify_plan(plan, Tampered(target, twice))
    assert report.duplicated == [first]
    assert report.missing == []
    assert not report.ok


def test_a_missing_grant_is_reported(applied: tuple[bc.MigrationPlan, bc.Provider]) -> None:
    plan, target = applied
    second = keys(plan)[1]
    report = bc.verify_plan(plan, Tampered(
        target, lambda grants: [g for g in grants if g.idempotency_key != second]))
    assert report.missing == [second]
    assert report.duplicated == []
    assert not report.ok


def test_a_voided_target_grant_is_missing(applied: tuple[bc.MigrationPlan, bc.Provider]) -> None:
    plan, target = applied
    second = keys(plan)[1]
    [stored] = [g for g in target.list_grants() if g.idempotency_key == second]
    target.void_grant(stored.id or "")
    report = bc.verify_plan(plan, target)
    assert report.missing == [second]


# -- retire -----------------------------------------------------------------------------------


def test_retire_leaves_the_source_when_its_target_grant_was_voided(tmp_path: Path) -> None:
    """The target grant holds the planned amount for the planned customer, but it is voided: the
    credit is not on the target, so the source grant must not be retired."""
    source = bc.get_provider("local", path=str(tmp_path / "source.db"))
    kept = source.create_grant(bc.CreditGrant(
        customer_id="cus_r", amount=usd("12.00"), effective_at=NOW - timedelta(days=1)))
    retired = source.create_grant(bc.CreditGrant(
        customer_id="cus_r", amount=usd("3.00"), effective_at=NOW - timedelta(days=1)))
    target = bc.get_provider("local", path=str(tmp_path / "target.db"))
    plan = bc.plan_migration(source, target)
    assert asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db")).created == 2
    by_source = {item.source_id: item.key for item in plan.iter_items()}
    [voided] = [g for g in target.list_grants() if g.idempotency_key == by_source[kept.id]]
    target.void_grant(voided.id or "")

    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db", source=source,
                                       retire="void"))
    assert report.retired == 1
    assert [(source_id, "does not hold what was planned" in why)
            for source_id, why in report.failed] == [(kept.id, True)]
    assert source.get_grant(kept.id or "").status is bc.GrantStatus.ACTIVE
    assert source.get_grant(retired.id or "").status is bc.GrantStatus.VOIDED
