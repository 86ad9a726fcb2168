"""Retiring source grants (issue 8.6): a source already in the wanted state counts as retired
(a crash between retiring and journalling must not make every later run fail), and a source
whose credit stops later than the moment of retiring is reported as an overlap window."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc
from billing_credits.local import LocalProvider

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def stripe_source(fake: StripeFake) -> bc.Provider:
    transport = fake.transport()
    return bc.get_provider("stripe", api_key="sk_test_retire", rate_limit="0",
                           http_client=httpx.Client(transport=transport),
                           async_http_client=httpx.AsyncClient(transport=transport))


def test_a_stripe_grant_voided_before_the_crash_counts_as_retired(tmp_path: Path) -> None:
    fake = StripeFake(seed=3)
    source = stripe_source(fake)
    made = [source.create_grant(bc.CreditGrant(
        customer_id="cus_1", amount=usd(f"{n + 1}"), effective_at=HOUR - timedelta(days=1),
        idempotency_key=f"app-{n}")) for n in range(3)]
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    plan = bc.plan_migration(source, target, amount_mode="original")
    assert asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db")).created == 3
    # A first apply --retire voided this one, then was killed before journalling it.
    source.void_grant(made[0].id or "")
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db", source=source,
                                       retire="void"))
    assert (report.retired, report.failed) == (3, [])
    assert all(g["voided_at"] for g in fake.grants.values())
    assert {g.status for g in source.list_grants()} == {bc.GrantStatus.VOIDED}
    again = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j2.db", source=source,
                                      retire="void"))
    assert (again.retired, again.failed, again.created) == (3, [], 0)


def test_expire_after_a_void_counts_as_retired(tmp_path: Path) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    first = source.create_grant(bc.CreditGrant(customer_id="c", amount=usd("5"),
                                               effective_at=HOUR - timedelta(days=1)))
    source.create_grant(bc.CreditGrant(customer_id="c", amount=usd("6"),
                                       effective_at=HOUR - timedelta(days=1)))
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    plan = bc.plan_migration(source, target)
    source.void_grant(first.id or "")  # retired already, by hand or by a killed run
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db", source=source,
                                       retire="expire"))
    assert (report.created, report.retired, report.failed) == (2, 2, [])


class Hourly(LocalProvider):
    """A local source whose retiring takes effect at the next whole hour (like Metronome's
    hour alignment)."""

    def retire_effective_at(self, how: str, now: datetime) -> datetime:  # type: ignore[override]
        return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def test_an_overlap_window_is_reported(tmp_path: Path) -> None:
    source = Hourly(tmp_path / "s.db")
    grant = source.create_grant(bc.CreditGrant(customer_id="c", amount=usd("5"),
                                               effective_at=HOUR - timedelta(days=1)))
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    plan = bc.plan_migration(source, target)
    assert set(plan.header.retire_overlaps) == {"void", "expire"}
    assert "spendable until" in plan.summary()["retire_overlaps"]["expire"]
    before = datetime.now(UTC)
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db", source=source,
                                       retire="expire"))
    assert report.retired == 1
    [overlap] = report.overlaps
    assert overlap.source_id == grant.id
    assert before <= overlap.starts <= datetime.now(UTC)
    assert overlap.ends == before.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert "both spendable" in str(overlap)
    assert report.as_dict()["overlaps"] == [str(overlap)]
