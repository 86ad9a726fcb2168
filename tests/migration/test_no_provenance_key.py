"""``provenance=False`` keeps metadata as the source had it, so a migrated grant whose fields
changed does not carry ``migrated_from_key``: the application's later create with its own key
is a conflict on the target. The plan says so on that grant (review of issue 8)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import billing_credits as bc

START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def welcome() -> bc.CreditGrant:
    return bc.CreditGrant(customer_id="cus_1", amount=bc.Money(amount=Decimal(50), currency="USD"),
                          effective_at=START, idempotency_key="welcome-cus_1")


def key_changes(plan: bc.MigrationPlan) -> list[bc.Change]:
    [item] = plan.to_create
    return [c for c in item.changes if c.field == "idempotency_key"]


@pytest.mark.parametrize("provenance", [True, False])
def test_the_plan_says_when_the_applications_key_will_conflict(tmp_path: Path,
                                                               provenance: bool) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    source.create_grant(welcome())
    source.consume("cus_1", bc.Money(amount=Decimal(20), currency="USD"), reference="u-1")
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    plan = bc.plan_migration(source, target, provenance=provenance)
    [item] = plan.to_create
    assert item.key == "welcome-cus_1"
    assert item.grant is not None
    assert item.grant.amount.amount == 30
    asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j"))
    if provenance:  # the application's repeat finds the migrated grant
        assert key_changes(plan) == []
        assert target.create_grant(welcome()).replayed is True
    else:
        [change] = key_changes(plan)
        assert "conflict" in change.why
        assert "amount" in change.why
        with pytest.raises(bc.ConflictError):  # what the plan announced
            target.create_grant(welcome())


def test_no_change_listed_when_nothing_differs(tmp_path: Path) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    source.create_grant(welcome())
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    plan = bc.plan_migration(source, target, provenance=False)
    assert key_changes(plan) == []
