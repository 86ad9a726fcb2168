"""Benchmark 8: ``CreditGrant.model_validate`` against a plain pydantic model with the same fields
(issue 17: at most 2x).

The baseline is built here: the same field names and types (``Decimal``, aware ``datetime``,
``str``, enums, nested models for money, unit, segments, scope and specifiers, ``dict`` of
metadata), ``frozen`` and ``extra="forbid"``, with none of the neutral model's own checks (exact
decimals, UTC, surrogates, schedule consistency, error translation). Both validate the same
inputs: JSON-ready dicts (what ``import``, ``migrate`` and the providers hand the model), a
typical grant, a scheduled one and a read-back one with ``raw``. Best of ``--repeats`` passes,
the two interleaved; each pass timed in CPU seconds of this process (``time.process_time``),
which a shared machine disturbs far less than wall time.

Run: .venv/bin/python benchmarks/model.py [--grants 2000] [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import enum
import gc
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pydantic
from _common import emit, load_average, machine
from pydantic import ConfigDict, Field

import billing_credits as bc


class _Plain(pydantic.BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlainUnit(_Plain):
    id: str
    name: str | None = None


class PlainMoney(_Plain):
    amount: Decimal
    currency: str | None = None
    unit: PlainUnit | None = None


class PlainSegment(_Plain):
    amount: Decimal
    starts_at: datetime
    ends_before: datetime | None = None
    id: str | None = None


class PlainSpecifier(_Plain):
    product_id: str | None = None
    product_tags: tuple[str, ...] = ()
    pricing_group_values: dict[str, str] = Field(default_factory=dict)
    presentation_group_values: dict[str, str] = Field(default_factory=dict)


class PlainScope(_Plain):
    product_ids: tuple[str, ...] = ()
    product_tags: tuple[str, ...] = ()
    price_ids: tuple[str, ...] = ()
    metered_prices_only: bool = False
    contract_ids: tuple[str, ...] = ()
    specifiers: tuple[PlainSpecifier, ...] = ()


class PlainAdjustment(_Plain):
    field: str
    requested: str | None
    stored: str | None
    reason: str


class Category(enum.StrEnum):
    PAID = "paid"
    PROMOTIONAL = "promotional"


class Status(enum.StrEnum):
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    EXPIRED = "expired"
    VOIDED = "voided"


class PlainGrant(_Plain):
    customer_id: str
    amount: PlainMoney
    name: str | None = None
    reason: str | None = None
    category: Category | None = None
    category_label: str | None = None
    paid_amount: PlainMoney | None = None
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    schedule: tuple[PlainSegment, ...] | None = None
    priority: Decimal | None = None
    scope: PlainScope = Field(default_factory=PlainScope)
    metadata: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = None
    id: str | None = None
    provider: str | None = None
    status: Status | None = None
    balance: PlainMoney | None = None
    created_at: datetime | None = None
    raw: dict[str, Any] | None = None
    adjustments: tuple[PlainAdjustment, ...] = ()
    replayed: bool | None = None


def inputs(count: int, kind: str) -> list[dict[str, Any]]:
    """``count`` JSON-ready grants of one kind: ``typical``, ``scheduled`` or ``read_back``."""
    result = []
    for i in range(count):
        data: dict[str, Any] = {
            "customer_id": f"cus_{i % 500:05d}",
            "amount": {"amount": f"{10 + i % 9000}.{i % 100:02d}", "currency": "USD"},
            "name": f"Prepaid credits {i}",
            "reason": "annual contract",
            "category": "paid" if i % 2 else "promotional",
            "paid_amount": {"amount": "5.00", "currency": "USD"},
            "effective_at": "2026-01-01T00:00:00Z",
            "expires_at": "2027-01-01T00:00:00Z",
            "priority": str(1 + i % 100),
            "scope": {"product_ids": ["prod_a", "prod_b"]},
            "metadata": {"team": f"team-{i % 7}", "plan": "enterprise"},
            "idempotency_key": f"key-{i}",
        }
        if kind == "scheduled":
            data["schedule"] = [
                {"amount": "5", "starts_at": "2026-01-01T00:00:00Z",
                 "ends_before": "2026-07-01T00:00:00Z"},
                {"amount": str(Decimal(data["amount"]["amount"]) - 5),
                 "starts_at": "2026-07-01T00:00:00Z", "ends_before": "2027-01-01T00:00:00Z"}]
        if kind == "read_back":
            data.update({"id": f"grant_{i}", "provider": "local", "status": "active",
                         "balance": {"amount": "3.00", "currency": "USD"},
                         "created_at": "2025-12-31T23:00:00Z",
                         "raw": {"id": f"grant_{i}", "amount": {"value": 1000, "cur": "usd"},
                                 "metadata": {"team": "a"}, "list": [1, "two", None]},
                         "adjustments": [{"field": "effective_at", "requested": "a",
                                          "stored": "b", "reason": "floored to the hour"}]})
        result.append(data)
    return result


def timed(fn: Callable[[Any], Any], values: list[Any]) -> float:
    gc.collect()
    started = time.process_time()
    for value in values:
        fn(value)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="200 grants, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.grants, args.repeats = 200, 3
    emit(machine())
    for kind in ("typical", "scheduled", "read_back"):
        values = inputs(args.grants, kind)
        ours = bc.CreditGrant.model_validate
        plain = PlainGrant.model_validate
        for value in values[:20]:  # warm up
            ours(value)
            plain(value)
        our_passes, plain_passes = [], []
        for _ in range(args.repeats):
            plain_passes.append(timed(plain, values))
            our_passes.append(timed(ours, values))
        ours_us = min(our_passes) / len(values) * 1e6
        plain_us = min(plain_passes) / len(values) * 1e6
        emit({"benchmark": f"model.{kind}", "grants": len(values), "repeats": args.repeats,
              "load_average": load_average(),
              "ours_path": "CreditGrant.model_validate(dict)",
              "baseline_path": "plain pydantic model, same fields, model_validate(dict)",
              "ours_us_per_grant": round(ours_us, 2), "baseline_us_per_grant": round(plain_us, 2),
              "ours_over_baseline": round(ours_us / plain_us, 2), "target_ratio": 2.0,
              "meets_target": ours_us / plain_us <= 2.0})


if __name__ == "__main__":
    main()
