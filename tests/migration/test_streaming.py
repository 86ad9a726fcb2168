"""A migration's memory does not grow with its plan (issue 9.7): ``write_plan`` writes the plan
as it is decided, ``MigrationPlan.open`` reads it back lazily, and ``apply_plan`` and
``verify_plan`` go through it in passes. The streamed plan is the one ``plan_migration`` holds,
line for line, and applying or verifying it gives the same reports."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import billing_credits as bc
from billing_credits.migrate._apply import _Scan

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = datetime(2026, 1, 1, tzinfo=UTC)


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


class Narrow(bc.Provider):
    """A local provider restricted like Stripe: integer priorities 0-100, one segment."""

    name = "narrow"
    capabilities = bc.Capabilities(
        priority=bc.PriorityDomain("integer", Decimal(0), Decimal(100), default=Decimal(50)),
        max_segments=1, custom_units=False, scope_kinds=frozenset({"price_ids"}),
    )

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
    """Three customers; priorities to map, a custom unit (refused by ``Narrow``), a schedule to
    split, a scope to map, application keys, an expired and a voided grant."""
    unit = bc.CreditUnit(id="fa2f1b3d", name="cloud consumption units")
    for customer in ("cus_c", "cus_a", "cus_b"):
        source.create_grant(bc.CreditGrant(
            customer_id=customer, amount=bc.Money(amount=Decimal(100), unit=unit),
            priority=Decimal("0.5"), effective_at=NOW - timedelta(days=1)))
        source.create_grant(bc.CreditGrant(
            customer_id=customer, amount=usd("50.00"), priority=Decimal(1),
            effective_at=NOW - timedelta(days=1), idempotency_key=f"paid-{customer}",
            scope=bc.Scope(product_ids=("prod_compute",))))
        source.create_grant(bc.CreditGrant(
            customer_id=customer, amount=usd("30.00"), priority=Decimal(200),
            idempotency_key=f"app-{customer}",
            schedule=(bc.Segment(amount=Decimal(10), starts_at=NOW - timedelta(days=10),
                                 ends_before=NOW + timedelta(days=20)),
                      bc.Segment(amount=Decimal(20), starts_at=NOW + timedelta(days=20),
                                 ends_before=NOW + timedelta(days=50)))))
        source.create_grant(bc.CreditGrant(
            customer_id=customer, amount=usd("5.00"), effective_at=NOW - timedelta(days=9),
            expires_at=NOW - timedelta(days=2)))
        voided = source.create_grant(bc.CreditGrant(customer_id=customer, amount=usd("9")))
        source.void_grant(voided.id or "")


@pytest.mark.parametrize("options", [
    {},
    {"priority_policy": "preserve-order", "scope_map": {"prod_compute": ["price_1"]},
     "strict": False},
    {"amount_mode": "original", "customer_map": {"cus_a": "new_a", "cus_b": "new_b"},
     "strict": False},
])
def test_write_plan_writes_line_for_line_what_plan_migration_holds(
        tmp_path: Path, options: dict[str, Any]) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    seed(source)
    target = Narrow(tmp_path / "t.db")
    held = io.StringIO()
    plan = bc.plan_migration(source, target, now=NOW, **options)
    plan.write(held)
    streamed = io.StringIO()
    summary = bc.write_plan(source, target, streamed, now=NOW, **options)
    assert streamed.getvalue() == held.getvalue()
    assert summary == plan.summary()
    path = tmp_path / "plan.jsonl"
    path.write_text(streamed.getvalue())
    opened = bc.MigrationPlan.open(path)
    assert opened.header == plan.header
    assert list(opened.items) == [i.model_copy(update={"grant": i.grant.model_copy(
        update={"raw": None}) if i.grant else None}) for i in plan.items]
    assert opened.fingerprint() == plan.fingerprint()
    assert _Scan.of(opened).fingerprint == plan.fingerprint()  # apply's journal is tied to it
    assert opened.summary() == plan.summary()


class Listed(bc.Provider):
    """A read-only source holding given grants (local refuses one key on two grants)."""

    name = "listed"
    capabilities = bc.Capabilities()

    def __init__(self, grants: list[bc.CreditGrant]) -> None:
        super().__init__()
        self.grants = grants

    def _create(self, grant, key):  # type: ignore[no-untyped-def]
        raise NotImplementedError
        yield

    def _list_page(self, query, cursor):  # type: ignore[no-untyped-def]
        return bc.Page([g for g in self.grants if query.customer_id in (None, g.customer_id)])
        yield

    def _get(self, grant_id):  # type: ignore[no-untyped-def]
        return next(g for g in self.grants if g.id == grant_id)
        yield


def test_a_key_on_grants_of_two_customers_is_derived_in_the_streamed_plan_too(
        tmp_path: Path) -> None:
    grants = [bc.CreditGrant.model_validate({
        "customer_id": customer, "amount": usd("300"), "id": f"g{n}", "provider": "listed",
        "status": "active", "balance": usd("200"), "idempotency_key": key,
        "priority": Decimal(n), "effective_at": NOW}) for n, (customer, key) in enumerate(
            [("cus_b", "dup"), ("cus_a", "own"), ("cus_a", "dup"), ("cus_b", "x")])]
    source, target = Listed(grants), Narrow(tmp_path / "t.db")
    for policy in ("exact", "preserve-order"):
        held = io.StringIO()
        plan = bc.plan_migration(source, target, now=NOW, priority_policy=policy)  # type: ignore[arg-type]
        plan.write(held)
        streamed = io.StringIO()
        bc.write_plan(source, target, streamed, now=NOW, priority_policy=policy)  # type: ignore[arg-type]
        assert streamed.getvalue() == held.getvalue()
        assert sorted(i.key or "" for i in plan.to_create if i.key in ("own", "x")) == ["own", "x"]
        assert "dup" not in {i.key for i in plan.to_create}


def test_an_opened_plan_holds_no_item_and_applies_and_verifies_as_a_loaded_one(
        tmp_path: Path) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    seed(source)
    target = Narrow(tmp_path / "t.db")
    path = tmp_path / "plan.jsonl"
    with path.open("w") as out:
        bc.write_plan(source, target, out, priority_policy="preserve-order",
                      scope_map={"prod_compute": ["price_1"]}, strict=False)
    plan = bc.MigrationPlan.open(path)
    assert not isinstance(plan.items, list)
    loaded = bc.MigrationPlan.load(path)
    assert len(plan.items) == len(loaded.items)
    assert list(plan.items) == loaded.items

    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db", source=source,
                                       retire="void", concurrency=2))
    assert report.ok, report.failed
    assert report.created == len(loaded.to_create) == 9
    assert report.retired == 6  # the custom-unit grants are refused: they stay on the source
    again = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "other.db"))
    assert (again.created, again.already_done) == (0, 9)

    verified = bc.verify_plan(plan, target)
    assert verified.ok, verified.lines()
    assert verified.checked == 9
    assert verified.totals == bc.verify_plan(loaded, target).totals
    # Differences are reported in the plan's order, whichever customer is read first.
    victims = [i.key for i in loaded.to_create if i.key][::4]
    for grant in target.list_grants():
        if grant.idempotency_key in victims:
            target.inner.void_grant(grant.id or "")
    lazy, whole = bc.verify_plan(plan, target), bc.verify_plan(loaded, target)
    assert lazy.missing == victims
    assert (lazy.missing, lazy.different, lazy.totals) == (whole.missing, whole.different,
                                                           whole.totals)


def test_an_opened_plan_changed_since_is_refused(tmp_path: Path) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    seed(source)
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    path = tmp_path / "plan.jsonl"
    with path.open("w") as out:
        bc.write_plan(source, target, out)
    plan = bc.MigrationPlan.open(path)
    path.write_text(path.read_text().replace('"amount":"30.00"', '"amount":"3000.00"'))
    with pytest.raises(bc.MigrationError, match="changed since it was read"):
        asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert list(target.list_grants()) == []


# -- memory: a few small indexes per grant at most (keys, ids), never the plan -------------------


def synthetic(count: int, *, migrated: bool = False) -> tuple[bc.Provider, bc.Provider]:
    """A source generating grant i from its index (holds nothing), and a target storing
    nothing that lists nothing, or (``migrated``) what a correct apply leaves behind."""

    def grant(index: int) -> bc.CreditGrant:
        return bc.CreditGrant(
            customer_id=f"cus_{index % 20:02d}", id=f"src_{index:08d}", provider="synthetic",
            amount=usd(f"{10 + index % 90}.{index % 100:02d}"),
            balance=usd(f"{10 + index % 90}.{index % 100:02d}"), status=bc.GrantStatus.ACTIVE,
            priority=Decimal(1 + index % 100), name=f"Prepaid credits {index}",
            effective_at=START, expires_at=datetime(2099, 1, 1, tzinfo=UTC),
            idempotency_key=f"seed-{index}", metadata={"note": "x" * 200})

    def page(query: bc.ListQuery, cursor: str | None,
             build: Callable[[int], bc.CreditGrant]) -> bc.Flow[bc.Page]:
        first, step = (0, 1) if query.customer_id is None else (
            int(query.customer_id.removeprefix("cus_")), 20)
        offset = int(cursor or 0)
        indexes = range(first + offset * step, count, step)[:100]
        more = bool(indexes) and indexes[-1] + step < count
        result = bc.Page([build(i) for i in indexes], str(offset + 100) if more else None)

        async def answer() -> bc.Page:
            return result
        got: bc.Page = yield bc.Call(lambda: result, answer)
        return got

    class Source(bc.Provider):
        name = "synthetic"
        capabilities = bc.Capabilities()

        def _create(self, grant: bc.CreditGrant, key: str) -> bc.Flow[bc.CreditGrant]:
            raise bc.UnsupportedOperationError(self.name, "create")
            yield  # pragma: no cover

        def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
            return page(query, cursor, grant)

        def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
            raise bc.NotFoundError(grant_id)
            yield  # pragma: no cover

    class Target(Source):
        name = "synthetic-target"

        def _create(self, new: bc.CreditGrant, key: str) -> bc.Flow[bc.CreditGrant]:
            stored = new.model_copy(update={"id": f"tgt_{key}", "status": bc.GrantStatus.ACTIVE})

            async def answer() -> bc.CreditGrant:
                return stored
            got: bc.CreditGrant = yield bc.Call(lambda: stored, answer)
            return got

        def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
            def held(index: int) -> bc.CreditGrant:
                return grant(index).model_copy(update={"id": f"tgt_{index}"})
            if not migrated:
                query = dataclasses.replace(query, customer_id="cus_99999999")  # none
            return page(query, cursor, held)

    return Source(), Target()


def peak(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measured(phase: str, count: int, folder: Path) -> int:
    """Peak traced memory of one phase of a migration of ``count`` grants."""
    source, target = synthetic(count, migrated=phase == "verify")
    path = folder / "plan.jsonl"

    def plan() -> None:
        with path.open("w") as out:
            bc.write_plan(source, target, out, now=START + timedelta(days=1))

    def apply() -> None:
        report = asyncio.run(bc.apply_plan(bc.MigrationPlan.open(path), target,
                                           journal=folder / "j.db"))
        assert report.ok, report.failed[:3]  # a failing apply would measure nothing
        assert report.created == count

    def verify() -> None:
        report = bc.verify_plan(bc.MigrationPlan.open(path), target)
        assert report.ok, report.lines()[:3]
        assert report.checked == count

    if phase == "plan":
        return peak(plan)
    plan()
    return peak(apply if phase == "apply" else verify)


@pytest.mark.parametrize("phase", ["plan", "apply", "verify"])
def test_memory_per_planned_grant_is_a_small_index_not_the_plan(tmp_path: Path, phase: str) -> None:
    """Each phase at 600 and at 3,000 grants: the held plan cost ~7-15 KB a grant. The planner
    keeps under 1 KB a grant (its key or id in an index). Apply and verify index the plan on
    disk (``PlanIndex``) and hold one customer's share at a time (here 1/20 of the grants, so
    that share grows with them): under 256 bytes a grant (the index in memory was 300-400)."""
    peaks = {}
    for count in (600, 3000):
        (tmp_path / str(count)).mkdir()
        peaks[count] = measured(phase, count, tmp_path / str(count))
    per_grant = (peaks[3000] - peaks[600]) / 2400
    limit = 1024 if phase == "plan" else 256
    assert per_grant < limit, f"{phase}: {per_grant:.0f} bytes per planned grant ({peaks})"
