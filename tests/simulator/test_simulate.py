"""simulate(): who pays for each unit of usage, breakage, balance over time; usage streams."""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import billing_credits as bc
from billing_credits.migrate._compare import preserve_burn_order

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def grant(gid: str, amount: str, *, priority: int | None = 1, days: int | None = 30,
          customer: str = "cus_1", **extra: Any) -> bc.CreditGrant:
    return bc.CreditGrant(
        id=gid, name=gid, customer_id=customer, amount=usd(amount),
        priority=None if priority is None else Decimal(priority), effective_at=T0,
        expires_at=None if days is None else T0 + timedelta(days=days), **extra)


def use(amount: str, day: float, *, customer: str = "cus_1", product: str | None = None) -> bc.Usage:
    return bc.Usage(customer_id=customer, amount=usd(amount), at=T0 + timedelta(days=day),
                    product_id=product, reference=f"u{day}")


def test_each_unit_of_usage_is_paid_in_order_and_breakage_is_reported(
    plans_order: bc.ConsumptionOrder,
) -> None:
    grants = [grant("soon", "10", days=10), grant("later", "30", days=60),
              grant("last", "5", priority=9, days=None)]
    usage = [use("4", 1), use("8", 2), use("20", 20), use("12.50", 61)]
    result = bc.simulate(grants, usage, plans_order).customers["cus_1"]
    assert [(d.grant_id, d.amount) for d in result.draws] == [
        ("soon", Decimal(4)), ("soon", Decimal(6)), ("later", Decimal(2)),
        ("later", Decimal(20)), ("last", Decimal(5))]
    assert result.burn_order == ("soon", "later", "last")
    later = result.outcome("later")
    assert (later.consumed, later.expired, later.remaining) == (Decimal(22), Decimal(8), Decimal(0))
    assert later.expired_at == T0 + timedelta(days=60)
    assert later.exhausted_at is None
    assert result.outcome("soon").exhausted_at == T0 + timedelta(days=2)
    assert result.uncovered == ((3, Decimal("7.50")),)
    totals = result.totals()["USD"]
    assert totals == {"granted": Decimal(45), "consumed": Decimal(37), "expired": Decimal(8),
                      "remaining": Decimal(0), "uncovered": Decimal("7.50")}
    # The balance over time: each grant's after every event, never negative, ending at zero.
    ids = [g.grant_id for g in result.grants]
    assert dict(zip(ids, result.timeline[0].balances, strict=True)) == {
        "soon": Decimal(10), "later": Decimal(30), "last": Decimal(5)}
    assert dict(zip(ids, result.timeline[1].balances, strict=True)) == {
        "soon": Decimal(6), "later": Decimal(30), "last": Decimal(5)}
    assert result.timeline[-1].balances == (Decimal(0), Decimal(0), Decimal(0))


def test_the_synthetic_stream_is_steady_exact_and_spends_what_never_expires(
    plans_order: bc.ConsumptionOrder,
) -> None:
    grants = [grant("a", "100.01", days=40), grant("b", "0.03", priority=2, days=None)]
    usage = bc.synthetic_usage(grants, steps=7)
    assert len(usage) == 7
    assert bc.exact_sum(u.amount.amount for u in usage) == Decimal("100.04")
    assert {u.amount.amount for u in usage[:-1]} == {Decimal("14.29")}
    assert usage[0].at == T0
    assert all(u.at < T0 + timedelta(days=40) for u in usage)
    result = bc.simulate(grants, None, plans_order, steps=7).customers["cus_1"]
    assert result.outcome("a").remaining == 0
    assert result.outcome("b").remaining == 0  # a last draw spends what never expires
    assert not result.uncovered


def test_a_rest_of_more_digits_than_one_amount_holds_is_spent_exactly(
    plans_order: bc.ConsumptionOrder,
) -> None:
    """Two grants that never expire start after the first draws, which only the first grant
    covers: what they have left adds up to 43 digits (39 whole, 4 decimal), more than a
    ``Money`` given by a caller may hold; the last synthetic draw still spends all of it,
    exactly (it was refused with ``InvalidGrantError`` before: found by hypothesis in
    ``test_spooled_synthetic_run_equals_simulate_over_the_whole_listing``)."""
    late = T0 + timedelta(days=5)
    grants = [grant("a", "1", days=None),
              *(bc.CreditGrant(id=gid, customer_id="cus_1", amount=usd(amount), effective_at=late)
                for gid, amount in (("b", "9" * 39), ("c", "0.0001")))]
    with pytest.raises(bc.InvalidGrantError):  # the rest is not an amount one may give
        usd(str(bc.exact_sum([Decimal("9" * 39), Decimal("0.0001")])))
    result = bc.simulate(grants, None, plans_order).customers["cus_1"]
    for gid in ("a", "b", "c"):
        outcome = result.outcome(gid)
        assert (outcome.consumed, outcome.remaining) == (outcome.granted, 0)


def test_the_last_synthetic_draw_stays_within_the_times_the_model_holds(
    plans_order: bc.ConsumptionOrder,
) -> None:
    """Grants that start in the calendar's last seconds: the draw spending what is left comes
    after the stream, but never after ``LATEST`` (every usage of the run is one a caller could
    give; the draw once went half a second past the end, unchecked)."""
    from billing_credits._model import LATEST

    grants = [bc.CreditGrant(id=gid, customer_id="cus_1", amount=usd(amount),
                             effective_at=LATEST - timedelta(seconds=seconds))
              for gid, amount, seconds in (("a", "1", 3), ("b", "5", 1))]
    result = bc.simulate(grants, None, plans_order).customers["cus_1"]
    assert result.usage
    assert max(u.at for u in result.usage) <= LATEST
    for usage in result.usage:
        bc.Usage.model_validate(usage.model_dump())


def test_the_synthetic_stream_goes_to_the_products_grants_are_scoped_to(
    plans_order: bc.ConsumptionOrder,
) -> None:
    grants = [grant("p", "10", scope=bc.Scope(product_ids=("prod_b", "prod_a")))]
    usage = bc.synthetic_usage(grants, steps=4)
    assert [u.product_id for u in usage] == ["prod_a", "prod_b", "prod_a", "prod_b"]
    assert bc.simulate(grants, None, plans_order, steps=4).customers["cus_1"].outcome(
        "p").consumed == Decimal(10)


def test_usage_is_read_exactly_from_csv_and_json_lines(tmp_path: Path) -> None:
    csv_file = tmp_path / "usage.csv"
    csv_file.write_text("customer_id,at,amount,product\n"
                        "cus_1,2026-01-02T00:00:00Z,0.10000000000000000001,prod_a\n"
                        "cus_2,2026-01-03T00:00:00+02:00,3,\n")
    units = {"cus_1": usd("1"), "cus_2": bc.Money(amount=Decimal(1), currency="EUR")}
    rows = bc.read_usage(csv_file, units=units)
    assert rows[0].amount == usd("0.10000000000000000001")
    assert rows[0].product_id == "prod_a"
    assert rows[1].amount.currency == "EUR"
    assert rows[1].product_id is None
    assert rows[1].at == datetime(2026, 1, 2, 22, tzinfo=UTC)
    jsonl = tmp_path / "usage.jsonl"
    jsonl.write_text('{"customer_id": "cus_1", "at": "2026-01-02T00:00:00Z", '
                     '"amount": 0.10000000000000000001, "currency": "usd", "reference": "r1"}\n\n')
    [row] = bc.read_usage(jsonl)
    assert row.amount == usd("0.10000000000000000001")
    assert row.reference == "r1"


@pytest.mark.parametrize(("text", "where", "why"), [
    ("customer_id,at\ncus_1,2026-01-01T00:00:00Z\n", "usage.csv:1", "missing amount"),
    ("customer_id,at,amount\ncus_1,2026-01-01T00:00:00Z,-1\n", "usage.csv:2.amount",
     "greater than zero"),
    ("customer_id,at,amount\ncus_1,2026-01-01T00:00:00Z,1e999999\n", "usage.csv:2.amount",
     "finite"),
    ("customer_id,at,amount\ncus_1,2026-01-01T00:00:00Z,ten\n", "usage.csv:2.amount",
     "not a number"),
    ("customer_id,at,amount\ncus_1,2026-01-01T00:00:00,1\n", "usage.csv:2.at", "naive"),
    ("customer_id,at,amount\ncus_9,2026-01-01T00:00:00Z,1\n", "usage.csv:2.currency",
     "no unit given"),
    ("customer_id,at,amount\ncus_1,2026-01-01T00:00:00Z,1,extra\n", "usage.csv:2",
     "more fields"),
])
def test_bad_usage_names_the_line_and_field(tmp_path: Path, text: str, where: str,
                                            why: str) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(text)
    with pytest.raises(bc.InvalidGrantError) as caught:
        bc.read_usage(path, units={"cus_1": usd("1")})
    assert caught.value.problems[0].field.endswith(where)
    assert why in str(caught.value)


def test_bad_json_usage_is_an_invalid_input_error(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    path.write_text('{"customer_id": "c", "at": "2026-01-01T00:00:00Z", "amount": 1.5}\n')
    with pytest.raises(bc.InvalidGrantError, match=r"usage\.jsonl:1\.currency"):
        bc.read_usage(path)
    path.write_text('{"customer_id": "c", "at": "2026-01-01T00:00:00Z", "amount": "1", '
                    '"currency": "USD"}\n{oops\n')
    with pytest.raises(bc.InvalidGrantError, match=r"usage\.jsonl:2: invalid JSON"):
        bc.read_usage(path)


def test_an_unreadable_usage_file_is_an_invalid_input_error(tmp_path: Path) -> None:
    with pytest.raises(bc.InvalidGrantError, match="cannot read usage"):
        bc.read_usage(tmp_path / "missing.csv")
    (tmp_path / "latin1.csv").write_bytes(b"customer_id,at,amount\ncus_\xe9,2026-01-01T00:00:00Z,1\n")
    with pytest.raises(bc.InvalidGrantError, match="cannot read usage"):
        bc.read_usage(tmp_path / "latin1.csv")


def test_a_grant_without_id_is_refused(plans_order: bc.ConsumptionOrder) -> None:
    with pytest.raises(bc.InvalidGrantError, match="id"):
        bc.simulate([grant("x", "1").model_copy(update={"id": None})], None, plans_order)


@dataclass
class Draft:
    source: bc.CreditGrant
    segment: int | None
    grant: bc.CreditGrant
    changes: list[Any] = field(default_factory=list)


def test_preserve_order_names_the_customer_no_priorities_can_align(
    plans_order: bc.ConsumptionOrder, stripe_order: bc.ConsumptionOrder,
) -> None:
    # Three grants tied on priority, broken by expiry on the source; a target holding only two
    # distinct priorities cannot keep three apart.
    two_values = bc.PriorityDomain("integer", Decimal(0), Decimal(1))
    sources = [grant(f"g{i}", "10", priority=1, days=10 * (3 - i)) for i in range(3)]
    drafts = [Draft(s, None, s.as_new(idempotency_key=f"key-{s.id}")) for s in sources]
    unfixable = preserve_burn_order(drafts, plans_order, stripe_order, two_values,
                                    target_name="tiny", now=T0)
    assert list(unfixable) == ["cus_1"]
    assert "expires_at" in unfixable["cus_1"]
    assert "cannot keep their order in 2 values" in unfixable["cus_1"]
    assert all(any(c.field == "consumption_order" for c in d.changes) for d in drafts)
    assert [d.grant.priority for d in drafts] == [Decimal(1)] * 3  # left as they were

    # With room for three values, the priorities follow the source's order.
    drafts = [Draft(s, None, s.as_new(idempotency_key=f"key-{s.id}")) for s in sources]
    stripe_scale = bc.PriorityDomain("integer", Decimal(0), Decimal(100), default=Decimal(50))
    assert preserve_burn_order(drafts, plans_order, stripe_order, stripe_scale,
                               target_name="stripe", now=T0) == {}
    assert [d.grant.priority for d in drafts] == [Decimal(2), Decimal(1), Decimal(0)]


def compare_sides(source: list[bc.CreditGrant], target: list[bc.CreditGrant],
                  source_order: bc.ConsumptionOrder,
                  target_order: bc.ConsumptionOrder) -> bc.Comparison:
    from billing_credits.consumption._simulate import compare

    usage = bc.synthetic_usage(source, steps=12)
    labels = {g.id or "": g.id or "" for g in [*source, *target]}
    return compare(bc.simulate(source, usage, source_order), bc.simulate(target, usage, target_order),
                   source_grants={g.id or "": g for g in source},
                   target_grants={g.id or "": g for g in target}, labels=labels)


def test_a_tie_broken_on_cost_basis_is_named(contracts_order: bc.ConsumptionOrder,
                                             stripe_order: bc.ConsumptionOrder) -> None:
    grants = [grant("a_paid", "30", priority=3, paid_amount=usd("30")),
              grant("b_free", "30", priority=3)]
    result = compare_sides(grants, grants, contracts_order, stripe_order)
    [difference] = result.differences
    assert difference.source_order == ("b_free", "a_paid")
    assert difference.target_order == ("a_paid", "b_free")
    assert difference.rule == ("metronome breaks the tie between b_free and a_paid on cost_basis "
                               "(lowest first); stripe on nothing documented (the engine breaks "
                               "the tie by grant id)")


def test_expiry_losses_and_balance_over_time_are_compared(plans_order: bc.ConsumptionOrder) -> None:
    source = [grant("g", "30", days=30)]
    target = [grant("g", "30", days=10)]  # e.g. a window the target shortened
    [difference] = compare_sides(source, target, plans_order, plans_order).differences
    assert set(difference.kinds) == {"expiry losses", "balance over time"}  # same order
    assert difference.source_expired == 0
    assert difference.target_expired > 0
    assert difference.rule.startswith("g expires with 0 left on metronome-plans")
    assert compare_sides(source, source, plans_order, plans_order).ok


def test_a_scope_map_names_the_same_usage_on_the_target(
    plans_order: bc.ConsumptionOrder, tmp_path: Path,
) -> None:
    with bc.get_provider("local", path=str(tmp_path / "a.db")) as source, \
            bc.get_provider("local", path=str(tmp_path / "b.db")) as target:
        source.create_grant(bc.CreditGrant(
            customer_id="cus_1", amount=usd("10"), priority=Decimal(1), effective_at=T0,
            scope=bc.Scope(product_ids=("prod_a",)), idempotency_key="scoped"))
        source.create_grant(bc.CreditGrant(
            customer_id="cus_1", amount=usd("5"), priority=Decimal(1), effective_at=T0,
            expires_at=T0 + timedelta(days=5), idempotency_key="other"))
        plans_like = bc.ConsumptionOrder("plans-like", (bc.OrderRule("priority", "asc", "test"),
                                                        bc.OrderRule("expires_at", "asc", "test")),
                                         documented_tie_break=True)
        source.consumption_order = plans_like  # type: ignore[misc]
        target.consumption_order = plans_order  # type: ignore[misc]
        plan = bc.plan_migration(source, target, amount_mode="original", now=T0,
                                 scope_map={"prod_a": ["price_a"]},
                                 priority_policy="preserve-order")
    assert not any(c.field == "consumption_order" for i in plan.items for c in i.changes)
    scoped = next(i.grant for i in plan.to_create if i.grant and i.grant.scope.price_ids)
    assert scoped.scope.price_ids == ("price_a",)
    comparison = bc.compare_plan(plan, plans_order, plans_order)
    assert comparison.ok, comparison.lines()
    scoped_outcome = comparison.target.customers["cus_1"].outcome(scoped.idempotency_key or "")
    assert scoped_outcome.consumed > 0  # product usage reached the price-scoped grant


def test_synthetic_usage_does_not_depend_on_the_callers_decimal_traps() -> None:
    # An application that traps rounding in its own context (as money code often does) still
    # gets its synthetic stream: the deliberate round-down of the step has its own context.
    start = datetime(2026, 1, 1, tzinfo=UTC)
    grants = [bc.CreditGrant(id="g1", customer_id="c", amount=bc.Money(
        amount=Decimal("10.00"), currency="USD"), effective_at=start,
        expires_at=start + timedelta(days=30), priority=1)]
    with decimal.localcontext() as context:
        context.traps[decimal.Inexact] = True
        usage = bc.synthetic_usage(grants)
    assert bc.exact_sum(u.amount.amount for u in usage) == Decimal("10.00")
