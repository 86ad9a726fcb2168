"""``consume`` burns lots in ``LOCAL_ORDER`` exactly as the engine (``bc.allocate``) does with
full grant models: same grants, same windows, same amounts, in the same order (property)."""

from __future__ import annotations

import decimal
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits.local import LocalProvider

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)

grant_shapes = st.lists(st.fixed_dictionaries({
    "amount": st.integers(1, 40),
    "priority": st.one_of(st.none(), st.integers(0, 2)),
    "start": st.integers(0, 5),
    "length": st.one_of(st.none(), st.integers(1, 8)),
    "windows": st.integers(1, 3),
    "same_moment": st.booleans(),
    "gpu_only": st.integers(0, 5).map(lambda n: n == 0),
}), min_size=1, max_size=7)
usage_shapes = st.lists(st.tuples(st.integers(1, 30), st.integers(0, 12), st.booleans()),
                        min_size=1, max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grant_shapes, usage_shapes)
def test_consume_draws_what_the_engine_draws(shapes: list[dict[str, object]],
                                             usages: list[tuple[int, int, bool]]) -> None:
    clock = [T0 - 10 * DAY]
    with tempfile.TemporaryDirectory() as folder, \
            LocalProvider(Path(folder) / "order.db", clock=lambda: clock[0]) as local:
        for shape in shapes:
            if not shape["same_moment"]:
                clock[0] += timedelta(seconds=1)
            start = T0 + int(shape["start"]) * DAY  # type: ignore[call-overload]
            fields: dict[str, object] = {"customer_id": "c", "priority": shape["priority"]}
            if shape["gpu_only"]:
                fields["scope"] = {"product_ids": ["gpu"]}
            count = int(shape["windows"])  # type: ignore[call-overload]
            if count == 1:
                end = None if shape["length"] is None else start + int(shape["length"]) * DAY  # type: ignore[call-overload]
                fields.update(amount={"amount": str(shape["amount"]), "currency": "USD"},
                              effective_at=start, expires_at=end)
            else:
                step = int(shape["length"] or 2)  # type: ignore[call-overload]
                windows = [bc.Segment(amount=Decimal(int(shape["amount"]) + i),  # type: ignore[call-overload]
                                      starts_at=start + i * step * DAY,
                                      ends_before=start + (i + 1) * step * DAY + DAY)  # overlap
                           for i in range(count)]
                total = sum((w.amount for w in windows), Decimal(0))
                fields.update(amount={"amount": str(total), "currency": "USD"}, schedule=windows)
            local.create_grant(fields)
        clock[0] = T0 + 20 * DAY
        grants = list(local.list_grants())
        already: dict[tuple[str, int], Decimal] = {}
        for n, (amount, day, gpu) in enumerate(sorted(usages, key=lambda u: u[1])):
            usage = bc.Usage(customer_id="c", amount={"amount": amount, "currency": "USD"},
                             at=T0 + day * DAY + timedelta(hours=1), reference=f"u{n}",
                             product_id="gpu" if gpu else None)
            plan = bc.allocate(grants, [usage], bc.LOCAL_ORDER, already=already, until=usage.at)
            if plan.uncovered:
                with pytest.raises(bc.ConflictError, match="insufficient credit"):
                    local.consume("c", usage.amount, at=usage.at, reference=f"u{n}",
                                  product_id=usage.product_id)
                continue
            entries = local.consume("c", usage.amount, at=usage.at, reference=f"u{n}",
                                    product_id=usage.product_id)
            assert [(e.grant_id, -e.amount.amount) for e in entries] == \
                [(d.grant_id, d.amount) for d in plan.draws]
            with decimal.localcontext(bc.exact_context()):
                for draw in plan.draws:
                    key = (draw.grant_id, draw.segment)
                    already[key] = already.get(key, Decimal(0)) + draw.amount
