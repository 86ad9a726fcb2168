"""Migration between providers, on local providers (the vendor end-to-end runs live beside
the vendor fakes)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

import billing_credits as bc
from billing_credits._cli import cli

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
    # Even without the journal, the derived keys make a re-run create nothing new.
    fresh = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "other.db"))
    assert fresh.created == 4
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
    with pytest.raises(bc.MigrationError, match="another target"):
        asyncio.run(bc.apply_plan(plan, real, journal=tmp_path / "j.db", source=source,
                                  retire="void"))
    assert all(g.status is not bc.GrantStatus.VOIDED for g in source.list_grants()
               if g.id and g.status is bc.GrantStatus.ACTIVE)


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
