"""The entries ``consume`` returns carry the ``running_balance`` that ``list_ledger`` shows for
them (issue 20.6), whatever came before: windows ended or still to come, expired, voided and
updated grants, backdated usage, a replayed reference."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits.local import LocalProvider

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def usd(amount: str | int | Decimal) -> bc.Money:
    return bc.Money(amount, "USD")


def check(local: LocalProvider, entries: list[bc.LedgerEntry]) -> None:
    ledger = {e.vendor_id: e.running_balance for e in local.list_ledger("c")}
    for entry in entries:
        assert entry.running_balance is not None
        assert entry.running_balance == ledger[entry.vendor_id], entry


def test_consume_at_now_carries_the_ledgers_running_balance(tmp_path: Path) -> None:
    clock = Clock()
    with LocalProvider(tmp_path / "l.db", clock=clock) as local:
        local.create_grant(bc.CreditGrant(customer_id="c", amount=usd("10.00"), priority=0,
                                          effective_at=T0 - timedelta(days=1)))
        local.create_grant(bc.CreditGrant(customer_id="c", amount=usd("5.00"), priority=1,
                                          effective_at=T0 - timedelta(days=1)))
        # a window still to come counts in the running balance, as the ledger reads it
        local.create_grant(bc.CreditGrant(customer_id="c", amount=usd("7.00"),
                                          effective_at=T0 + timedelta(days=30)))
        entries = local.consume("c", usd("12.25"), reference="invoice-7")
        assert [e.running_balance for e in entries] == [usd("12.00"), usd("9.75")]
        check(local, entries)
        # the same reference again: the same entries, with the same running balances
        assert local.consume("c", usd("12.25"), reference="invoice-7") == entries


def test_a_window_ended_with_credit_left_is_not_in_the_running_balance(tmp_path: Path) -> None:
    clock = Clock()
    with LocalProvider(tmp_path / "l.db", clock=clock) as local:
        local.create_grant(bc.CreditGrant(customer_id="c", amount=usd(10),
                                          effective_at=T0 - timedelta(hours=1),
                                          expires_at=T0 + timedelta(hours=2)))
        local.create_grant(bc.CreditGrant(customer_id="c", amount=usd(5),
                                          effective_at=T0 - timedelta(hours=1)))
        clock.now = T0 + timedelta(hours=5)  # the first window ended with 10 left: expired
        entries = local.consume("c", usd(1), reference="r")
        assert [e.running_balance for e in entries] == [usd(4)]
        check(local, entries)


def test_backdated_usage_before_later_entries_reads_the_ledger(tmp_path: Path) -> None:
    """Usage dated before entries already in the ledger (a grant made since, whose window
    opens later): its running balance counts only what came before it, as the ledger does."""
    clock = Clock()
    with LocalProvider(tmp_path / "l.db", clock=clock) as local:
        local.create_grant(bc.CreditGrant(customer_id="c", amount=usd(10),
                                          effective_at=T0 - timedelta(days=1)))
        clock.now = T0 + timedelta(hours=3)
        local.create_grant(bc.CreditGrant(customer_id="c", amount=usd(7),
                                          effective_at=T0 + timedelta(days=2)))
        entries = local.consume("c", usd(2), at=T0 + timedelta(hours=1), reference="late")
        assert [e.running_balance for e in entries] == [usd(8)]  # not 15: the 7 came later
        check(local, entries)


OPS = st.lists(st.one_of(
    st.tuples(st.just("grant"), st.integers(1, 50), st.integers(-72, 72), st.integers(1, 96),
              st.booleans()),
    st.tuples(st.just("consume"), st.integers(1, 20), st.integers(0, 8)),
    st.tuples(st.just("advance"), st.integers(1, 96)),
    st.tuples(st.just("expire"), st.integers(0, 9)),
    st.tuples(st.just("void"), st.integers(0, 9)),
    st.tuples(st.just("replay"), st.integers(0, 9)),
), min_size=1, max_size=14)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_consume_carries_the_ledgers_running_balance_whatever_came_before(
    ops: list[tuple[object, ...]],
) -> None:
    clock = Clock()
    with tempfile.TemporaryDirectory() as folder, \
            LocalProvider(Path(folder) / "l.db", clock=clock) as local:
        grants: list[str] = []
        references: list[str] = []
        for op in ops:
            kind = op[0]
            if kind == "grant":
                _, amount, start_days, length_days, ends = op
                start = clock.now + timedelta(hours=int(start_days))  # type: ignore[call-overload]
                grants.append(local.create_grant(bc.CreditGrant(
                    customer_id="c", amount=usd(amount),  # type: ignore[arg-type]
                    effective_at=start, expires_at=start + timedelta(
                        hours=int(length_days)) if ends else None)).id or "")  # type: ignore[call-overload]
            elif kind == "advance":
                clock.now += timedelta(hours=int(op[1]))  # type: ignore[call-overload]
            elif kind == "consume":
                _, amount, back_hours = op
                at = clock.now - timedelta(hours=int(back_hours))  # type: ignore[call-overload]
                reference = f"u{len(references)}"
                try:
                    entries = local.consume("c", usd(Decimal(int(amount)) / 4),  # type: ignore[call-overload]
                                            at=at, reference=reference)
                except bc.ConflictError:
                    continue  # not enough credit then: refused whole, nothing to check
                references.append(reference)
                check(local, entries)
            elif kind == "replay" and references:
                reference = references[int(op[1]) % len(references)]  # type: ignore[call-overload]
                entries = list(local.list_ledger("c"))
                again = [e for e in entries if e.reference == reference]
                amount = -bc.exact_sum(e.amount.amount for e in again)
                replayed = local.consume("c", usd(amount), at=again[0].at, reference=reference)
                check(local, replayed)
            elif kind in ("expire", "void") and grants:
                grant_id = grants[int(op[1]) % len(grants)]  # type: ignore[call-overload]
                try:
                    getattr(local, f"{kind}_grant")(grant_id)
                except bc.BillingCreditsError:
                    continue  # already voided or expired
