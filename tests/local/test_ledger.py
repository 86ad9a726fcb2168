"""``local`` as a credits ledger: balances, ledger entries, updates, consumption (issue 11)."""

from __future__ import annotations

import decimal
import json
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import billing_credits as bc
from billing_credits.local import LocalProvider

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def usd(amount: str | int) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def local(engine: str, clock: Clock) -> Iterator[LocalProvider]:
    """A ledger on each engine (SQLite, PostgreSQL), with the test's clock."""
    with LocalProvider(engine, clock=clock) as provider:
        yield provider


def grant(customer: str = "c", amount: str | int = 10, **fields: object) -> bc.CreditGrant:
    data: dict[str, object] = {"customer_id": customer, "amount": usd(amount),
                               "effective_at": T0 - timedelta(days=1)}
    data.update(fields)
    return bc.CreditGrant.model_validate(data)


def total(entries: list[bc.LedgerEntry]) -> Decimal:
    return bc.exact_sum(e.amount.amount for e in entries)


def test_consume_follows_local_order_and_writes_entries(local: LocalProvider) -> None:
    late = local.create_grant(grant(amount=10, priority=1, expires_at=T0 + timedelta(days=30)))
    soon = local.create_grant(grant(amount=10, priority=1, expires_at=T0 + timedelta(days=5)))
    first = local.create_grant(grant(amount=3, priority=0))
    entries = local.consume("c", usd("8.25"), reference="inv-1")
    assert [(e.grant_id, e.amount.amount) for e in entries] == [
        (first.id, Decimal(-3)), (soon.id, Decimal("-5.25"))]
    assert all(e.kind is bc.LedgerKind.CONSUMED and e.reference == "inv-1" for e in entries)
    [balance] = local.get_balance("c")
    assert balance.usable == usd("14.75")
    assert {p.grant_id: p.usable.amount for p in balance.parts} == {
        late.id: Decimal(10), soon.id: Decimal("4.75")}
    assert late.id is not None
    assert soon.id is not None
    assert local.get_grant(soon.id).balance == usd("4.75")


def test_one_reference_is_applied_once(local: LocalProvider) -> None:
    local.create_grant(grant(amount=10))
    first = local.consume("c", usd(4), reference="r")
    assert local.consume("c", usd(4), reference="r") == first
    assert local.get_balance("c")[0].usable == usd(6)
    with pytest.raises(bc.ConflictError) as reused:
        local.consume("c", usd(5), reference="r")
    assert reused.value.code == "reference_reused"
    with pytest.raises(bc.ConflictError):
        local.consume("other", usd(4), reference="r")


def test_usage_beyond_the_credit_is_refused_whole(local: LocalProvider) -> None:
    local.create_grant(grant(amount=10))
    with pytest.raises(bc.ConflictError) as refused:
        local.consume("c", usd("10.01"), reference="r")
    assert refused.value.code == "insufficient_credit"
    assert local.get_balance("c")[0].usable == usd(10)
    assert [e.kind for e in local.list_ledger("c")] == [bc.LedgerKind.GRANTED]
    assert local.consume("c", usd(10), reference="r")  # the reference was not burnt


def test_scope_product_usage_only_draws_on_grants_that_admit_it(local: LocalProvider) -> None:
    scoped = local.create_grant(grant(amount=5, priority=0, scope=bc.Scope(product_ids=("db",))))
    anything = local.create_grant(grant(amount=5, priority=1))
    assert [e.grant_id for e in local.consume("c", usd(2), reference="a", product_id="web")] \
        == [anything.id]
    assert [e.grant_id for e in local.consume("c", usd(2), reference="b", product_id="db")] \
        == [scoped.id]
    with pytest.raises(bc.ConflictError):
        local.consume("c", usd(4), reference="c")  # only `anything` admits product-less usage


def test_future_usage_is_refused_and_past_usage_uses_its_windows(
    local: LocalProvider, clock: Clock
) -> None:
    old = local.create_grant(grant(amount=5, effective_at=T0 - timedelta(days=10),
                                   expires_at=T0 - timedelta(days=2)))
    local.create_grant(grant(amount=5))
    with pytest.raises(bc.BadRequestError):
        local.consume("c", usd(1), at=T0 + timedelta(minutes=1), reference="f")
    [entry] = local.consume("c", usd(2), at=T0 - timedelta(days=3), reference="p")
    assert entry.grant_id == old.id
    expiries = [e for e in local.list_ledger("c") if e.kind is bc.LedgerKind.EXPIRED]
    assert [(e.grant_id, e.amount.amount, e.at) for e in expiries] == [
        (old.id, Decimal(-3), T0 - timedelta(days=2))]


def test_balance_at_any_moment(local: LocalProvider, clock: Clock) -> None:
    local.create_grant(grant(amount=10, effective_at=T0 + timedelta(days=1),
                             expires_at=T0 + timedelta(days=10)))
    local.create_grant(grant(amount=4))
    local.consume("c", usd(1), reference="r")
    assert local.get_balance("c")[0].usable == usd(3)
    assert local.get_balance("c", at=T0 - timedelta(hours=1))[0].usable == usd(4), \
        "consumption after the moment does not count"
    assert local.get_balance("c", at=T0 + timedelta(days=2))[0].usable == usd(13)
    assert local.get_balance("c", at=T0 + timedelta(days=20))[0].usable == usd(3)
    assert local.get_balance("c", unit="EUR") == [bc.Balance(
        customer_id="c", usable=bc.Money(amount=Decimal(0), currency="EUR"),
        pending=bc.Money(amount=Decimal(0), currency="EUR"),
        as_of=T0, source=local.get_balance("c", unit="EUR")[0].source)]
    assert local.get_balance("nobody") == []


def test_ledger_lists_every_movement_and_reconciles(local: LocalProvider, clock: Clock) -> None:
    a = local.create_grant(grant(amount=10, expires_at=T0 + timedelta(days=2)))
    b = local.create_grant(grant(amount=7, priority=5))
    c = local.create_grant(grant(amount=6, schedule=(
        bc.Segment(amount=Decimal(1), starts_at=T0 - timedelta(days=1),
                   ends_before=T0 + timedelta(days=1)),
        bc.Segment(amount=Decimal(5), starts_at=T0 + timedelta(days=1),
                   ends_before=T0 + timedelta(days=20)),
    ), effective_at=None, expires_at=T0 + timedelta(days=20)))
    local.consume("c", usd(4), reference="u1")
    clock.advance(days=3)
    local.consume("c", usd(2), reference="u2")
    assert b.id is not None
    assert c.id is not None
    local.void_grant(b.id)
    entries = list(local.list_ledger("c"))
    kinds = [(e.kind.value, e.grant_id) for e in entries]
    assert kinds.count(("granted", a.id)) == 1
    assert ("expired", a.id) in kinds
    assert ("voided", b.id) in kinds
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    running = Decimal(0)
    for e in entries:
        running += e.amount.amount
        assert e.running_balance == usd(str(running))
    for g in (a, b, c):
        assert g.id is not None
        mine = list(local.list_ledger("c", grant_id=g.id))
        balance = local.get_grant(g.id).balance
        assert balance is not None
        assert total(mine) == balance.amount, g.id
    assert total(entries) == bc.exact_sum(
        x.balance.amount for x in local.list_grants("c") if x.balance is not None)
    since = list(local.list_ledger("c", since=T0 + timedelta(days=1)))
    assert since == [e for e in entries if e.at >= T0 + timedelta(days=1)]
    with pytest.raises(bc.NotFoundError):
        list(local.list_ledger("c", grant_id="lcg_missing"))


def test_ledger_pages_lazily(local: LocalProvider) -> None:
    local.create_grant(grant(amount=1000))
    for n in range(230):
        local.consume("c", usd("0.01"), reference=f"r{n}")
    before = local.runtime.calls
    entries = list(local.list_ledger("c"))
    assert local.runtime.calls - before == 3
    assert len(entries) == 231
    assert len({e.vendor_id for e in entries}) == 231


def test_update_fields_and_refusals(local: LocalProvider, clock: Clock) -> None:
    created = local.create_grant(grant(amount=10, expires_at=T0 + timedelta(days=5)))
    assert created.id is not None
    local.consume("c", usd(1), reference="r")
    updated = local.update_grant(created.id, expires_at=T0 + timedelta(days=50), name="Longer",
                                 metadata={"ticket": "T-9"})
    assert (updated.expires_at, updated.name, updated.metadata) == (
        T0 + timedelta(days=50), "Longer", {"ticket": "T-9"})
    assert updated.balance == usd(9)
    assert local.update_grant(created.id, expires_at=None).expires_at is None
    with pytest.raises(bc.ConflictError):
        local.update_grant(created.id, expires_at=T0 - timedelta(hours=1))  # consumed at T0
    with pytest.raises(bc.InvalidGrantError):
        local.update_grant(created.id, expires_at=T0 - timedelta(days=9))  # before it starts
    local.void_grant(created.id)
    with pytest.raises(bc.ConflictError):
        local.update_grant(created.id, name="x")
    with pytest.raises(bc.NotFoundError):
        local.update_grant("lcg_missing", name="x")
    replay = local.create_grant(grant(amount=3, idempotency_key="k"))
    assert replay.id is not None
    local.update_grant(replay.id, name="renamed")
    assert local.create_grant(grant(amount=3, idempotency_key="k")).id == replay.id, \
        "an update does not turn the create's replay into a conflict"


def test_update_of_a_scheduled_grant_moves_the_last_window(local: LocalProvider) -> None:
    created = local.create_grant(grant(amount=3, effective_at=None, schedule=(
        bc.Segment(amount=Decimal(1), starts_at=T0, ends_before=T0 + timedelta(days=1)),
        bc.Segment(amount=Decimal(2), starts_at=T0 + timedelta(days=1),
                   ends_before=T0 + timedelta(days=2)),
    )))
    assert created.id is not None
    updated = local.update_grant(created.id, expires_at=T0 + timedelta(days=9))
    assert updated.schedule is not None
    assert updated.schedule[-1].ends_before == T0 + timedelta(days=9)


def test_expire_records_dropped_windows_and_reconciles(local: LocalProvider,
                                                       clock: Clock) -> None:
    created = local.create_grant(grant(amount=3, effective_at=None, schedule=(
        bc.Segment(amount=Decimal(1), starts_at=T0 - timedelta(days=1),
                   ends_before=T0 + timedelta(days=1)),
        bc.Segment(amount=Decimal(2), starts_at=T0 + timedelta(days=1),
                   ends_before=T0 + timedelta(days=2)),
    )))
    assert created.id is not None
    local.consume("c", usd("0.25"), reference="r")
    clock.advance(hours=1)
    local.expire_grant(created.id)
    entries = list(local.list_ledger("c", grant_id=created.id))
    assert sorted((e.kind.value, e.amount.amount) for e in entries) == [
        ("consumed", Decimal("-0.25")), ("expired", Decimal(-2)), ("expired", Decimal("-0.75")),
        ("granted", Decimal(3))]
    assert total(entries) == 0


def test_exact_with_forty_digit_custom_units(local: LocalProvider) -> None:
    unit = bc.CreditUnit(id="cu", name="compute units")
    big = Decimal("1234567890123456789012.345678901234567891")
    local.create_grant(grant().as_new(amount=bc.Money(amount=big, unit=unit)))
    tiny = bc.Money(amount=Decimal("0.000000000000000001"), unit=unit)
    [entry] = local.consume("c", tiny, reference="r")
    assert entry.amount.amount == Decimal("-0.000000000000000001")
    [balance] = local.get_balance("c", unit="unit:cu")
    assert str(balance.usable.amount) == "1234567890123456789012.345678901234567890"
    assert balance.usable.unit == unit


def test_a_version_1_database_gets_its_ledger_backfilled(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "old.db"
    with LocalProvider(path, clock=clock) as local:
        kept = local.create_grant(grant(amount=10))
        gone = local.create_grant(grant(amount=4))
        assert gone.id is not None
        local.void_grant(gone.id)
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE ledger; DROP TABLE usage; "
                     "DROP TABLE lots; DROP TABLE meta; PRAGMA user_version = 1;")
    db.close()
    with LocalProvider(path, clock=clock) as local:
        kinds = [(e.kind.value, e.grant_id, e.amount.amount) for e in local.list_ledger("c")]
        assert kinds == [("granted", kept.id, 10), ("granted", gone.id, 4),
                         ("voided", gone.id, -4)]
        local.consume("c", usd(3), reference="r")
        assert local.get_balance("c")[0].usable == usd(7)


# -- must-show 3: eight processes consuming at once --------------------------------------------

CUSTOMERS = ("alice", "bob", "carol")
WORKERS = 8
PER_WORKER = 60

WORKER = r"""
import json, sys
from decimal import Decimal
import billing_credits as bc

path, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
customers = ("alice", "bob", "carol")
provider = bc.get_provider("local", path=path)
out = {}
for n in range(start, start + count):
    customer = customers[n % 3]
    amount = bc.Money(amount=Decimal(n % 17 + 1) / 8, currency="USD")
    try:
        entries = provider.consume(customer, amount, reference=f"use-{n}")
    except bc.ConflictError as error:
        out[n] = error.code
    else:
        out[n] = [[e.grant_id, str(e.amount.amount)] for e in entries]
print(json.dumps(out))
"""


def usage_amount(n: int) -> Decimal:
    return Decimal(n % 17 + 1) / 8


def test_eight_processes_consuming_lose_nothing_and_apply_each_reference_once(
    engine: str,
) -> None:
    path = engine  # a SQLite file, or a PostgreSQL URL (``path`` takes either)
    granted: dict[str, Decimal] = {}
    with LocalProvider(path) as local:
        now = datetime.now(UTC)
        for i, customer in enumerate(CUSTOMERS):
            for priority, amount in ((1, "20.00"), (5, "33.37"), (None, "40.01")):
                g = local.create_grant(bc.CreditGrant(
                    customer_id=customer, amount=usd(amount), priority=priority,
                    effective_at=now - timedelta(days=1),
                    expires_at=now + timedelta(days=30 + i)))
                assert g.id is not None
                granted[g.id] = Decimal(amount)
    # Worker w applies references [w*30, w*30+60): every reference is sent by two processes
    # at about the same time, and the demand (about 1.1x the credit) runs the credit out.
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(w * 30), str(PER_WORKER)],
                         stdout=subprocess.PIPE, text=True)
        for w in range(WORKERS)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * WORKERS
    answers: dict[int, list[object]] = defaultdict(list)
    for output in outputs:
        for n, answer in json.loads(output).items():
            answers[int(n)].append(answer)
    references = range(WORKERS * 30 + 30)
    assert sorted(answers) == list(references)

    with LocalProvider(path) as local:
        consumed: dict[str, list[bc.LedgerEntry]] = defaultdict(list)
        for customer in CUSTOMERS:
            for entry in local.list_ledger(customer):
                if entry.kind is bc.LedgerKind.CONSUMED:
                    assert entry.reference is not None
                    consumed[entry.reference].append(entry)
        grants = {g.id: g for c in CUSTOMERS for g in local.list_grants(c)}
        with decimal.localcontext(bc.exact_context()):
            applied = 0
            for n in references:
                oks = [a for a in answers[n] if isinstance(a, list)]
                entries = consumed.get(f"use-{n}", [])
                if oks:
                    # Applied once: every process got the same entries, stored once.
                    assert all(a == oks[0] for a in oks)
                    assert [[e.grant_id, str(e.amount.amount)] for e in entries] == oks[0]
                    assert total(entries) == -usage_amount(n)
                    applied += 1
                else:
                    assert set(answers[n]) == {"insufficient_credit"}
                    assert entries == []
            assert applied > 100
            assert any(a == "insufficient_credit" for v in answers.values() for a in v), \
                "the demand ran the credit out"
            # No cent lost or created: per grant, granted == consumed + remaining, never < 0.
            spent: dict[str, Decimal] = defaultdict(Decimal)
            for entries in consumed.values():
                for e in entries:
                    assert e.grant_id is not None
                    spent[e.grant_id] -= e.amount.amount
            for gid, amount in granted.items():
                remaining = grants[gid].balance
                assert remaining is not None
                assert remaining.amount >= 0
                assert spent[gid] + remaining.amount == amount
            for customer in CUSTOMERS:
                [balance] = local.get_balance(customer)
                assert balance.usable.amount == bc.exact_sum(
                    grants[g].balance.amount  # type: ignore[union-attr]
                    for g in granted if grants[g].customer_id == customer)
                # Each customer's credit ran out to less than the smallest usage (1/8).
                assert balance.usable.amount < Decimal("0.125") * 18


def test_consume_refuses_before_writing_what_would_leave_unreadable_amounts(
        local: LocalProvider) -> None:
    # Every amount is valid alone (at most 40 significant digits), but 10^38 less 10^-40 has
    # 78: written, the customer's grants, balance and ledger could no longer be read.
    tokens = bc.CreditUnit(id="tokens")
    big = local.create_grant(grant().model_copy(
        update={"amount": bc.Money(amount=Decimal("1E+38"), unit=tokens)}))
    with pytest.raises(bc.ConflictError) as raised:
        local.consume("c", bc.Money(amount=Decimal("1E-40"), unit=tokens), reference="r")
    assert raised.value.code == "not_representable"
    assert big.id is not None
    assert local.get_grant(big.id).balance.amount == Decimal("1E+38")
    [balance] = local.get_balance("c")
    assert balance.usable.amount == Decimal("1E+38")
    assert [e.kind for e in local.list_ledger("c")] == [bc.LedgerKind.GRANTED]
    # The reference was not used: a representable amount under it is applied.
    [entry] = local.consume("c", bc.Money(amount=Decimal("1E+37"), unit=tokens), reference="r")
    assert entry.amount.amount == Decimal("-1E+37")


def test_a_backdated_grant_is_granted_before_what_its_window_paid_or_lost(
        local: LocalProvider) -> None:
    # Created now, effective ten days ago (an import or a migrated grant): the ledger must not
    # list its consumption and expiry before it, with a negative running balance.
    old = local.create_grant(grant(amount=10, effective_at=T0 - timedelta(days=10),
                                   expires_at=T0 - timedelta(days=2)))
    local.consume("c", usd(4), at=T0 - timedelta(days=5), reference="late-invoice")
    entries = list(local.list_ledger("c"))
    assert [(e.kind, e.amount.amount) for e in entries] == [
        (bc.LedgerKind.GRANTED, Decimal(10)), (bc.LedgerKind.CONSUMED, Decimal(-4)),
        (bc.LedgerKind.EXPIRED, Decimal(-6))]
    assert entries[0].at == T0 - timedelta(days=10)
    assert entries[0].grant_id == old.id
    assert [e.running_balance.amount for e in entries if e.running_balance] == [
        Decimal(10), Decimal(6), Decimal(0)]


def test_consume_refuses_what_would_leave_a_grant_balance_of_too_many_digits(
        local: LocalProvider) -> None:
    # Two windows: 10^38 open now and 0.1 still to come (40 digits together). Taking 0.01
    # from the first leaves 10^38 - 0.01 + 0.1 = 41 significant digits as the grant's balance.
    tokens = bc.CreditUnit(id="tokens")
    scheduled = grant().model_copy(update={
        "amount": bc.Money(amount=Decimal("1" + "0" * 38 + ".1"), unit=tokens),
        "effective_at": None, "expires_at": None, "schedule": (
            bc.Segment(amount=Decimal("1E+38"), starts_at=T0 - timedelta(days=1),
                       ends_before=T0 + timedelta(days=1)),
            bc.Segment(amount=Decimal("0.1"), starts_at=T0 + timedelta(days=1)))})
    made = local.create_grant(bc.CreditGrant.model_validate(scheduled.model_dump()))
    with pytest.raises(bc.ConflictError) as raised:
        local.consume("c", bc.Money(amount=Decimal("0.01"), unit=tokens), reference="r")
    assert raised.value.code == "not_representable"
    assert made.id is not None
    assert local.get_grant(made.id).balance == made.balance
