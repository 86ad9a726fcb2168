"""The consumption engine: declared orders, windows, scope, exactness, ties (issue 11)."""

from __future__ import annotations

import decimal
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits.testing import strategies as bcst

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PRODUCTS = ("p1", "p2", "p3")
UNITS = {
    "USD": bc.Money(amount=Decimal(1), currency="USD"),
    "unit:cu": bc.Money(amount=Decimal(1), unit=bc.CreditUnit(id="cu", name="cloud units")),
}


def usd(amount: str | int) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def grant(gid: str, amount: str | int, **fields: object) -> bc.CreditGrant:
    data: dict[str, object] = {"customer_id": "c", "amount": usd(amount), "id": gid,
                               "effective_at": T0}
    data.update(fields)
    return bc.CreditGrant.model_validate(data)


def use(amount: str | int, days: float = 1, product: str | None = None,
        reference: str | None = None) -> bc.Usage:
    return bc.Usage(customer_id="c", amount=usd(amount), at=T0 + timedelta(days=days),
                    product_id=product, reference=reference)


# -- strategies ----------------------------------------------------------------------------

AMOUNTS = st.one_of(
    st.integers(1, 5000).map(lambda n: Decimal(n) / 100),
    st.integers(1, 10**30).map(lambda n: Decimal(n).scaleb(-18)),  # long exact decimals
)


@st.composite
def engine_grants(draw: st.DrawFn) -> list[bc.CreditGrant]:
    count = draw(st.integers(0, 6))
    found = []
    for i in range(count):
        unit = draw(st.sampled_from(sorted(UNITS)))
        start = T0 + timedelta(days=draw(st.integers(0, 20)))
        fields: dict[str, object] = {
            "customer_id": draw(st.sampled_from(["c", "c", "d"])),
            "id": f"g{i}",
            "priority": draw(st.sampled_from([None, Decimal(0), Decimal(1), Decimal("0.5")])),
            "created_at": T0 + timedelta(hours=draw(st.integers(0, 5))),
        }
        products = draw(st.lists(st.sampled_from(PRODUCTS), unique=True, max_size=2))
        if products:
            fields["scope"] = bc.Scope(product_ids=tuple(products))
        if draw(st.booleans()):
            fields["paid_amount"] = UNITS[unit].with_amount(draw(AMOUNTS))
        segments = draw(st.integers(1, 3))
        if segments == 1:
            amount = draw(AMOUNTS)
            fields["effective_at"] = start
            days = draw(st.one_of(st.none(), st.integers(1, 30)))
            fields["expires_at"] = None if days is None else start + timedelta(days=days)
        else:
            items = []
            at = previous = start
            for n in range(segments):
                length = timedelta(days=draw(st.integers(1, 15)))
                overlap = timedelta(days=draw(st.integers(0, 2))) if n else timedelta(0)
                begin = max(previous, at - overlap)
                previous = begin
                items.append(bc.Segment(amount=draw(AMOUNTS), starts_at=begin,
                                        ends_before=begin + length))
                at = begin + length
            amount = bc.exact_sum(s.amount for s in items)
            fields["schedule"] = tuple(items)
        fields["amount"] = UNITS[unit].with_amount(amount)
        found.append(bc.CreditGrant.model_validate(fields))
    return found


@st.composite
def engine_usage(draw: st.DrawFn) -> list[bc.Usage]:
    return [
        bc.Usage(
            customer_id=draw(st.sampled_from(["c", "c", "d"])),
            amount=UNITS[draw(st.sampled_from(sorted(UNITS)))].with_amount(draw(AMOUNTS)),
            at=T0 + timedelta(hours=draw(st.integers(0, 24 * 50))),
            product_id=draw(st.one_of(st.none(), st.sampled_from(PRODUCTS))),
            reference=f"u{i}",
        )
        for i in range(draw(st.integers(0, 12)))
    ]


ORDERS = st.sampled_from([
    bc.LOCAL_ORDER,
    bc.ConsumptionOrder("undocumented", (bc.OrderRule("priority", "asc", "test"),),
                        documented_tie_break=False),
    bc.ConsumptionOrder("rich", (
        bc.OrderRule("priority", "asc", "test"),
        bc.OrderRule("cost_basis", "asc", "test"),
        bc.OrderRule("fewest_products", "asc", "test"),
        bc.OrderRule("expires_at", "asc", "test"),
        bc.OrderRule("starts_at", "desc", "test", missing="first"),
    ), documented_tie_break=False),
    bc.ConsumptionOrder("scope-blind", (bc.OrderRule("created_at", "asc", "test"),),
                        documented_tie_break=False, scope_aware=False),
])


def check_invariants(grants: list[bc.CreditGrant], usage: list[bc.Usage],
                     order: bc.ConsumptionOrder, result: bc.Allocation) -> None:
    # Sums in the exact context: the default one would round at 28 digits and hide a loss.
    with decimal.localcontext(bc.exact_context()):
        _check_invariants(grants, usage, order, result)


def _check_invariants(grants: list[bc.CreditGrant], usage: list[bc.Usage],
                      order: bc.ConsumptionOrder, result: bc.Allocation) -> None:
    by_id = {g.id: g for g in grants}
    consumed = result.consumed()
    expired = result.expired_by_grant()
    assert set(result.remaining) == set(by_id)
    for gid, g in by_id.items():
        # Exactly: nothing created or lost, per grant.
        assert consumed[gid] + expired[gid] + result.remaining[gid] == g.amount.amount
        assert result.remaining[gid] >= 0
    per_window: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    per_usage: dict[int, Decimal] = defaultdict(Decimal)
    for d in result.draws:
        g, u = by_id[d.grant_id], usage[d.usage_index]
        segment = g.segments[d.segment]
        assert d.amount > 0
        assert segment.starts_at <= d.at, "before its window"
        assert segment.ends_before is None or d.at < segment.ends_before, "after its window"
        assert d.at == u.at
        assert d.reference == u.reference
        assert g.amount.unit_key == u.amount.unit_key
        assert g.customer_id == u.customer_id
        if order.scope_aware:
            assert bc.admits(g, u), "drew on a grant whose scope does not admit the usage"
        per_window[(d.grant_id, d.segment)] += d.amount
        per_usage[d.usage_index] += d.amount
    for e in result.expired:
        segment = by_id[e.grant_id].segments[e.segment]
        assert e.at == segment.ends_before
        assert e.amount > 0
        per_window[(e.grant_id, e.segment)] += e.amount
    for (gid, index), total in per_window.items():
        assert total <= by_id[gid].segments[index].amount, "drew more than a window holds"
    uncovered = dict(result.uncovered)
    for i, u in enumerate(usage):
        assert per_usage[i] + uncovered.get(i, Decimal(0)) == u.amount.amount


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(engine_grants(), engine_usage(), ORDERS)
def test_consumed_plus_expired_plus_remaining_is_granted_exactly(
    grants: list[bc.CreditGrant], usage: list[bc.Usage], order: bc.ConsumptionOrder
) -> None:
    result = bc.allocate(grants, usage, order)
    check_invariants(grants, usage, order, result)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(engine_grants(), engine_usage(), st.integers(0, 60))
def test_invariants_hold_at_any_horizon(
    grants: list[bc.CreditGrant], usage: list[bc.Usage], days: int
) -> None:
    result = bc.allocate(grants, usage, bc.LOCAL_ORDER, until=T0 + timedelta(days=days))
    check_invariants(grants, usage, bc.LOCAL_ORDER, result)
    for e in result.expired:
        assert e.at <= T0 + timedelta(days=days)


@st.composite
def usage_for(draw: st.DrawFn, grants: list[bc.CreditGrant]) -> list[bc.Usage]:
    """Usage that grants can pay: each for a drawn grant's customer, in its unit, at a moment
    inside one of its windows (or just outside), for a product its scope lists (or none)."""
    if not grants:
        return []
    found = []
    for i in range(draw(st.integers(1, 8))):
        g = draw(st.sampled_from(grants))
        window = draw(st.sampled_from(g.segments))
        end = window.ends_before or window.starts_at + timedelta(days=400)
        at = window.starts_at + (end - window.starts_at) * draw(st.sampled_from(
            [0, 500, 999])) / 1000
        if draw(st.integers(0, 9)) == 9:
            at = end + timedelta(microseconds=1)  # now and then, just after the window
        products = [*g.scope.product_ids, *(s.product_id for s in g.scope.specifiers
                                            if s.product_id)]
        found.append(bc.Usage(
            customer_id=g.customer_id, amount=g.amount.with_amount(draw(AMOUNTS)), at=at,
            product_id=draw(st.sampled_from(products)) if products else None,
            reference=f"u{i}"))
    return found


DRAWS_PER_EXAMPLE: list[int] = []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bcst.grants(), min_size=1, max_size=4), st.data())
def test_invariants_hold_for_any_neutral_grant(
    drawn: list[bc.CreditGrant], data: st.DataObject
) -> None:
    """Any grant the neutral model holds, with usage drawn for its customer, unit, windows and
    scope. The draws of each example are recorded (``hypothesis.event``: see them with
    ``--hypothesis-show-statistics``) and counted by the next test."""
    grants = [
        bc.CreditGrant.model_validate({**g.model_dump(), "id": f"g{i}", "created_at": (
            g.expires_at - timedelta(days=1) if g.expires_at else T0)})
        for i, g in enumerate(drawn)]
    usage = data.draw(usage_for(grants))
    result = bc.allocate(grants, usage, bc.LOCAL_ORDER)
    check_invariants(grants, usage, bc.LOCAL_ORDER, result)
    event("draws", len(result.draws))
    event("examples", "with draws" if result.draws else "without draws")
    DRAWS_PER_EXAMPLE.append(len(result.draws))


def test_the_neutral_grant_examples_draw_on_their_grants() -> None:
    """The property above checks the draws only if there are some: a strategy whose usage no
    grant can pay (as when all usage was for a customer no grant had) fails here."""
    DRAWS_PER_EXAMPLE.clear()
    test_invariants_hold_for_any_neutral_grant()
    with_draws = sum(1 for n in DRAWS_PER_EXAMPLE if n)
    assert with_draws >= len(DRAWS_PER_EXAMPLE) // 4, (
        f"only {with_draws} of {len(DRAWS_PER_EXAMPLE)} examples drew on any grant")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(engine_grants(), engine_usage())
def test_draws_follow_the_declared_order_and_drain_before_moving_on(
    grants: list[bc.CreditGrant], usage: list[bc.Usage]
) -> None:
    result = bc.allocate(grants, usage, bc.LOCAL_ORDER)
    by_id = {g.id: g for g in grants}
    draws: dict[int, list[bc.Draw]] = defaultdict(list)
    for d in result.draws:
        draws[d.usage_index].append(d)
    for taken in draws.values():
        # Each window is its own lot, keyed by that window (a grant's windows may overlap, so
        # "the window active at the usage" is not enough to name the one drawn).
        keys = [(bc.LOCAL_ORDER._key(by_id[d.grant_id], by_id[d.grant_id].segments[d.segment],
                                     None), d.grant_id) for d in taken]
        assert [k for k, _ in keys] == sorted(k for k, _ in keys)
    # Every draw but a usage's last empties its window: the engine moves on only when drained.
    used: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    with decimal.localcontext(bc.exact_context()):
        for d in result.draws:
            used[(d.grant_id, d.segment)] += d.amount
            if d is not draws[d.usage_index][-1]:
                assert used[(d.grant_id, d.segment)] == by_id[d.grant_id].segments[d.segment].amount


# -- examples ------------------------------------------------------------------------------


def test_lower_priority_first_then_soonest_expiry() -> None:
    grants = [
        grant("late", 10, priority=1, expires_at=T0 + timedelta(days=30)),
        grant("soon", 10, priority=1, expires_at=T0 + timedelta(days=5)),
        grant("first", 3, priority=0),
    ]
    result = bc.allocate(grants, [use(8)], bc.LOCAL_ORDER)
    assert [(d.grant_id, d.amount) for d in result.draws] == [("first", 3), ("soon", 5)]
    assert result.remaining == {"late": 10, "soon": 5, "first": 0}


def test_windows_credit_unused_at_the_end_of_a_window_expires() -> None:
    g = grant("s", 30, schedule=(
        bc.Segment(amount=Decimal(10), starts_at=T0, ends_before=T0 + timedelta(days=10)),
        bc.Segment(amount=Decimal(20), starts_at=T0 + timedelta(days=10),
                   ends_before=T0 + timedelta(days=20)),
    ))
    result = bc.allocate([g], [use(4, days=1), use(25, days=12)], bc.LOCAL_ORDER)
    assert [(d.segment, d.amount) for d in result.draws] == [(0, 4), (1, 20)]
    assert result.uncovered == [(1, Decimal(5))], "a later window never pays early usage"
    assert [(e.segment, e.amount, e.at) for e in result.expired] == [
        (0, 6, T0 + timedelta(days=10))]
    assert result.remaining == {"s": 0}


def test_usage_before_a_window_opens_or_after_it_ends_is_not_paid_from_it() -> None:
    g = grant("g", 10, effective_at=T0 + timedelta(days=2), expires_at=T0 + timedelta(days=4))
    result = bc.allocate([g], [use(1, days=1), use(1, days=4), use(1, days=3)], bc.LOCAL_ORDER)
    assert [d.usage_index for d in result.draws] == [2]
    assert result.uncovered == [(0, 1), (1, 1)]
    assert result.expired[0].amount == 9


def test_scope_product_usage_draws_only_on_grants_that_admit_it() -> None:
    grants = [grant("p2-only", 5, priority=0, scope=bc.Scope(product_ids=("p2",))),
              grant("all", 5, priority=1)]
    result = bc.allocate(grants, [use(3, product="p1"), use(3, product="p2"), use(3)],
                         bc.LOCAL_ORDER)
    assert [(d.usage_index, d.grant_id, d.amount) for d in result.draws] == [
        (0, "all", 3), (1, "p2-only", 3), (2, "all", 2)]
    assert result.uncovered == [(2, Decimal(1))]


def test_scope_parts_a_usage_cannot_be_tested_against_admit_nothing() -> None:
    tagged = grant("tags", 5, scope=bc.Scope(product_tags=("compute",)))
    metered = grant("metered", 5, scope=bc.Scope(metered_prices_only=True))
    assert not bc.admits(tagged, use(1, product="p1"))
    assert bc.admits(metered, use(1))
    assert bc.admits(grant("spec", 5, scope=bc.Scope(specifiers=(
        bc.Specifier(product_id="p1"),))), use(1, product="p1"))


def test_exact_with_forty_digit_amounts() -> None:
    big = Decimal("1234567890123456789012.345678901234567891")
    g = grant("g", big)
    result = bc.allocate([g], [use("0.000000000000000001"), use(1)], bc.LOCAL_ORDER)
    with decimal.localcontext(bc.exact_context()):
        assert result.remaining["g"] == big - Decimal("1.000000000000000001")
    assert str(result.remaining["g"]) == "1234567890123456789011.345678901234567890"


def test_ties_are_broken_by_id_and_reported_when_the_vendor_documents_none() -> None:
    order = bc.ConsumptionOrder("v", (bc.OrderRule("priority", "asc", "docs"),),
                                documented_tie_break=False)
    grants = [grant("b", 5, priority=1), grant("a", 5, priority=1)]
    result = bc.allocate(grants, [use(3)], order)
    assert [d.grant_id for d in result.draws] == ["a"]
    assert result.ties == [bc.Tie(0, ("a", "b"))]
    assert bc.allocate(grants, [use(3)], bc.LOCAL_ORDER).ties == []


def test_usage_draws_only_on_its_own_customers_grants() -> None:
    grants = [grant("mine", 5, priority=1), grant("theirs", 5, priority=0, customer_id="d")]
    result = bc.allocate(grants, [use(7)], bc.LOCAL_ORDER)
    assert [(d.grant_id, d.amount) for d in result.draws] == [("mine", 5)]
    assert result.uncovered == [(0, Decimal(2))]


def test_already_consumed_is_taken_into_account() -> None:
    g = grant("g", 10)
    result = bc.allocate([g], [use(5)], bc.LOCAL_ORDER, already={("g", 0): Decimal(7)})
    assert [d.amount for d in result.draws] == [3]
    assert result.uncovered == [(0, Decimal(2))]
    with pytest.raises(bc.InvalidGrantError):
        bc.allocate([g], [], bc.LOCAL_ORDER, already={("g", 0): Decimal(11)})


def test_vocabulary_rules() -> None:
    cheap = grant("cheap", 10, paid_amount=usd(0))
    dear = grant("dear", 10, paid_amount=usd(10), scope=bc.Scope(product_ids=("p1",)))
    wide = grant("wide", 10, paid_amount=usd(5), scope=bc.Scope(product_ids=("p2", "p1")))
    rule = bc.OrderRule("cost_basis", "asc", "docs")
    assert [rule.value(g) for g in (cheap, dear, wide)] == [0, 1, Decimal("0.5")]
    few = bc.OrderRule("fewest_products", "asc", "docs")
    assert [few.value(g) for g in (cheap, dear, wide)] == [None, 1, 2]
    position = bc.OrderRule("product_position", "asc", "docs")
    assert position.value(wide, product_id="p1") == 1
    level = bc.OrderRule("contract_before_customer", "asc", "docs",
                         key=lambda g: 0 if g.metadata.get("level") == "contract" else 1)
    assert level.value(grant("k", 1, metadata={"level": "contract"})) == 0
    order = bc.ConsumptionOrder("v", (few,), documented_tie_break=True)
    assert sorted([cheap, dear, wide], key=order.sort_key) == [dear, wide, cheap]
    with pytest.raises(ValueError, match="unknown consumption rule"):
        bc.OrderRule("vibes", "asc", "docs")
    with pytest.raises(ValueError, match="cites"):
        bc.OrderRule("priority", "asc", " ")


def test_descending_rules_and_missing_first() -> None:
    order = bc.ConsumptionOrder("v", (
        bc.OrderRule("expires_at", "desc", "docs", missing="first"),), documented_tie_break=True)
    never = grant("never", 1)
    later = grant("later", 1, expires_at=T0 + timedelta(days=9))
    sooner = grant("sooner", 1, expires_at=T0 + timedelta(days=3))
    assert sorted([sooner, later, never], key=order.sort_key) == [never, later, sooner]


def test_local_order_is_documented_and_cited() -> None:
    assert bc.LOCAL_ORDER.documented_tie_break
    assert [r.name for r in bc.LOCAL_ORDER.rules] == [
        "priority", "expires_at", "starts_at", "created_at", "id"]
    assert all(r.cites == "billing-credits documented" for r in bc.LOCAL_ORDER.rules)
    assert bc.get_provider("local", path=":memory:").consumption_order is bc.LOCAL_ORDER
