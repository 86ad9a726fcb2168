"""Review of issue 17's streaming: the spooled, per-customer simulation gives every grant
exactly what one ``allocate`` over the whole, unspooled listing gives (hypothesis), with
40-digit amounts, two units per customer and customers interleaved in the listing."""

from __future__ import annotations

import decimal
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits._money import exact
from billing_credits.consumption._engine import allocate
from billing_credits.consumption._simulate import simulate_each
from billing_credits.consumption._spool import Spool

from .test_properties import ORDERS

T0 = datetime(2026, 3, 1, tzinfo=UTC)
UNITS = ({"currency": "USD"}, {"unit": {"id": "ccu", "name": "Cloud credits"}})


@st.composite
def listings(draw: st.DrawFn) -> tuple[list[bc.CreditGrant], list[bc.Usage]]:
    grants = []
    for index in range(draw(st.integers(min_value=1, max_value=8))):
        # up to 40 significant digits, some with decimals
        digits = draw(st.integers(min_value=1, max_value=10**39))
        amount = Decimal(digits).scaleb(-draw(st.integers(min_value=0, max_value=4)))
        unit = draw(st.sampled_from(UNITS))
        start = T0 + timedelta(hours=draw(st.integers(min_value=0, max_value=24 * 10)))
        grants.append(bc.CreditGrant(
            id=f"g{index:02d}", customer_id=draw(st.sampled_from(("cus_a", "cus_b", "cus_c"))),
            name=f"n{index}", amount=bc.Money(amount=amount, **unit),  # type: ignore[arg-type]
            priority=draw(st.none() | st.integers(0, 2).map(Decimal)),
            effective_at=start,
            expires_at=draw(st.none() | st.just(start + timedelta(days=draw(st.integers(1, 30))))),
            idempotency_key=f"key-{index}"))
    usage = []
    for index in range(draw(st.integers(min_value=0, max_value=12))):
        digits = draw(st.integers(min_value=1, max_value=10**39))
        usage.append(bc.Usage(
            customer_id=draw(st.sampled_from(("cus_a", "cus_b", "cus_c", "cus_none"))),
            amount=bc.Money(amount=Decimal(digits).scaleb(-draw(st.integers(0, 4))),
                            **draw(st.sampled_from(UNITS))),  # type: ignore[arg-type]
            at=T0 + timedelta(hours=draw(st.integers(min_value=0, max_value=24 * 40))),
            reference=f"u{index}"))
    return grants, usage


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(listing=listings(), order=st.sampled_from(ORDERS))
def test_spooled_per_customer_results_equal_one_whole_allocation(
    listing: tuple[list[bc.CreditGrant], list[bc.Usage]], order: bc.ConsumptionOrder,
) -> None:
    grants, usage = listing
    # The reference: one ``allocate`` per customer over plain lists (no spool, no
    # ``simulate_each``). Per customer, because the simulation's horizon is each customer's
    # own last usage (a whole-listing allocate would expire one customer's grants at another
    # customer's last usage).
    ref_draws: dict[str, list[tuple[str, str, Decimal]]] = defaultdict(list)
    ref_expired: dict[str, Decimal] = defaultdict(Decimal)
    ref_remaining: dict[str, Decimal] = {}
    for customer in {g.customer_id for g in grants} | {u.customer_id for u in usage}:
        mine = [u for u in usage if u.customer_id == customer]
        whole = allocate([g for g in grants if g.customer_id == customer], mine, order)
        for draw in whole.draws:
            ref_draws[customer].append(
                (mine[draw.usage_index].reference or "", draw.grant_id, draw.amount))
        with decimal.localcontext(exact()):  # the reference must not round either
            for expiry in whole.expired:
                ref_expired[expiry.grant_id] += expiry.amount
        ref_remaining.update(whole.remaining)

    with Spool() as spool:
        spool.add_grants(grants)
        spool.add_usage(usage)
        streamed = list(simulate_each(spool.groups(synthetic=False), order))
    assert [s.customer_id for s in streamed] == sorted(
        {g.customer_id for g in grants} | {u.customer_id for u in usage})
    seen = set()
    for sim in streamed:
        draws = [(sim.usage[d.usage_index].reference or "", d.grant_id, d.amount)
                 for d in sim.draws]
        assert sorted(draws) == sorted(ref_draws[sim.customer_id])
        for outcome in sim.grants:
            seen.add(outcome.grant_id)
            assert outcome.remaining == ref_remaining.get(outcome.grant_id, Decimal(0))
            assert outcome.expired == ref_expired.get(outcome.grant_id, Decimal(0))
            with decimal.localcontext(exact()):  # Inexact trapped: no silent rounding here
                assert outcome.consumed + outcome.expired + outcome.remaining == outcome.granted
    assert seen == {g.id for g in grants}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(listing=listings(), order=st.sampled_from(ORDERS))
def test_spooled_synthetic_run_equals_simulate_over_the_whole_listing(
    listing: tuple[list[bc.CreditGrant], list[bc.Usage]], order: bc.ConsumptionOrder,
) -> None:
    grants, _ = listing
    reference = bc.simulate(grants, None, order, start=T0)
    with Spool() as spool:
        spool.add_grants(reversed(grants))  # another listing order: the result must not move
        streamed = {s.customer_id: s for s in simulate_each(spool.groups(synthetic=True), order,
                                                             start=T0)}
    assert streamed == reference.customers


def test_whole_number_grants_smaller_than_the_steps_still_burn_over_time() -> None:
    """20 USD written without cents (or 3 credits) is fewer than 24 of its smallest unit: the
    synthetic stream must still spread draws over the window (one whole unit each), not spend
    everything in one draw at the start, which hides expiry and ties."""
    from billing_credits.consumption._simulate import synthetic_usage

    grants = [bc.CreditGrant(
        id=f"g{i}", customer_id="c", name=f"n{i}", amount=bc.Money(amount=Decimal(amount),
                                                                   currency="USD"),
        priority=Decimal(1), effective_at=T0, expires_at=T0 + timedelta(days=10))
        for i, amount in enumerate(("10", "10"))]
    usage = synthetic_usage(grants, start=T0)
    assert len(usage) == 20
    assert {u.amount.amount for u in usage} == {Decimal(1)}
    assert len({u.at for u in usage}) == 20
    three = synthetic_usage([grants[0].model_copy(update={"amount": bc.Money(
        amount=Decimal(3), currency="USD")})], start=T0)
    assert [u.amount.amount for u in three] == [Decimal(1)] * 3
