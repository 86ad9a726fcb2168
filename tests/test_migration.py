"""Migration between providers, on local providers (the vendor end-to-end runs live beside
the vendor fakes)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits.cli import cli
from billing_credits.local import LocalProvider

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
USD = "USD"


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency=USD)


class Stripeish(bc.Provider):
    """A local provider restricted like Stripe: integer priorities 0-100, one segment."""

    name = "stripeish"
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


@pytest.fixture
def source(tmp_path: Path) -> bc.Provider:
    return bc.get_provider("local", path=str(tmp_path / "source.db"))


@pytest.fixture
def target(tmp_path: Path) -> bc.Provider:
    return bc.get_provider("local", path=str(tmp_path / "target.db"))


def seed(source: bc.Provider) -> dict[str, bc.CreditGrant]:
    """Seed-shaped grants: a custom unit, a paid amount, a multi-segment credit, priorities
    0.5 / 1 / 100, an expired and a voided grant."""
    unit = bc.CreditUnit(id="fa2f1b3d", name="cloud consumption units")
    made = {
        "custom": source.create_grant(bc.CreditGrant(
            customer_id="cus_a", amount=bc.Money(amount=Decimal(100), unit=unit),
            paid_amount=usd("0.10"), priority=Decimal("0.5"), effective_at=NOW - timedelta(days=1),
            expires_at=NOW + timedelta(days=60), category_label="enterprise")),
        "paid": source.create_grant(bc.CreditGrant(
            customer_id="cus_a", amount=usd("50.00"), paid_amount=usd("50.00"),
            category=bc.Category.PAID, priority=Decimal(1), effective_at=NOW - timedelta(days=1),
            scope=bc.Scope(product_ids=("prod_compute",)))),
        "scheduled": source.create_grant(bc.CreditGrant(
            customer_id="cus_a", amount=usd("30.00"), priority=Decimal(100),
            schedule=(
                bc.Segment(amount=Decimal(10), starts_at=NOW - timedelta(days=40),
                           ends_before=NOW - timedelta(days=10)),
                bc.Segment(amount=Decimal(10), starts_at=NOW - timedelta(days=10),
                           ends_before=NOW + timedelta(days=20)),
                bc.Segment(amount=Decimal(10), starts_at=NOW + timedelta(days=20),
                           ends_before=NOW + timedelta(days=50)),
            ))),
        "other": source.create_grant(bc.CreditGrant(
            customer_id="cus_b", amount=usd("5.00"), priority=Decimal(7))),
        "expired": source.create_grant(bc.CreditGrant(
            customer_id="cus_b", amount=usd("5.00"), effective_at=NOW - timedelta(days=9),
            expires_at=NOW - timedelta(days=2))),
    }
    voided = source.create_grant(bc.CreditGrant(customer_id="cus_b", amount=usd("9")))
    made["voided"] = source.void_grant(voided.id or "")
    return made


def test_local_to_local_moves_everything_live_and_skips_the_rest(
    source: bc.Provider, target: bc.Provider, tmp_path: Path
) -> None:
    made = seed(source)
    plan = bc.plan_migration(source, target)
    reasons = {i.source_id: i.reason for i in plan.items if i.action == "skip"}
    assert reasons == {made["expired"].id: "expired", made["voided"].id: "voided"}
    # The scheduled grant keeps its two live segments (the ended one is gone).
    scheduled = next(i for i in plan.to_create if i.source_id == made["scheduled"].id)
    assert scheduled.grant is not None
    assert scheduled.grant.amount.amount == Decimal(20)
    assert [s.amount for s in scheduled.grant.schedule or ()] == [Decimal(10), Decimal(10)]

    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert (report.created, report.failed) == (4, [])
    again = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert (again.created, again.already_done) == (0, 4)
    # Even without the journal, the target's own state makes a re-run create nothing new.
    fresh = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "other.db"))
    assert (fresh.created, fresh.already_done) == (0, 4)
    assert len(list(target.list_grants())) == 4

    verified = bc.verify_plan(plan, target)
    assert verified.ok, verified.lines()
    assert verified.totals["cus_a"]["USD"] == {"planned": "70.00", "found": "70.00"}


def test_order_preserving_priorities_and_refusals_onto_a_narrow_target(
    source: bc.Provider, tmp_path: Path
) -> None:
    made = seed(source)
    narrow = Stripeish(tmp_path / "narrow.db")
    exact = bc.plan_migration(source, narrow)
    refused = {i.source_id: i.reason for i in exact.refusals}
    assert made["custom"].id in refused
    assert "custom credit units" in refused[made["custom"].id]
    assert "priority" in refused[made["paid"].id] or "product_ids" in refused[made["paid"].id]
    with pytest.raises(bc.MigrationError, match="refusal"):
        asyncio.run(bc.apply_plan(exact, narrow, journal=tmp_path / "j.db"))

    plan = bc.plan_migration(source, narrow, priority_policy="preserve-order",
                             scope_map={"prod_compute": ["price_1", "price_2"]}, strict=False)
    migrated = {(i.source_id, i.segment): i for i in plan.to_create}
    # The multi-segment credit is split into one grant per live segment.
    assert {(made["scheduled"].id, 1), (made["scheduled"].id, 2)} <= set(migrated)
    paid = migrated[(made["paid"].id, None)]
    assert paid.grant is not None
    assert paid.grant.scope.price_ids == ("price_1", "price_2")
    # cus_a: 0.5 (custom unit, refused anyway), 1, 100 → order kept on 0-100 integers.
    order = sorted((i.grant.priority, i.source_id) for i in plan.to_create
                   if i.grant is not None and i.grant.customer_id == "cus_a")
    assert next(sid for _, sid in order) == made["paid"].id
    fields = {c.field for i in plan.items for c in i.changes}
    assert {"priority", "scope"} <= fields
    report = asyncio.run(bc.apply_plan(plan, narrow, journal=tmp_path / "n.db"))
    assert report.ok
    assert bc.verify_plan(plan, narrow).ok


def test_verify_reports_a_missing_grant(source: bc.Provider, target: bc.Provider, tmp_path: Path) -> None:
    seed(source)
    plan = bc.plan_migration(source, target)
    asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    victim = next(iter(target.list_grants()))
    target.void_grant(victim.id or "")
    report = bc.verify_plan(plan, target)
    assert not report.ok
    assert report.missing == [victim.idempotency_key]


def test_retire_only_after_confirmation(source: bc.Provider, target: bc.Provider, tmp_path: Path) -> None:
    made = seed(source)
    plan = bc.plan_migration(source, target)
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db", source=source,
                                       retire="void"))
    assert report.retired == 4
    assert source.get_grant(made["paid"].id or "").status is bc.GrantStatus.VOIDED
    assert source.get_grant(made["expired"].id or "").status is bc.GrantStatus.EXPIRED


def test_cli_plan_apply_verify_export_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = tmp_path / "s.db", tmp_path / "d.db"
    seed(bc.get_provider("local", path=str(src)))
    runner = CliRunner()
    plan = tmp_path / "plan.jsonl"
    (tmp_path / "customers.csv").write_text("source,target\ncus_a,cus_A\ncus_b,cus_B\n")
    common = ["-F", f"path={src}", "-T", f"path={dst}"]
    result = runner.invoke(cli, ["migrate", "plan", "--from", "local", "--to", "local", *common,
                                 "--customer-map", str(tmp_path / "customers.csv"), "-o", str(plan),
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["grants_to_create"] == 4
    assert set(summary["totals"]) == {"cus_A", "cus_B"}
    result = runner.invoke(cli, ["migrate", "apply", str(plan), *common, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["created"] == 4
    result = runner.invoke(cli, ["migrate", "verify", str(plan), *common])
    assert result.exit_code == 0, result.output
    assert "all present once" in result.stdout

    exported = tmp_path / "grants.jsonl"
    result = runner.invoke(cli, ["export", "-s", f"path={dst}", "-o", str(exported)])
    assert result.exit_code == 0
    assert len(exported.read_text().splitlines()) == 4
    for _ in range(2):  # importing twice creates each grant once
        result = runner.invoke(cli, ["import", str(exported), "-s", f"path={tmp_path / 'c.db'}"])
        assert result.exit_code == 0, result.output
    assert len(list(bc.get_provider("local", path=str(tmp_path / "c.db")).list_grants())) == 4


class Static(bc.Provider):
    """A read-only source holding given grants (with balances no local grant has)."""

    name = "static"
    capabilities = bc.Capabilities(operations=bc.BASIC_OPERATIONS | {"void", "expire"},
                                   custom_units=True, max_segments=None)

    def __init__(self, grants: list[bc.CreditGrant]) -> None:
        super().__init__()
        self.grants = grants
        self.retired: list[str] = []

    def _create(self, grant, key):  # type: ignore[no-untyped-def]
        raise NotImplementedError
        yield

    def _list_page(self, query, cursor):  # type: ignore[no-untyped-def]
        return bc.Page([g for g in self.grants
                        if query.customer_id in (None, g.customer_id)])
        yield

    def _get(self, grant_id):  # type: ignore[no-untyped-def]
        return next(g for g in self.grants if g.id == grant_id)
        yield

    def _void(self, grant_id):  # type: ignore[no-untyped-def]
        self.retired.append(grant_id)
        return self._get(grant_id)
        yield


def read_back(grant_id: str, balance: str, **fields: object) -> bc.CreditGrant:
    data = {"customer_id": "cus_s", "amount": usd("300"), "id": grant_id, "provider": "static",
            "status": "active", "balance": usd(balance), **fields}
    return bc.CreditGrant.model_validate(data)


def three_windows() -> tuple[bc.Segment, ...]:
    return tuple(bc.Segment(amount=Decimal(100), starts_at=NOW + timedelta(days=30 * i - 10),
                            ends_before=NOW + timedelta(days=30 * i + 20)) for i in range(3))


def test_a_low_balance_fills_later_windows_first_and_never_over_grants(tmp_path: Path) -> None:
    source = Static([read_back("g1", "150", schedule=three_windows())])
    plan = bc.plan_migration(source, Stripeish(tmp_path / "t.db"))
    amounts = [(i.segment, i.grant.amount.amount) for i in plan.to_create if i.grant]
    # Usage draws on the current window, so the 150 left are the last window and half the next.
    assert amounts == [(1, Decimal(50)), (2, Decimal(100))]
    assert plan.totals()["cus_s"]["USD"]["planned"] == "150"
    changed = {(c.field, c.source, c.target) for i in plan.items for c in i.changes}
    assert ("schedule.0.amount", "100", None) in changed
    assert ("schedule.1.amount", "100", "50") in changed

    whole = bc.plan_migration(source, bc.get_provider("local", path=str(tmp_path / "w.db")))
    [item] = whole.to_create
    assert item.grant is not None
    assert item.grant.amount.amount == Decimal(150)
    assert [s.amount for s in item.grant.schedule or ()] == [Decimal(50), Decimal(100)]


def test_a_balance_above_the_live_windows_is_refused(tmp_path: Path) -> None:
    source = Static([read_back("g1", "250", amount=usd("200"),
                               schedule=three_windows()[1:])])
    plan = bc.plan_migration(source, Stripeish(tmp_path / "t.db"), strict=False)
    assert plan.to_create == []
    [refused] = plan.refusals
    assert "exceeds" in (refused.reason or "")


def test_retire_keeps_a_grant_part_of_which_was_refused(tmp_path: Path) -> None:
    windows = list(three_windows())
    windows[2] = windows[2].model_copy(update={"amount": Decimal("100.005")})
    source = Static([read_back("g1", "300.005", amount=usd("300.005"), schedule=tuple(windows))])
    target = Stripeish(tmp_path / "t.db")
    target.capabilities = dataclasses.replace(target.capabilities, minor_units_only=True)
    plan = bc.plan_migration(source, target, strict=False)
    assert [i.segment for i in plan.to_create] == [0, 1]
    assert [i.segment for i in plan.refusals] == [2]
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db", source=source,
                                       retire="void"))
    assert (report.created, report.retired) == (2, 0)
    assert source.retired == []  # the refused window's credits stay where they are

    whole = Static([read_back("g2", "300", schedule=three_windows())])
    plan = bc.plan_migration(whole, target)
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "k.db", source=whole,
                                       retire="void"))
    assert (report.created, report.retired) == (3, 1)
    assert whole.retired == ["g2"]


def test_a_journal_is_tied_to_its_plan_and_target(source: bc.Provider, tmp_path: Path) -> None:
    seed(source)
    rehearsal = bc.get_provider("local", path=str(tmp_path / "rehearsal.db"))
    real = bc.get_provider("local", path=str(tmp_path / "real.db"))
    plan = bc.plan_migration(source, rehearsal)
    assert asyncio.run(bc.apply_plan(plan, rehearsal, journal=tmp_path / "j.db")).created == 4
    # A plan of an older version (no target identity in its header): the journal objects.
    anonymous = bc.MigrationPlan(plan.header.model_copy(update={"target_identity": None}),
                                 plan.items)
    before = {g.id: g.status for g in source.list_grants()}
    assert bc.GrantStatus.ACTIVE in before.values()  # there is something retiring could void
    with pytest.raises(bc.MigrationError, match="another target"):
        asyncio.run(bc.apply_plan(anonymous, real, journal=tmp_path / "j.db", source=source,
                                  retire="void"))
    # Every source grant, whatever its status, is as it was: none was voided or expired.
    assert {g.id: g.status for g in source.list_grants()} == before
    assert list(real.list_grants()) == []


def test_a_plan_belongs_to_its_target(source: bc.Provider, tmp_path: Path) -> None:
    """Issue 8.5: a plan made for target A, applied to B, refuses before any create, naming
    both; an old journal blocking a new plan says how to go on."""
    seed(source)
    a = bc.get_provider("local", path=str(tmp_path / "a.db"))
    b = bc.get_provider("local", path=str(tmp_path / "b.db"))
    plan = bc.plan_migration(source, a)
    assert plan.header.target_identity == a.identity()
    with pytest.raises(bc.MigrationError) as refused:
        asyncio.run(bc.apply_plan(plan, b, journal=tmp_path / "j.db"))
    # Both targets named as places (``local at /path``), never the raw identity.
    assert f"target local at {(tmp_path / 'a.db').resolve()}" in str(refused.value)
    assert f"given local at {(tmp_path / 'b.db').resolve()}" in str(refused.value)
    assert list(b.list_grants()) == []
    assert not (tmp_path / "j.db").exists()

    assert asyncio.run(bc.apply_plan(plan, a, journal=tmp_path / "j.db")).created == 4
    source.create_grant(bc.CreditGrant(customer_id="cus_c", amount=usd("3")))
    newer = bc.plan_migration(source, a)
    with pytest.raises(bc.MigrationError, match=r"delete .*j\.db.* or give another journal file"):
        asyncio.run(bc.apply_plan(newer, a, journal=tmp_path / "j.db"))
    (tmp_path / "j.db").unlink()
    again = asyncio.run(bc.apply_plan(newer, a, journal=tmp_path / "j.db"))
    assert (again.created, again.already_done) == (1, 4)


def test_a_truncated_plan_is_refused(source: bc.Provider, target: bc.Provider, tmp_path: Path) -> None:
    seed(source)
    path = tmp_path / "plan.jsonl"
    bc.plan_migration(source, target).save(path)
    assert bc.MigrationPlan.load(path).to_create
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-2] + lines[-1:]))  # an item lost
    with pytest.raises(bc.MigrationError, match="summary"):
        bc.MigrationPlan.load(path)
    path.write_text("".join(lines[:-1]))  # the summary lost
    with pytest.raises(bc.MigrationError, match="whole"):
        bc.MigrationPlan.load(path)


def test_import_skips_ended_grants_and_refuses_unkeyed_lines(tmp_path: Path) -> None:
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    voided = read_back("g1", "0", status="voided").model_dump_json()
    unkeyed = bc.CreditGrant(customer_id="c", amount=usd("1")).model_dump_json()
    live = read_back("g2", "300").model_dump_json()
    report = bc.import_grants(target, [voided, unkeyed, live, live])
    assert (report.created, report.already_there) == (1, 1)  # the live grant twice: one grant
    assert [n for n, _ in report.skipped] == [1]
    assert [n for n, _ in report.failed] == [2]
    assert len(list(target.list_grants())) == 1


# -- issue 8 ---------------------------------------------------------------------------------


def many(source: bc.Provider, count: int, customers: int = 6) -> None:
    for n in range(count):
        source.create_grant(bc.CreditGrant(
            customer_id=f"cus_{n % customers}", amount=usd(f"{n + 1}.25"),
            effective_at=NOW - timedelta(days=1), idempotency_key=f"app-{n}"))


def test_four_concurrent_applies_count_each_grant_once(tmp_path: Path) -> None:
    """Issue 8.12: a replayed create counts as already there, not as created."""
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    many(source, 120)
    target_path = tmp_path / "t.db"
    plan = bc.plan_migration(source, bc.get_provider("local", path=str(target_path)))
    assert len(plan.to_create) == 120

    async def four() -> list[bc.ApplyReport]:
        targets = [bc.get_provider("local", path=str(target_path)) for _ in range(4)]
        return await asyncio.gather(*(
            bc.apply_plan(plan, t, journal=tmp_path / f"j{n}.db", concurrency=8)
            for n, t in enumerate(targets)))

    reports = asyncio.run(four())
    assert sum(r.created for r in reports) == 120
    assert all(r.created + r.already_done == 120 for r in reports)
    assert len(list(bc.get_provider("local", path=str(target_path)).list_grants())) == 120


def test_local_create_says_whether_it_was_replayed(target: bc.Provider) -> None:
    grant = bc.CreditGrant(customer_id="c", amount=usd("1"), idempotency_key="k-1")
    first, second = target.create_grant(grant), target.create_grant(grant)
    assert (first.replayed, second.replayed) == (False, True)
    assert first == second  # replayed takes no part in equality
    assert first.is_read_back()
    assert "replayed" not in first.as_new().model_dump(exclude_none=True)


def test_the_target_decides_not_the_journal(source: bc.Provider, tmp_path: Path) -> None:
    """Issue 8.1: a journal claiming keys the target does not hold causes no skip."""
    seed(source)
    path = tmp_path / "t.db"
    plan = bc.plan_migration(source, bc.get_provider("local", path=str(path)))
    with bc.get_provider("local", path=str(path)) as target:
        assert asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db")).created == 4
    for name in tmp_path.glob("t.db*"):
        name.unlink()  # the target lost everything; the journal still claims four grants
    with bc.get_provider("local", path=str(path)) as target:
        again = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
        assert (again.created, again.already_done) == (4, 0)
        assert bc.verify_plan(plan, target).ok


class Listing(bc.Provider):
    """A local provider counting its listings and creates, failing creates as told."""

    name = "local"
    capabilities = bc.Capabilities()

    def __init__(self, path: Path, fail: Callable[[bc.CreditGrant], None] | None = None) -> None:
        super().__init__()
        self.inner = bc.get_provider("local", path=str(path))
        self.fail = fail
        self.listings: list[str | None] = []
        self.creates = 0

    def identity(self) -> str:
        return self.inner.identity()

    def _create(self, grant, key):  # type: ignore[no-untyped-def]
        self.creates += 1
        if self.fail is not None:
            self.fail(grant)
        return self.inner._create(grant, key)

    def _list_page(self, query, cursor):  # type: ignore[no-untyped-def]
        if cursor is None:
            self.listings.append(query.customer_id)
        return self.inner._list_page(query, cursor)

    def _get(self, grant_id):  # type: ignore[no-untyped-def]
        return self.inner._get(grant_id)


def test_apply_lists_each_customer_once_up_front(tmp_path: Path) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    many(source, 60, customers=3)
    target = Listing(tmp_path / "t.db")
    plan = bc.plan_migration(source, target)
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert report.created == 60
    assert sorted(target.listings) == ["cus_0", "cus_1", "cus_2"]
    again = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert (again.created, again.already_done) == (0, 60)
    assert target.creates == 60  # the second run sent no create at all


def test_apply_never_dies_of_one_items_failure(tmp_path: Path) -> None:
    """Issue 9.2: any per-item failure, even a non-project exception, is reported."""
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    many(source, 12)

    def fail(grant: bc.CreditGrant) -> None:
        if grant.amount.amount == Decimal("3.25"):
            raise RuntimeError("vendor SDK blew up")
        if grant.amount.amount == Decimal("4.25"):
            raise KeyError("data")

    target = Listing(tmp_path / "t.db", fail=fail)
    plan = bc.plan_migration(source, target)
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert report.created == 10
    assert sorted(error.split(":")[0] for _, error in report.failed) == ["KeyError", "RuntimeError"]
    target.fail = None
    again = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert (again.created, again.already_done, again.failed) == (2, 10, [])


def test_cli_apply_reports_failures_without_a_traceback(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = tmp_path / "s.db", tmp_path / "d.db"
    many(bc.get_provider("local", path=str(src)), 5)
    plan = tmp_path / "plan.jsonl"
    runner = CliRunner()
    common = ["-F", f"path={src}", "-T", f"path={dst}"]
    result = runner.invoke(cli, ["migrate", "plan", "--from", "local", "--to", "local", *common,
                                 "-o", str(plan), "--json"])
    assert result.exit_code == 0, result.output
    from billing_credits.local import LocalProvider

    def broken(self, grant, key):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(LocalProvider, "_create", broken)
    result = runner.invoke(cli, ["migrate", "apply", str(plan), *common])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.count("ZeroDivisionError: boom") == 5


class Invoicing(bc.Provider):
    """A local provider that, like metronome-plans with invoice_paid_amount, bills the paid
    amount; ``record_only`` gives a copy that does not (unless ``offers_record_only`` is off)."""

    name = "invoicing"

    def __init__(self, path: Path, *, invoices: bool = True, offers_record_only: bool = True,
                 invoiced: list[str] | None = None) -> None:
        super().__init__()
        self.capabilities = dataclasses.replace(LocalProvider.capabilities,
                                                invoices_paid_amount=invoices)
        self.path = path
        self.offers = offers_record_only
        self.invoiced = invoiced if invoiced is not None else []
        self.inner = bc.get_provider("local", path=str(path))

    def identity(self) -> str:
        return f"invoicing:{self.path}"

    def record_only(self) -> bc.Provider:
        if not self.capabilities.invoices_paid_amount:
            return self
        if not self.offers:
            return super().record_only()
        return Invoicing(self.path, invoices=False, invoiced=self.invoiced)

    def _create(self, grant, key):  # type: ignore[no-untyped-def]
        if self.capabilities.invoices_paid_amount and grant.paid_amount is not None:
            self.invoiced.append(key)
        return self.inner._create(grant, key)

    def _list_page(self, query, cursor):  # type: ignore[no-untyped-def]
        return self.inner._list_page(query, cursor)

    def _get(self, grant_id):  # type: ignore[no-untyped-def]
        return self.inner._get(grant_id)


def test_migration_never_invoices(source: bc.Provider, tmp_path: Path) -> None:
    """Issue 8.3: creates go through target.record_only(); the plan lists the paid amount."""
    made = seed(source)
    target = Invoicing(tmp_path / "t.db")
    plan = bc.plan_migration(source, target)
    paid = {i.source_id: c for i in plan.items for c in i.changes if c.field == "paid_amount"}
    assert set(paid) == {made["custom"].id, made["paid"].id}
    assert paid[made["paid"].id].why.startswith("recorded only, not invoiced")
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db"))
    assert (report.created, report.failed) == (4, [])
    assert target.invoiced == []

    stubborn = Invoicing(tmp_path / "u.db", offers_record_only=False)
    refused = bc.plan_migration(source, stubborn, strict=False)
    assert {i.source_id for i in refused.refusals} == {made["custom"].id, made["paid"].id}
    assert all("invoice" in (i.reason or "") for i in refused.refusals)
    with pytest.raises(bc.MigrationError, match="never invoices"):
        asyncio.run(bc.apply_plan(plan, Invoicing(tmp_path / "t.db", offers_record_only=False),
                                  journal=tmp_path / "k.db"))
    assert stubborn.invoiced == []


def test_record_only_defaults() -> None:
    class Plain(Static):
        pass

    plain = Plain([])
    assert plain.record_only() is plain
    plain.capabilities = dataclasses.replace(plain.capabilities, invoices_paid_amount=True)
    with pytest.raises(bc.UnsupportedOperationError):
        plain.record_only()
    now = datetime.now(UTC)
    assert plain.retire_effective_at("void", now) == now


FORTY = Decimal("12345678901.123456789012345671")


def test_forty_digit_amounts_plan_apply_and_verify_exactly(tmp_path: Path) -> None:
    """Issue 8.7: local balances and migration sums in the exact context."""
    unit = bc.CreditUnit(id="wei")
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    made = source.create_grant(bc.CreditGrant(
        customer_id="c", amount=bc.Money(amount=FORTY, unit=unit),
        schedule=(bc.Segment(amount=Decimal("12345678900.123456789012345671"),
                             starts_at=NOW - timedelta(days=1), ends_before=NOW + timedelta(days=1)),
                  bc.Segment(amount=Decimal(1), starts_at=NOW + timedelta(days=1)))))
    assert made.balance is not None
    assert made.balance.amount == FORTY
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    plan = bc.plan_migration(source, target)
    [item] = plan.to_create
    assert item.grant is not None
    assert item.grant.amount.amount == FORTY
    assert item.changes == ()
    assert plan.totals()["c"]["unit:wei"]["planned"] == str(FORTY)
    assert asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db")).created == 1
    report = bc.verify_plan(plan, target)
    assert report.ok
    assert report.totals["c"]["unit:wei"]["found"] == str(FORTY)


def test_the_applications_key_survives_the_migration(source: bc.Provider, tmp_path: Path) -> None:
    """Issue 8.11: after cut-over, the application's create with its own key on the target
    finds the migrated grant instead of making a second one."""
    welcome = bc.CreditGrant(customer_id="cus_1", amount=usd("25"), name="welcome",
                             idempotency_key="welcome-cus_1")
    source.create_grant(welcome)
    split = source.create_grant(bc.CreditGrant(
        customer_id="cus_1", amount=usd("20"), idempotency_key="quarterly-cus_1",
        schedule=tuple(bc.Segment(amount=Decimal(10), starts_at=NOW + timedelta(days=30 * i),
                                  ends_before=NOW + timedelta(days=30 * (i + 1)))
                       for i in range(2))))
    target = Stripeish(tmp_path / "t.db")
    plan = bc.plan_migration(source, target)
    kept = next(i for i in plan.to_create if i.segment is None)
    assert kept.key == "welcome-cus_1"
    parts = [i for i in plan.to_create if i.source_id == split.id]
    assert len(parts) == 2
    for part in parts:
        [change] = [c for c in part.changes if c.field == "idempotency_key"]
        assert (change.source, change.target) == ("quarterly-cus_1", part.key)
        assert part.grant is not None
        assert part.grant.metadata["migrated_from_key"] == "quarterly-cus_1"
    assert asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db")).created == 3

    again = target.create_grant(welcome)  # the application, after cut-over
    assert again.replayed is True
    assert again.id == next(g.id for g in target.list_grants("cus_1")
                            if g.idempotency_key == "welcome-cus_1")
    assert len(list(target.list_grants("cus_1"))) == 3


def test_a_key_shared_by_two_source_grants_is_not_kept(tmp_path: Path) -> None:
    source = Static([read_back("g1", "300", idempotency_key="dup", effective_at=NOW),
                     read_back("g2", "300", idempotency_key="dup", effective_at=NOW)])
    plan = bc.plan_migration(source, bc.get_provider("local", path=str(tmp_path / "t.db")))
    assert all(i.key != "dup" for i in plan.to_create)
    assert all(c.field == "idempotency_key" for i in plan.to_create for c in i.changes)


def test_coarser_target_clock_aligns_safely_and_summarizes(tmp_path: Path) -> None:
    """Issue 8.8: microsecond times onto a 1 s target: starts later, ends earlier, listed as
    changes and summarized once per reason."""
    src = tmp_path / "s.db"
    source = bc.get_provider("local", path=str(src))
    for n in range(30):
        source.create_grant(bc.CreditGrant(  # effective_at: the microsecond "now"
            customer_id="cus_1", amount=usd(str(n + 1)), priority=Decimal(n),
            expires_at=NOW + timedelta(days=3, microseconds=123456)))
    target = Stripeish(tmp_path / "t.db")
    target.capabilities = dataclasses.replace(target.capabilities,
                                              time_resolution=timedelta(seconds=1))
    plan = bc.plan_migration(source, target)
    assert plan.refusals == []
    assert len(plan.to_create) == 30
    for item in plan.to_create:
        assert item.grant is not None
        assert item.grant.effective_at is not None
        assert item.grant.effective_at.microsecond == 0
        assert item.grant.expires_at == NOW + timedelta(days=3)
        fields = {c.field: c for c in item.changes}
        assert fields["effective_at"].target > fields["effective_at"].source  # type: ignore[operator]
    assert plan.summary()["change_reasons"] == {
        "effective_at: stripeish holds times in steps of 1 s: moved later (the safe direction)": 30,
        "expires_at: stripeish holds times in steps of 1 s: moved earlier (the safe direction)": 30,
    }
    assert asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db")).created == 30


def test_import_include_ended_never_brings_credit_back(tmp_path: Path) -> None:
    """Issue 8.4: a voided grant is refused, naming it; an expired one stays expired."""
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    voided = source.void_grant(source.create_grant(bc.CreditGrant(
        customer_id="c", amount=usd("9"), idempotency_key="v")).id or "")
    expired = source.create_grant(bc.CreditGrant(
        customer_id="c", amount=usd("5"), effective_at=NOW - timedelta(days=9),
        expires_at=NOW - timedelta(days=2), idempotency_key="e"))
    live = source.create_grant(bc.CreditGrant(customer_id="c", amount=usd("1"),
                                              idempotency_key="l"))
    lines = [g.model_dump_json() for g in (voided, expired, live)]
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    report = bc.import_grants(target, lines, include_ended=True)
    assert report.created == 2
    [(line, why)] = report.failed
    assert line == 1
    assert voided.id in why
    assert "spendable" in why
    stored = {g.idempotency_key: g for g in target.list_grants()}
    assert set(stored) == {"e", "l"}
    assert stored["e"].status is bc.GrantStatus.EXPIRED
    assert stored["e"].balance is not None
    assert stored["e"].balance.amount == 0

    result = CliRunner().invoke(cli, ["import", "--include-ended", "-s",
                                      f"path={tmp_path / 'u.db'}", "-",
                                      "--rejects", str(tmp_path / "rejects.jsonl")],
                                input="\n".join(lines) + "\n")
    assert result.exit_code == 1
    assert voided.id in result.output
    spendable = [g for g in bc.get_provider("local", path=str(tmp_path / "u.db")).list_grants()
                 if g.status is not bc.GrantStatus.EXPIRED]
    assert [g.idempotency_key for g in spendable] == ["l"]


@settings(max_examples=60, deadline=None)
@given(start=st.integers(min_value=0, max_value=10**7), length=st.integers(min_value=1,
       max_value=10**8), step_seconds=st.sampled_from([1, 60, 3600]))
def test_alignment_stays_inside_the_source_window(start: int, length: int,
                                                  step_seconds: int) -> None:
    """Aligned to a coarser clock, a window only shrinks, lands on the step, and every moved
    time is a listed change; a window too short to survive is refused, never widened."""
    begins = NOW - timedelta(days=1) + timedelta(microseconds=start)
    ends = begins + timedelta(microseconds=length)
    source = Static([read_back("g1", "300", effective_at=begins, expires_at=ends)])
    target = Static([])
    step = timedelta(seconds=step_seconds)
    target.capabilities = dataclasses.replace(target.capabilities, time_resolution=step)
    plan = bc.plan_migration(source, target, now=NOW - timedelta(days=2))
    [item] = plan.items
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    if item.action == "skip":
        assert item.refused
        assert "shorter than" in (item.reason or "")
        assert ends - begins < 2 * step
        return
    assert item.grant is not None
    new_start, new_end = item.grant.effective_at, item.grant.expires_at
    assert new_start is not None
    assert new_end is not None
    assert begins <= new_start < new_end <= ends
    assert (new_start - epoch) % step == timedelta(0) == (new_end - epoch) % step
    moved = {c.field for c in item.changes}
    assert ("effective_at" in moved) == (new_start != begins)
    assert ("expires_at" in moved) == (new_end != ends)


def test_a_source_grant_gone_from_the_source_counts_as_retired(tmp_path: Path) -> None:
    """A vendor that does not list voided grants (metronome-plans) answers NotFound for one
    voided before a crash: it is retired, not a failure on every later run."""

    class Forgetful(Static):
        def _get(self, grant_id):  # type: ignore[no-untyped-def]
            if grant_id in self.retired:
                raise bc.NotFoundError(f"no grant {grant_id!r}", provider=self.name)
            return (yield from super()._get(grant_id))

    source = Forgetful([read_back("g1", "300", effective_at=NOW), read_back("g2", "300",
                                                                           effective_at=NOW)])
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    plan = bc.plan_migration(source, target)
    source.retired.append("g1")  # voided by a run killed before it journalled that
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db", source=source,
                                       retire="void"))
    assert (report.created, report.retired, report.failed) == (2, 2, [])
    assert source.retired == ["g1", "g2"]


def test_cli_apply_without_the_plans_target_settings_creates_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 8.5 from the CLI: planned with -T path=A, applied without -T (the default local
    database): refused before any create, naming both stores."""
    default = tmp_path / "default.db"
    monkeypatch.setenv("BILLING_CREDITS_DB", str(default))
    src, chosen = tmp_path / "s.db", tmp_path / "a.db"
    seed(bc.get_provider("local", path=str(src)))
    plan = tmp_path / "plan.jsonl"
    runner = CliRunner()
    result = runner.invoke(cli, ["migrate", "plan", "--from", "local", "--to", "local",
                                 "-F", f"path={src}", "-T", f"path={chosen}", "-o", str(plan),
                                 "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["migrate", "apply", str(plan)])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert f"local at {chosen.resolve()}" in message
    assert f"local at {default.resolve()}" in message
    assert list(bc.get_provider("local", path=str(default)).list_grants()) == []
    result = runner.invoke(cli, ["migrate", "apply", str(plan), "-T", f"path={chosen}"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("amount_mode", ["original", "remaining"])
def test_a_later_plan_gives_a_split_grant_the_same_keys(
        source: bc.Provider, tmp_path: Path, amount_mode: str) -> None:
    """Issue 8.1: apply finds what an earlier apply made by key, so a re-plan must give each
    target grant the key it had. A scheduled grant split for a one-segment target keeps its
    per-window keys when, later, only one window is left (one ended, or usage emptied all but
    the last): it does not switch to the application's key and create that window again."""
    source.create_grant(bc.CreditGrant(
        customer_id="cus_1", amount=usd("60"), idempotency_key="K",
        schedule=(bc.Segment(amount=Decimal(30), starts_at=NOW - timedelta(days=1),
                             ends_before=NOW + timedelta(days=1)),
                  bc.Segment(amount=Decimal(30), starts_at=NOW + timedelta(days=1),
                             ends_before=NOW + timedelta(days=30)))))
    target = Stripeish(tmp_path / "t.db")
    first = bc.plan_migration(source, target, amount_mode=amount_mode, now=NOW)
    assert len(first.to_create) == 2
    assert asyncio.run(bc.apply_plan(first, target, journal=tmp_path / "j1.db")).created == 2

    if amount_mode == "remaining":  # usage empties the current window
        source.consume("cus_1", usd("30"), at=NOW, reference="use-1")
        later = NOW
    else:  # the current window ends
        later = NOW + timedelta(days=1, hours=1)
    again = bc.plan_migration(source, target, amount_mode=amount_mode, now=later)
    [item] = again.to_create
    assert item.key in {i.key for i in first.to_create}
    report = asyncio.run(bc.apply_plan(again, target, journal=tmp_path / "j2.db"))
    assert (report.created, report.already_done) == (0, 1)
    assert len(list(target.list_grants("cus_1"))) == 2
