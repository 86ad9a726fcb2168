"""Verify: after apply, the target holds every planned grant with the planned amounts and balances."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from billing_credits._errors import (
    BillingCreditsError,
)
from billing_credits._model import CreditGrant, GrantStatus
from billing_credits._money import Money, exact_sum
from billing_credits._provider import Provider

from ._apply import _planned_key
from ._index import PlanIndex
from ._plan import (
    MigrationPlan,
    _describe,
    _text,
)

__all__ = ["VerifyReport", "verify_plan"]


@dataclass
class VerifyReport:
    """Differences between a plan and the target, per planned grant and per customer/unit."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    different: list[tuple[str, str, str, str]] = field(default_factory=list)
    totals: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    balances: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    """Per customer and unit: the usable balance on the source when planning, and on the
    target now (where both providers report balances)."""
    balances_skipped: dict[str, str] = field(default_factory=dict)
    """Customers whose balance comparison was skipped: their source balance could not be read
    when planning (why)."""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.different)

    def lines(self) -> list[str]:
        out = [f"missing {key}" for key in self.missing]
        out += [f"duplicated {key}" for key in self.duplicated]
        out += [f"{key} {name}: planned {want}, found {got}"
                for key, name, want, got in self.different]
        return out

    def notes(self) -> list[str]:
        """What was not compared, and why (not differences)."""
        return [f"{customer}: balance not compared ({why})"
                for customer, why in sorted(self.balances_skipped.items())]

def verify_plan(plan: MigrationPlan, target: Provider) -> VerifyReport:
    """Re-read the target and check every planned grant is there once, as planned.

    A target grant stands for a planned grant by its key or by its provenance (migrated from
    the same source grant and segment): a second one is a duplicate. One customer at a time:
    where each planned grant is in the plan is indexed on disk (``PlanIndex``), so memory holds
    one customer's planned keys and grants, never the whole plan or the whole target."""
    report = VerifyReport()
    index = PlanIndex()
    try:
        for position, item in plan.located():
            index.add(plan, position, item)
        index.built()
        report.checked = index.distinct_keys()
        per_key, totals = _per_customer(plan, target, index, report)
    finally:
        index.close()
    per_key.sort(key=lambda entry: entry[0])  # stable: each key's own entries in their order
    for _, kind, entry in per_key:
        assert entry is not None
        if kind == "missing":
            report.missing.append(entry[0])
        elif kind == "duplicated":
            report.duplicated.append(entry[0])
        else:
            report.different.append(entry)
    report.different += totals
    _compare_balances(plan, target, report)
    return report

_Entry = tuple[int, str, tuple[str, str, str, str]]


@dataclass(slots=True)
class _Found:
    """What verify compares of the first target grant standing for a planned key, and how many
    stand for it (not the grants themselves: a customer's may be many)."""

    amount: Money
    priority: Decimal | None
    customer_id: str
    count: int = 1

    @classmethod
    def of(cls, grant: CreditGrant) -> _Found:
        return cls(grant.amount, grant.priority, grant.customer_id)



def _per_customer(plan: MigrationPlan, target: Provider, index: PlanIndex,
                  report: VerifyReport) -> tuple[list[_Entry], list[tuple[str, str, str, str]]]:
    """Each customer's differences (by plan position) and differing totals; the totals found
    go to ``report``. Memory: one customer's planned keys, origins and grants at a time."""
    per_key: list[_Entry] = []  # by plan position
    totals: list[tuple[str, str, str, str]] = []
    for customer in index.customers():
        positions = index.positions(customer)
        origins = index.origins(customer)
        found: dict[str, _Found] = {}
        sums: dict[str, list[Decimal]] = defaultdict(list)
        for grant in target.list_grants(customer):
            key = _planned_key(grant, positions, origins)
            if key is not None and grant.status is not GrantStatus.VOIDED:
                if (seen := found.get(key)) is None:
                    found[key] = _Found.of(grant)
                else:
                    seen.count += 1
                sums[grant.amount.unit_key].append(grant.amount.amount)
        planned: dict[str, list[Decimal]] = defaultdict(list)
        for (key, position), item in zip(positions.items(), plan.items_at(positions.values()),
                                         strict=True):
            want = item.grant
            assert want is not None
            planned[want.amount.unit_key].append(want.amount.amount)
            stored = found.get(key)
            if stored is None:
                per_key.append((position, "missing", (key, "", "", "")))
                continue
            if stored.count > 1:
                per_key.append((position, "duplicated", (key, "", "", "")))
            for name, a, b in (("amount", want.amount, stored.amount),
                               ("priority", want.priority, stored.priority),
                               ("customer_id", want.customer_id, stored.customer_id)):
                if a != b and not (name == "priority" and a is None):
                    per_key.append((position, "different", (key, name, _text(a) or "", _text(b) or "")))
        for unit in sorted(planned):
            want_total = str(exact_sum(planned[unit]))
            got_total = exact_sum(sums[unit])
            report.totals.setdefault(customer, {})[unit] = {
                "planned": want_total, "found": str(got_total)}
            if Decimal(want_total) != got_total:
                totals.append((customer, f"total {unit}", want_total, str(got_total)))
    return per_key, totals

def _compare_balances(plan: MigrationPlan, target: Provider, report: VerifyReport) -> None:
    """The usable balance per customer and unit: on the source before, on the target now."""
    before = plan.header.source_balances
    if before is None or not target.supports("balance"):
        return
    report.balances_skipped.update(plan.header.source_balances_unavailable)
    for customer, units in sorted(before.items()):
        if customer in report.balances_skipped:
            continue
        try:
            after = {b.unit_key: b.usable.amount for b in target.get_balance(customer)}
        except BillingCreditsError as error:
            report.balances_skipped[customer] = (
                f"the target balance could not be read: {_describe(error)}")
            continue
        for unit in sorted(set(units) | set(after)):
            was = Decimal(units.get(unit, "0"))
            now = after.get(unit, Decimal(0))
            report.balances.setdefault(customer, {})[unit] = {
                "source_before": str(was), "target_after": str(now)}
            if was != now:
                report.different.append((customer, f"usable balance {unit}", str(was), str(now)))
