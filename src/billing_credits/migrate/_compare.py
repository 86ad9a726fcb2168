"""The burn-order comparison of a migration plan's two sides, and keeping a plan's burn order
(``preserve_burn_order``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from billing_credits._errors import BillingCreditsError
from billing_credits._ledger import Usage
from billing_credits._model import CreditGrant, Scope
from billing_credits._priority import PriorityDomain, preserve_order
from billing_credits.consumption._engine import ConsumptionOrder
from billing_credits.consumption._report import Comparison, Difference
from billing_credits.consumption._simulate import (
    SYNTHETIC_STEPS,
    _start,
    _windowed,
    compare,
    simulate,
    synthetic_note,
    synthetic_usage,
)

from ._plan import MigrationPlan, PlanItem

__all__ = ["compare_plan", "item_label", "preserve_burn_order", "source_side"]


def item_label(item: PlanItem) -> str:
    """The common name of a planned grant: its source grant, with the segment when split."""
    return item.source_id if item.segment is None else f"{item.source_id}#{item.segment}"

def source_side(item: PlanItem) -> CreditGrant:
    """What the source holds for a planned item: the planned grant with the source's customer,
    priority and scope (the fields a plan changes on the way)."""
    assert item.grant is not None
    update: dict[str, Any] = {"customer_id": item.customer_id, "id": item_label(item)}
    for change in item.changes:  # the first priority change is the plan's own, from the source
        if change.field == "priority" and "priority" not in update:
            update["priority"] = None if change.source is None else Decimal(change.source)
        elif change.field == "scope" and change.why == "scope map" and change.source:
            update["scope"] = Scope.model_validate_json(change.source)
    return item.grant.model_copy(update=update)

def compare_plan(
    plan: MigrationPlan,
    source_order: ConsumptionOrder,
    target_order: ConsumptionOrder,
    *,
    usage: Iterable[Usage] | None = None,
    held: Mapping[str, CreditGrant] | None = None,
    steps: int = SYNTHETIC_STEPS,
) -> Comparison:
    """Simulate a plan's source side and target side against the same usage, and compare.

    Usage is the synthetic stream (from the plan's creation time) unless given; it names
    source customers. ``held`` (idempotency key → the grant the target actually holds, as
    read by ``verify``) replaces the planned target grants where given.
    """
    items = [i for i in plan.to_create if i.grant is not None and i.key]
    labels: dict[str, str] = {}
    names: dict[str, str] = {}
    source_grants: dict[str, CreditGrant] = {}
    target_grants: dict[str, CreditGrant] = {}
    for item in items:
        assert item.grant is not None
        assert item.key is not None
        label = item_label(item)
        names[label] = item.grant.name or label
        src = source_side(item)
        source_grants[label] = src
        labels[label] = label
        planned = held.get(item.key, item.grant) if held is not None else item.grant
        if held is not None and item.key not in held:
            continue
        target_id = planned.id if held is not None and planned.id else item.key
        update: dict[str, Any] = {"id": target_id, "customer_id": item.customer_id}
        if any(c.field == "scope" and c.why == "scope map" for c in item.changes):
            # The scope map names the same usage in the target's terms (prices for products):
            # usage, named in the source's terms, applies to it as it did to the source grant.
            update["scope"] = src.scope
        dst = planned.model_copy(update=update)
        target_grants[target_id] = dst
        labels[target_id] = label
    now = plan.header.created_at
    source_list = [_windowed(g, now) for g in source_grants.values()]
    target_list = [_windowed(g, now) for g in target_grants.values()]
    stream = list(usage) if usage is not None else synthetic_usage(source_list, steps=steps, start=now)
    note = synthetic_note(steps, now) if usage is None else None  # the report says so
    source_sim = replace(simulate(source_list, stream, source_order), usage_note=note)
    target_sim = replace(simulate(target_list, stream, target_order), usage_note=note)
    return compare(source_sim, target_sim, source_grants={g.id or "": g for g in source_list},
                   target_grants={g.id or "": g for g in target_list}, labels=labels, names=names)

class _DraftLike(Protocol):
    """What ``preserve_burn_order`` needs of a planned grant (migration's drafts)."""

    source: CreditGrant
    segment: int | None
    grant: CreditGrant
    changes: list[Any]

def _label(draft: _DraftLike) -> str:
    base = draft.source.id or ""
    return base if draft.segment is None else f"{base}#{draft.segment}"

def _sides(group: Sequence[_DraftLike], now: datetime) -> tuple[list[CreditGrant], list[CreditGrant],
                                                                 dict[str, str]]:
    sources, targets, labels = [], [], {}
    for draft in group:
        label = _label(draft)
        sources.append(_windowed(draft.grant.model_copy(update={
            "id": label, "customer_id": draft.source.customer_id,
            "priority": draft.source.priority, "scope": draft.source.scope}), now))
        key = draft.grant.idempotency_key or label
        update: dict[str, Any] = {"id": key, "customer_id": draft.source.customer_id}
        if any(getattr(c, "field", None) == "scope" and getattr(c, "why", None) == "scope map"
               for c in draft.changes):
            update["scope"] = draft.source.scope  # as in compare_plan: the same usage
        targets.append(_windowed(draft.grant.model_copy(update=update), now))
        labels[label] = label
        labels[key] = label
    return sources, targets, labels

def _compare_group(group: Sequence[_DraftLike], source_order: ConsumptionOrder,
                   target_order: ConsumptionOrder, now: datetime,
                   steps: int) -> Difference | None:
    sources, targets, labels = _sides(group, now)
    stream = synthetic_usage(sources, steps=steps, start=now)
    result = compare(simulate(sources, stream, source_order), simulate(targets, stream, target_order),
                     source_grants={g.id or "": g for g in sources},
                     target_grants={g.id or "": g for g in targets}, labels=labels,
                     names={_label(d): d.grant.name or _label(d) for d in group})
    return result.differences[0] if result.differences else None

def preserve_burn_order(
    drafts: Sequence[_DraftLike],
    source_order: ConsumptionOrder,
    target_order: ConsumptionOrder,
    domain: PriorityDomain,
    *,
    target_name: str,
    now: datetime,
    steps: int = SYNTHETIC_STEPS,
) -> dict[str, str]:
    """Choose target priorities that make each customer's burn order the source's.

    Per target customer, the planned grants are simulated on both sides; where they differ,
    the grants get the target's priorities by their rank in the source's declared order (at
    the start of each grant's window), mapped onto ``domain`` keeping that order, and the
    simulation is run again. Drafts are changed in place, each change listed. Returns the
    customers (source ids) where no choice can make the orders identical, with why; their
    drafts keep the priorities they had and carry a ``consumption_order`` change naming it.
    """
    by_customer: dict[str, list[_DraftLike]] = defaultdict(list)
    for draft in drafts:
        by_customer[draft.grant.customer_id].append(draft)
    unfixable: dict[str, str] = {}
    for group in by_customer.values():
        before = _compare_group(group, source_order, target_order, now, steps)
        if before is None:
            continue
        customer = group[0].source.customer_id
        sources, _, _ = _sides(group, now)
        ranked = sorted(range(len(group)), key=lambda i: (
            source_order.sort_key(sources[i], at=max(now, _start(sources[i]))), sources[i].id or ""))
        ranks = {index: Decimal(rank) for rank, index in enumerate(ranked)}
        try:
            mapping = preserve_order(list(ranks.values()), domain, provider=target_name,
                                     group=f"customer {customer}")
        except BillingCreditsError as error:
            unfixable[customer] = f"{before.rule}; and {error}"
            _name_unfixable(group, unfixable[customer])
            continue
        old = [d.grant for d in group]
        for index, draft in enumerate(group):
            draft.grant = draft.grant.model_copy(update={"priority": mapping(ranks[index])})
        after = _compare_group(group, source_order, target_order, now, steps)
        if after is not None:
            for draft, grant in zip(group, old, strict=True):
                draft.grant = grant
            unfixable[customer] = (f"{after.rule} (even with priorities by {source_order.provider}"
                                   f"'s order: {target_name}'s rules do not allow it)")
            _name_unfixable(group, unfixable[customer])
            continue
        for index, (draft, grant) in enumerate(zip(group, old, strict=True)):
            new = mapping(ranks[index])
            if new != grant.priority:
                draft.grant = grant.as_new(priority=new)
                draft.changes = [c for c in draft.changes if getattr(c, "field", None) != "priority"]
                draft.changes.append(_change(
                    "priority", None if draft.source.priority is None else str(draft.source.priority),
                    str(new), f"order-preserving policy (burn order): rank {ranks[index]} in "
                    f"{source_order.provider}'s order; {before.rule}"))
            else:
                draft.grant = grant
    return unfixable

def _change(field_name: str, source: str | None, target: str | None, why: str) -> Any:
    from ._plan import Change

    return Change(field=field_name, source=source, target=target, why=why)

def _name_unfixable(group: Sequence[_DraftLike], why: str) -> None:
    for draft in group:
        draft.changes.append(_change(
            "consumption_order", None, None,
            f"no target priorities make this customer's burn order identical: {why}"))
