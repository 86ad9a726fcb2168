"""Migration of grants from one provider to another: plan, apply, verify.

- ``plan`` reads the source and decides, per grant (and per segment when the target holds
  fewer segments), to migrate it, with the exact neutral grant to create, or to skip it with
  a reason. Every change on the way (amount, priority, scope, customer) is listed as a
  ``Change`` with its reason. Nothing is written anywhere but the plan.
- ``apply`` creates the planned grants. Each carries an idempotency key: the application's own
  key when one source grant becomes one target grant (so a later create with it finds the
  migrated grant), otherwise one derived from (source provider, source grant id, segment).
  Before creating, apply lists each target customer's grants once and skips every planned key
  the target already holds: the target's own state decides, never the journal (a cache beside
  the plan) nor the vendor's idempotency memory, which may have forgotten the key. Creates run
  concurrently, at the target's rate limit, through ``target.record_only()`` (a migration never
  invoices). Source grants are retired (voided or expired) only when asked, and only after all
  of their target grants are confirmed; a source already ended counts as retired.
- ``verify`` re-reads the target and reconciles it with the plan, per customer and unit.
"""

from __future__ import annotations

import asyncio
import copy
import decimal
import hashlib
import json
import re
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ._errors import (
    BillingCreditsError,
    FieldProblem,
    MigrationError,
    NotFoundError,
    UnreadableGrant,
    UnsupportedOperationError,
)
from ._model import MIGRATED_KEY, CreditGrant, GrantStatus, Scope, Segment
from ._money import exact, exact_json, exact_sum
from ._priority import preserve_order
from ._provider import OnUnreadable, Provider
from ._secrets import redact

__all__ = [
    "PROVENANCE_KEYS",
    "ApplyReport",
    "Change",
    "MigrationError",
    "MigrationPlan",
    "PlanItem",
    "RetireOverlap",
    "VerifyReport",
    "apply_plan",
    "migration_key",
    "plan_migration",
    "verify_plan",
]

AmountMode = Literal["remaining", "original"]
PriorityPolicy = Literal["exact", "preserve-order"]
Retire = Literal["void", "expire"]


PROVENANCE_KEYS = ("migrated_from_provider", "migrated_from_grant", "migrated_from_segment",
                   MIGRATED_KEY)
"""Every metadata key ``plan_migration(provenance=True)`` may write on a target grant. A vendor
that accepts only registered keys registers these in its ``Provider.setup()``."""


def migration_key(source_provider: str, source_id: str, segment: int | None) -> str:
    """The idempotency key of one planned grant: the same inputs always give the same key."""
    digest = hashlib.sha256(f"{source_provider}\0{source_id}\0{segment}".encode()).hexdigest()
    return f"bcm-{digest[:48]}"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Change(_Record):
    """One field that differs between the source grant and what the target will hold."""

    field: str
    source: str | None
    target: str | None
    why: str


class PlanItem(_Record):
    """What happens to one source grant (or one of its segments)."""

    kind: Literal["item"] = "item"
    source_id: str
    segment: int | None = None
    customer_id: str
    action: Literal["migrate", "skip"]
    reason: str | None = None
    refused: bool = False
    grant: CreditGrant | None = None
    changes: tuple[Change, ...] = ()

    @model_validator(mode="after")
    def _migrate_has_a_keyed_grant(self) -> PlanItem:
        # An edited plan must not reach apply with nothing (or nothing keyed) to create.
        if self.action == "migrate" and (self.grant is None or not self.grant.idempotency_key):
            raise ValueError("a 'migrate' item needs its grant, with its idempotency_key")
        return self

    @property
    def key(self) -> str | None:
        return self.grant.idempotency_key if self.grant is not None else None


class PlanHeader(_Record):
    kind: Literal["header"] = "header"
    source: str
    target: str
    target_identity: str | None = None
    """``target.identity()`` when planned: apply refuses any other target account or store."""
    source_identity: str | None = None
    retire_overlaps: dict[str, str] = {}
    """For each way of retiring (``void``, ``expire``) after which the source's credit stays
    spendable a while (``Provider.retire_effective_at``): how long, had it been retired when
    planned. Apply reports each actual window."""
    created_at: datetime
    amount_mode: AmountMode
    priority_policy: PriorityPolicy
    strict: bool
    remaining_source: str | None = None
    """Where the remaining amounts came from (``Provider.remaining_source``), in remaining mode."""
    source_balances: dict[str, dict[str, str]] | None = None
    """Per target customer and unit, the usable balance on the source when planning (where the
    source reports balances): ``verify`` compares the target's with it."""


@dataclass
class MigrationPlan:
    """A reviewable plan: a header, one ``PlanItem`` per decision, and totals."""

    header: PlanHeader
    items: list[PlanItem] = field(default_factory=list)

    @property
    def to_create(self) -> list[PlanItem]:
        return [i for i in self.items if i.action == "migrate"]

    @property
    def refusals(self) -> list[PlanItem]:
        return [i for i in self.items if i.refused]

    def totals(self) -> dict[str, dict[str, dict[str, str]]]:
        """Per target customer and unit: the amount planned and the number of grants."""
        sums: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
        for item in self.to_create:
            assert item.grant is not None
            sums[item.grant.customer_id][item.grant.amount.unit_key].append(item.grant.amount.amount)
        return {
            customer: {unit: {"planned": str(exact_sum(values)), "grants": str(len(values))}
                       for unit, values in sorted(units.items())}
            for customer, units in sorted(sums.items())
        }

    def change_counts(self) -> dict[str, int]:
        """Each kind of change (field and reason) with the number of plan items it touches:
        the same reason is counted, not repeated once per grant."""
        counts: Counter[str] = Counter()
        for item in self.items:
            for change in item.changes:
                counts[f"{_field_kind(change.field)}: {change.why}"] += 1
        return dict(sorted(counts.items()))

    def summary(self) -> dict[str, Any]:
        skipped: dict[str, int] = defaultdict(int)
        for item in self.items:
            if item.action == "skip" and not item.refused:
                skipped[item.reason or ""] += 1
        refused: Counter[str] = Counter(i.reason or "" for i in self.refusals)
        return {
            "kind": "summary",
            "source": self.header.source,
            "target": self.header.target,
            "target_identity": self.header.target_identity,
            "retire_overlaps": self.header.retire_overlaps,
            "grants_to_create": len(self.to_create),
            "skipped": dict(sorted(skipped.items())),
            "refused": len(self.refusals),
            "refusal_reasons": dict(sorted(refused.items())),
            "changes": sum(len(i.changes) for i in self.items),
            "change_reasons": self.change_counts(),
            "totals": self.totals(),
        }

    def write(self, out: IO[str]) -> None:
        """JSON lines: the header, each item, the summary."""
        out.write(self.header.model_dump_json() + "\n")
        for item in self.items:
            out.write(item.model_dump_json(exclude={"grant": {"raw"}}) + "\n")
        out.write(json.dumps(self.summary(), sort_keys=True) + "\n")

    def save(self, path: str | Path) -> None:
        """Write the plan atomically: a reader never sees half of it."""
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")
        with partial.open("w") as out:
            self.write(out)
        partial.replace(path)

    def fingerprint(self) -> str:
        """A digest of what the plan creates: the journal is tied to it."""
        digest = hashlib.sha256(f"{self.header.source}\0{self.header.target}".encode())
        for item in self.to_create:
            assert item.grant is not None
            digest.update(item.grant.model_dump_json(exclude={"raw"}).encode())
        return digest.hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> MigrationPlan:
        """Read a plan written by ``save``, checking it is whole (its summary agrees)."""
        header: PlanHeader | None = None
        summary: dict[str, Any] | None = None
        items = []
        try:
            with Path(path).open() as lines:
                for number, line in enumerate(lines, start=1):
                    data = exact_json(line)
                    kind = data.get("kind") if isinstance(data, dict) else None
                    if kind == "header":
                        header = PlanHeader.model_validate(data)
                    elif kind == "item":
                        items.append(PlanItem.model_validate(data))
                    elif kind == "summary":
                        summary = data
                    else:
                        raise MigrationError(f"{path}:{number}: not a plan line")
        except (BillingCreditsError, ValidationError) as error:
            if isinstance(error, MigrationError):
                raise
            raise MigrationError(f"{path}: not a valid plan: {error}") from None
        if header is None or summary is None:
            raise MigrationError(f"{path} is not a whole migration plan (header or summary missing)")
        plan = cls(header, items)
        # Compare what the stored summary holds (a plan written before a summary field was
        # added still loads); the counts and totals must always be there and agree.
        computed = json.loads(json.dumps(plan.summary(), sort_keys=True, default=str))
        stored = json.loads(json.dumps(summary, sort_keys=True, default=str))
        if any(name not in stored for name in ("grants_to_create", "refused", "totals")) or any(
                computed.get(name) != value for name, value in stored.items()):
            raise MigrationError(f"{path}: the items do not add up to its summary; plan again")
        return plan


CustomerMap = Mapping[str, str] | Callable[[str], str | None]
ScopeMap = Mapping[str, Iterable[str]] | Callable[[Scope], Scope]


def _customer(mapping: CustomerMap | None, customer_id: str) -> str | None:
    if mapping is None:
        return customer_id
    if callable(mapping):
        return mapping(customer_id)
    return mapping.get(customer_id)


def _map_scope(mapping: ScopeMap | None, scope: Scope) -> Scope:
    """Apply a product → prices map (or a callable) to a scope, validated; other parts kept."""
    if mapping is None:
        return scope
    if callable(mapping):
        return Scope.model_validate(mapping(scope).model_dump())
    if not scope.product_ids:
        return scope
    missing = [p for p in scope.product_ids if not list(mapping.get(p, ()))]
    if missing:
        raise MigrationError(f"no prices mapped for product(s) {', '.join(missing)}")
    prices = tuple(dict.fromkeys(p for product in scope.product_ids for p in mapping[product]))
    return Scope.model_validate({**scope.model_dump(), "product_ids": (), "price_ids": prices})


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _field_kind(name: str) -> str:
    """``schedule.2.amount`` → ``schedule.*.amount``: one kind of change across segments."""
    return re.sub(r"\.\d+\.", ".*.", name)


@dataclass
class _Draft:
    source: CreditGrant
    segment: int | None
    grant: CreditGrant
    changes: list[Change]
    kept_key: str | None = None


def plan_migration(
    source: Provider,
    target: Provider,
    *,
    customers: Iterable[str] | None = None,
    amount_mode: AmountMode = "remaining",
    customer_map: CustomerMap | None = None,
    scope_map: ScopeMap | None = None,
    priority_policy: PriorityPolicy = "exact",
    strict: bool = True,
    provenance: bool = True,
    now: datetime | None = None,
) -> MigrationPlan:
    """Read the source and plan every grant's migration to the target. Writes nothing.

    ``amount_mode="remaining"`` (default) migrates what is left (the grant's ``balance``),
    allotted to the windows still to come first and the current one last, since usage draws
    on the current window; ``"original"`` migrates the granted amounts of every window not yet
    ended. ``priority_policy="preserve-order"`` maps each target customer's priorities onto
    the target's domain keeping their order; where both providers declare a consumption order,
    it also simulates each customer on both sides and, where the target's rules would burn the
    grants in another order (a tie broken differently), gives them priorities in the source's
    order, naming the customers where no choice can (a ``consumption_order`` change).
    ``strict``: refusals make ``apply`` stop before creating anything. ``provenance`` adds
    ``migrated_from_*`` metadata keys naming the source.
    """
    now = now or datetime.now(UTC)
    header = PlanHeader(source=source.name, target=target.name,
                        target_identity=target.identity(), source_identity=source.identity(),
                        retire_overlaps=_retire_overlaps(source, now), created_at=now,
                        amount_mode=amount_mode, priority_policy=priority_policy, strict=strict)
    plan = MigrationPlan(header)
    recorder = _recorder(target)
    drafts: list[_Draft] = []
    seen: dict[str, None] = {}
    unreadable: list[UnreadableGrant] = []
    for grant in _source_grants(source, customers, unreadable.append):
        seen[grant.customer_id] = None
        try:
            skipped = _decide(grant, source.name, target, amount_mode, customer_map, scope_map,
                              provenance, now, drafts)
        except (BillingCreditsError, ValueError) as error:  # a grant the planner cannot place
            skipped = _skip(grant, " ".join(str(error).split()), refused=True)
        if skipped is not None:
            plan.items.append(skipped)
    for entry in unreadable:  # never dropped: each is a refusal naming the vendor's id
        plan.items.append(PlanItem(
            source_id=entry.vendor_id or "", customer_id="", action="skip", refused=True,
            reason=f"unreadable {entry.provider} item {entry.vendor_id or '(no id)'}: "
                   f"{redact(entry.problem)}"))
    _shared_keys(drafts, source.name, provenance)
    if priority_policy == "preserve-order":
        drafts = _preserve_order(drafts, target)
        if source.consumption_order is not None and target.consumption_order is not None:
            from ._simulate import preserve_burn_order  # ties broken alike, by simulation

            preserve_burn_order(drafts, source.consumption_order, target.consumption_order,
                                target.capabilities.priority, target_name=target.name, now=now)
    for draft in drafts:
        plan.items.append(_finish(draft, target, recorder))
    if amount_mode == "remaining":
        migrated = {item.source_id for item in plan.to_create}
        balances = _source_balances(source, seen, customer_map, migrated)
        plan.header = header.model_copy(update={
            "remaining_source": f"{source.name}: {source.remaining_source}",
            "source_balances": balances})
    return plan


def _retire_overlaps(source: Provider, now: datetime) -> dict[str, str]:
    found = {}
    for how in ("void", "expire"):
        if source.capabilities.supports(how):
            ends = source.retire_effective_at(how, now)
            if ends > now:
                found[how] = (f"retiring by {how} leaves the source credit spendable until "
                              f"{ends.isoformat()} if done at {now.isoformat()} "
                              f"({(ends - now).total_seconds():g} s after), while the target "
                              "grants already exist")
    return found


def _recorder(target: Provider) -> Provider | None:
    """The target as migration creates through it (never invoicing), or None when it cannot
    record a paid amount without invoicing it."""
    try:
        return target.record_only()
    except UnsupportedOperationError:
        return None


def _kept(provenance: bool) -> str:
    return f"; the original is kept in metadata {MIGRATED_KEY}" if provenance else ""


def _shared_keys(drafts: list[_Draft], source_name: str, provenance: bool) -> None:
    """An application key carried by several source grants cannot name each target grant:
    those get derived keys, and the change says why."""
    kept = Counter(d.kept_key for d in drafts if d.kept_key is not None)
    for draft in drafts:
        if draft.kept_key is None or kept[draft.kept_key] < 2:
            continue
        key = migration_key(source_name, draft.source.id or "", draft.segment)
        draft.grant = draft.grant.as_new(idempotency_key=key)
        draft.changes.append(Change(
            field="idempotency_key", source=draft.kept_key, target=key,
            why=f"the key is on {kept[draft.kept_key]} source grants; each target grant gets a "
                f"derived key{_kept(provenance)} (a create with the original key on the target "
                "would not find them)"))
        draft.kept_key = None


def _source_balances(source: Provider, customers: Iterable[str],
                     customer_map: CustomerMap | None,
                     migrated: set[str]) -> dict[str, dict[str, str]] | None:
    """Usable balances on the source, per target customer and unit (None: not reported).

    Where the source splits a balance by grant, only the grants the plan migrates count: a
    grant refused or skipped is not expected on the target."""
    if not source.supports("balance"):
        return None
    found: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    for customer in customers:
        target_customer = _customer(customer_map, customer)
        if not target_customer:
            continue
        for balance in source.get_balance(customer):
            usable = balance.usable.amount
            if balance.parts:
                usable = exact_sum(p.usable for p in balance.parts if p.grant_id in migrated)
            found[target_customer][balance.unit_key].append(usable)
    return {customer: {unit: str(exact_sum(values)) for unit, values in sorted(units.items())}
            for customer, units in sorted(found.items())}


def _source_grants(source: Provider, customers: Iterable[str] | None,
                   on_unreadable: OnUnreadable | None = None) -> Iterator[CreditGrant]:
    if customers is None:
        yield from source.list_grants(on_unreadable=on_unreadable)
        return
    for customer in dict.fromkeys(customers):
        yield from source.list_grants(customer, on_unreadable=on_unreadable)


def _skip(grant: CreditGrant, reason: str, *, refused: bool = False,
          segment: int | None = None) -> PlanItem:
    return PlanItem(source_id=grant.id or "", segment=segment, customer_id=grant.customer_id,
                    action="skip", reason=reason, refused=refused)


def _decide(
    grant: CreditGrant, source_name: str, target: Provider, amount_mode: AmountMode,
    customer_map: CustomerMap | None, scope_map: ScopeMap | None, provenance: bool,
    now: datetime, drafts: list[_Draft],
) -> PlanItem | None:
    """Skip the grant (returned) or add its drafts (one per target grant) to ``drafts``."""
    if grant.status is GrantStatus.VOIDED:
        return _skip(grant, "voided")
    if grant.status is GrantStatus.EXPIRED or (grant.expires_at and grant.expires_at <= now):
        return _skip(grant, "expired")
    if amount_mode == "remaining":
        if grant.balance is None:
            return _skip(grant, f"{source_name} reports no remaining balance; plan with "
                         "amount_mode='original' to migrate granted amounts", refused=True)
        if grant.balance.amount <= 0:
            return _skip(grant, "nothing left")
    target_customer = _customer(customer_map, grant.customer_id)
    if not target_customer:
        return _skip(grant, "customer not in the customer map", refused=True)
    scope = _map_scope(scope_map, grant.scope)

    changes = []
    if target_customer != grant.customer_id:
        changes.append(Change(field="customer_id", source=grant.customer_id,
                              target=target_customer, why="customer map"))
    if scope != grant.scope:
        changes.append(Change(field="scope", source=grant.scope.model_dump_json(),
                              target=scope.model_dump_json(), why="scope map"))
    metadata = dict(grant.metadata)
    if provenance:
        metadata.update({"migrated_from_provider": source_name,
                         "migrated_from_grant": grant.id or ""})
    original = grant.idempotency_key
    if original is not None and provenance:
        metadata[MIGRATED_KEY] = original
    allotted = _allot(grant, amount_mode, now, changes)
    common: dict[str, Any] = {"customer_id": target_customer, "scope": scope}
    max_segments = target.capabilities.max_segments
    if grant.schedule is None or max_segments is None or len(allotted) <= max_segments:
        # One target grant: it takes over the application's own key, so that a create the
        # application repeats with it on the target finds this grant.
        window = _window(grant, allotted)
        key = original or migration_key(source_name, grant.id or "", None)
        new = grant.as_new(**common, **window, metadata=metadata, idempotency_key=key)
        drafts.append(_Draft(grant, None, new, changes, kept_key=original))
        return None
    for index, segment in allotted:  # one target grant per window
        key = migration_key(source_name, grant.id or "", index)
        extra = {"migrated_from_segment": str(index)} if provenance else {}
        new = grant.as_new(
            **common, amount=grant.amount.with_amount(segment.amount), schedule=None,
            effective_at=segment.starts_at, expires_at=segment.ends_before,
            metadata={**metadata, **extra}, idempotency_key=key)
        split = [Change(
            field="schedule", source=f"{len(grant.segments)} segments",
            target=f"segment {index} as its own grant",
            why=f"{target.name} holds at most {max_segments} segment(s) per grant")]
        if original is not None:
            split.append(Change(
                field="idempotency_key", source=original, target=key,
                why=f"split into one grant per window, each with a derived key{_kept(provenance)} "
                    "(a create with the original key on the target would not find these grants)"))
        drafts.append(_Draft(grant, index, new, [*changes, *split]))
    return None


def _allot(
    grant: CreditGrant, amount_mode: AmountMode, now: datetime, changes: list[Change]
) -> list[tuple[int, Segment]]:
    """The windows to grant on the target, each with its amount, recording every reduction.

    Ended windows are gone. In ``remaining`` mode the balance fills the latest windows first
    (usage draws on the current one); a balance above what the live windows hold is refused.
    """
    live: list[tuple[int, Segment]] = []
    for index, segment in enumerate(grant.segments):
        if segment.ends_before is not None and segment.ends_before <= now:
            changes.append(Change(field=f"schedule.{index}.amount", source=str(segment.amount),
                                  target=None, why="window ended"))
        else:
            live.append((index, segment))
    if amount_mode == "original":
        return live
    assert grant.balance is not None
    remaining = grant.balance.amount
    held = exact_sum(s.amount for _, s in live)
    if remaining > held:
        raise MigrationError(f"balance {remaining} exceeds the {held} its live windows hold")
    allotted: list[tuple[int, Segment]] = []
    with decimal.localcontext(exact()):
        for index, segment in reversed(live):
            amount = min(segment.amount, remaining)
            remaining -= amount
            if amount != segment.amount:
                field = "amount" if grant.schedule is None else f"schedule.{index}.amount"
                changes.append(Change(field=field, source=str(segment.amount),
                                      target=str(amount) if amount else None,
                                      why="remaining balance"))
            if amount > 0:
                allotted.append((index, Segment(amount=amount, starts_at=segment.starts_at,
                                                ends_before=segment.ends_before)))
    allotted.reverse()
    return allotted


def _window(grant: CreditGrant, allotted: list[tuple[int, Segment]]) -> dict[str, Any]:
    """Amount, window and schedule of one target grant holding every allotted window."""
    segments = [segment for _, segment in allotted]
    fields: dict[str, Any] = {
        "amount": grant.amount.with_amount(exact_sum(s.amount for s in segments)),
    }
    if grant.schedule is None:
        return fields
    if len(segments) == 1:
        fields.update(schedule=None, effective_at=segments[0].starts_at,
                      expires_at=segments[0].ends_before)
    else:
        fields.update(schedule=tuple(segments), effective_at=segments[0].starts_at,
                      expires_at=segments[-1].ends_before)
    return fields


def _preserve_order(drafts: list[_Draft], target: Provider) -> list[_Draft]:
    """Per target customer, map priorities onto the target's domain keeping their order."""
    domain = target.capabilities.priority
    by_customer: dict[str, list[_Draft]] = defaultdict(list)
    for draft in drafts:
        by_customer[draft.grant.customer_id].append(draft)
    result = []
    for customer, group in by_customer.items():
        values = [d.grant.priority for d in group if d.grant.priority is not None]
        try:
            mapping = preserve_order(values, domain, provider=target.name,
                                     group=f"customer {customer}")
        except BillingCreditsError:
            result += group  # left for the exact check to refuse, naming each grant
            continue
        for draft in group:
            old = draft.grant.priority
            if old is not None and mapping(old) != old:
                draft.changes.append(Change(
                    field="priority", source=str(old), target=str(mapping(old)),
                    why=f"order-preserving policy ({mapping.method}) onto {domain.describe()}"))
                draft.grant = draft.grant.as_new(priority=mapping(old))
            result.append(draft)
    return result


def _align(draft: _Draft, target: Provider) -> str | None:
    """Align the draft's times to the target's resolution in the safe direction: starts
    later, ends earlier, so the target never holds credit outside the source's window. Each
    moved time is a ``Change``; a window too short to survive is the returned refusal."""
    step = target.capabilities.time_resolution
    if step <= timedelta(microseconds=1):
        return None
    grant = draft.grant
    why = f"{target.name} holds times in steps of {_step(step)}: moved {{}} (the safe direction)"
    moved: dict[str, Any] = {}

    def up(name: str, moment: datetime) -> datetime:
        aligned = moment + (-(moment - _EPOCH) % step)
        if aligned != moment:
            draft.changes.append(Change(field=name, source=moment.isoformat(),
                                        target=aligned.isoformat(), why=why.format("later")))
        return aligned

    def down(name: str, moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        aligned = moment - (moment - _EPOCH) % step
        if aligned != moment:
            draft.changes.append(Change(field=name, source=moment.isoformat(),
                                        target=aligned.isoformat(), why=why.format("earlier")))
        return aligned

    if grant.schedule is not None:
        segments = []
        for i, segment in enumerate(grant.schedule):
            start = up(f"schedule.{i}.starts_at", segment.starts_at)
            end = down(f"schedule.{i}.ends_before", segment.ends_before)
            if end is not None and end <= start:
                return f"window {i} is shorter than {target.name}'s time resolution ({_step(step)})"
            segments.append(segment.model_copy(update={"starts_at": start, "ends_before": end}))
        moved = {"schedule": tuple(segments), "effective_at": segments[0].starts_at,
                 "expires_at": segments[-1].ends_before}
    else:
        begin = up("effective_at", grant.effective_at) if grant.effective_at else None
        finish = down("expires_at", grant.expires_at)
        if begin is not None and finish is not None and finish <= begin:
            return f"the window is shorter than {target.name}'s time resolution ({_step(step)})"
        moved = {"effective_at": begin, "expires_at": finish}
    if any(getattr(grant, name) != value for name, value in moved.items()):
        draft.grant = grant.as_new(**moved)
    return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _step(step: timedelta) -> str:
    return f"{step.total_seconds():g} s"


def _finish(draft: _Draft, target: Provider, recorder: Provider | None) -> PlanItem:
    base: dict[str, Any] = {"source_id": draft.source.id or "", "segment": draft.segment,
                            "customer_id": draft.source.customer_id}
    if short := _align(draft, target):
        return PlanItem(**base, changes=tuple(draft.changes), action="skip", reason=short,
                        refused=True, grant=draft.grant)
    paid = draft.grant.paid_amount
    if target.capabilities.invoices_paid_amount and paid is not None and paid.amount > 0:
        if recorder is None:
            return PlanItem(**base, changes=tuple(draft.changes), action="skip", refused=True,
                            grant=draft.grant, reason=(
                                f"{target.name} would invoice the paid amount {paid} again and "
                                "cannot record it only: configure it not to invoice"))
        draft.changes.append(Change(
            field="paid_amount", source=str(paid), target=str(paid),
            why="recorded only, not invoiced (it was paid for on the source)"))
    creator = recorder or target
    problems: list[FieldProblem] = creator.capabilities.check(draft.grant)
    if not problems:
        try:
            draft.changes += [
                Change(field=a.field, source=a.requested, target=a.stored,
                       why=f"{target.name}: {a.reason}")
                for a in creator.preview(draft.grant)]
        except BillingCreditsError as error:
            problems = [FieldProblem("", str(error))]
    base["changes"] = tuple(draft.changes)
    if problems:
        reason = f"{target.name} cannot represent: " + "; ".join(str(p) for p in problems)
        return PlanItem(**base, action="skip", reason=reason, refused=True, grant=draft.grant)
    try:
        creator.check(draft.grant)
    except BillingCreditsError as error:
        return PlanItem(**base, action="skip", reason=str(error), refused=True, grant=draft.grant)
    return PlanItem(**base, action="migrate", grant=draft.grant)


# -- apply ----------------------------------------------------------------------------------


class Journal:
    """What apply has done, in SQLite beside the plan: keys found or created, retired sources.

    Only a cache: apply reads the target before creating and trusts what it finds there, so a
    deleted journal, or one claiming a grant the target does not hold, never makes a duplicate
    or a skip. A journal belongs to one plan and one target (``Provider.identity()``): opening
    it for another is refused, so a rehearsal's journal is never mixed with a real run's.
    """

    def __init__(self, path: str | Path, *, plan: str, target: str) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS about (name TEXT PRIMARY KEY, value TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS created (key TEXT PRIMARY KEY, "
                         "target_id TEXT NOT NULL, at TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS retired (source_id TEXT PRIMARY KEY, "
                         "how TEXT NOT NULL, at TEXT NOT NULL)")
        for name, value in (("plan", plan), ("target", target)):
            self._db.execute("INSERT OR IGNORE INTO about VALUES (?, ?)", (name, value))
            stored = self._db.execute("SELECT value FROM about WHERE name = ?", (name,)).fetchone()[0]
            if stored != value:
                self._db.close()
                raise MigrationError(
                    f"journal {path} was written for another {name} ({stored[:40]}), by an "
                    "earlier apply. A journal only makes re-runs cheap (apply re-reads the "
                    f"target, so nothing is created twice without it): delete {path}, or give "
                    "another journal file (--journal FILE; apply_plan(journal=...)), and run "
                    "apply again")

    def created(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, target_id FROM created").fetchall())

    def retired(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT source_id FROM retired")}

    def record_created(self, key: str, target_id: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO created VALUES (?, ?, ?)",
                             (key, target_id, datetime.now(UTC).isoformat()))

    def record_retired(self, source_id: str, how: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO retired VALUES (?, ?, ?)",
                             (source_id, how, datetime.now(UTC).isoformat()))

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class RetireOverlap:
    """A time during which a retired source grant's credit and its target grants' credit were
    both spendable: from when the target credit became usable until the source credit ended
    (``Provider.retire_effective_at``)."""

    source_id: str
    starts: datetime
    ends: datetime

    def __str__(self) -> str:
        return (f"{self.source_id}: source and target credit both spendable from "
                f"{self.starts.isoformat()} until {self.ends.isoformat()}")


@dataclass
class ApplyReport:
    """What one apply run did.

    ``created`` counts grants this run made; ``already_done`` the planned grants the target
    already held (found when listing it, or a create the vendor answered with an existing
    grant), so concurrent or repeated runs add up to the plan, never more.
    """

    created: int = 0
    already_done: int = 0
    retired: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    overlaps: list[RetireOverlap] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "already_done": self.already_done,
                "retired": self.retired, "failed": len(self.failed),
                "overlaps": [str(o) for o in self.overlaps], "seconds": round(self.seconds, 3)}


Progress = Callable[[int, int], None]


def _describe(error: BaseException) -> str:
    """One line for any failure; not a project error: its type is named too (secrets removed)."""
    text = " ".join(str(error).split())
    if not isinstance(error, BillingCreditsError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return redact(text)


def _creator(plan: MigrationPlan, target: Provider) -> Provider:
    """``target.record_only()``; refused before any create if it cannot record a paid amount
    that a planned grant carries without invoicing it.

    Apply has listed every target customer's grants before creating, so the lookup a keyed
    create makes first on a vendor that forgets keys (``find_existing_before_create``) would
    only repeat that listing once per grant: the creator is a copy with it off. A grant made
    after the listing (by a concurrent apply) is recent, and the vendor still knows its key.
    """
    recorder = _recorder(target)
    if recorder is not None:
        return _without_lookup(recorder)
    paid = [i for i in plan.to_create
            if i.grant is not None and i.grant.paid_amount is not None
            and i.grant.paid_amount.amount > 0]
    if paid:
        raise MigrationError(
            f"{target.name} invoices the paid amount of {len(paid)} planned grant(s) and cannot "
            "record it only: a migration never invoices credit paid for on the source; "
            "configure the target not to invoice, then apply")
    return _without_lookup(target)


def _without_lookup(provider: Provider) -> Provider:
    if provider.capabilities.idempotency_key_memory is None or not (
            provider.find_existing_before_create):
        return provider
    quiet = copy.copy(provider)
    quiet.find_existing_before_create = False
    return quiet


def _check_endpoints(plan: MigrationPlan, target: Provider, source: Provider | None,
                     retire: Retire | None) -> None:
    header = plan.header
    if target.name != header.target:
        raise MigrationError(f"the plan targets {header.target!r}, not {target.name!r}")
    if header.target_identity is not None and target.identity() != header.target_identity:
        raise MigrationError(
            f"the plan was made for target {header.target_identity}, but apply was given "
            f"{target.identity()}: nothing created. Give apply the same target settings as the "
            "plan (-T ...), or plan again against this target")
    if plan.header.strict and plan.refusals:
        raise MigrationError(
            f"the plan has {len(plan.refusals)} refusal(s) and is strict: fix them (customer "
            "map, scope map, priority policy) and plan again, or plan with strict=False")
    if retire is not None:
        if source is None or source.name != header.source:
            raise MigrationError(f"retiring needs the source provider {header.source!r}")
        if header.source_identity is not None and source.identity() != header.source_identity:
            raise MigrationError(
                f"the plan was made from source {header.source_identity}, but apply was given "
                f"{source.identity()} to retire from: nothing created. Give the same source "
                "settings as the plan (-F ...)")


async def apply_plan(
    plan: MigrationPlan,
    target: Provider,
    *,
    journal: str | Path,
    source: Provider | None = None,
    retire: Retire | None = None,
    concurrency: int = 16,
    progress: Progress | None = None,
) -> ApplyReport:
    """Create the plan's grants on ``target``; safe to run again, after any interruption.

    Refuses, before creating anything, a target other than the plan's (``identity()``) and a
    strict plan with refusals. Then lists each target customer's grants once: a planned key the
    target holds is already there (whatever the journal says, and however long ago the vendor
    forgot the key); the others are created through ``target.record_only()``. A failure of one
    item (of any kind) is recorded in the report, never raised. With ``retire``, a source grant
    is voided or expired on ``source`` only when every item planned for it was migrated (none
    skipped or refused) and each of its target grants reads back as planned; a source grant
    already ended counts as retired.
    """
    _check_endpoints(plan, target, source, retire)
    creator = _creator(plan, target)
    loop = asyncio.get_running_loop()
    started = loop.time()
    book = Journal(journal, plan=plan.fingerprint(), target=target.identity())
    report = ApplyReport()
    try:
        gate = asyncio.Semaphore(max(concurrency, 1))
        found = await _reconcile(plan, target, gate, report)
        for key, grant in found.items():
            await asyncio.to_thread(book.record_created, key, grant.id or "")
        unreadable = {key for key, _ in report.failed}
        todo = [i for i in plan.to_create if i.key not in found and i.key not in unreadable]
        report.already_done = len(found)
        total = len(plan.to_create)
        finished = report.already_done
        if progress:
            progress(finished, total)

        async def create(item: PlanItem) -> None:
            nonlocal finished
            assert item.grant is not None
            assert item.key is not None
            try:
                async with gate:
                    created = await creator.acreate_grant(item.grant)
                await asyncio.to_thread(book.record_created, item.key, created.id or "")
            except Exception as error:  # any one item's failure is reported, never raised
                report.failed.append((item.key, _describe(error)))
                return
            found[item.key] = created
            if created.replayed:
                report.already_done += 1
            else:
                report.created += 1
            finished += 1
            if progress:
                progress(finished, total)

        await asyncio.gather(*(create(item) for item in todo))
        if retire is not None and source is not None:
            await _retire(plan, source, retire, found, book, report)
    finally:
        book.close()
        report.seconds = loop.time() - started
    return report


async def _reconcile(plan: MigrationPlan, target: Provider, gate: asyncio.Semaphore,
                     report: ApplyReport) -> dict[str, CreditGrant]:
    """The planned grants the target already holds, by key: one listing per target customer.

    A customer whose grants cannot all be read is not touched: each of its planned items is
    reported failed (creating without knowing what is there could duplicate a grant).
    """
    wanted: dict[str, list[str]] = defaultdict(list)
    for item in plan.to_create:
        assert item.grant is not None
        assert item.key is not None
        wanted[item.grant.customer_id].append(item.key)
    found: dict[str, CreditGrant] = {}

    async def listing(customer: str, keys: list[str]) -> None:
        planned = set(keys)
        seen: dict[str, CreditGrant] = {}
        try:
            async with gate:
                async for grant in target.alist_grants(customer):
                    if grant.idempotency_key in planned:
                        seen.setdefault(grant.idempotency_key, grant)
        except Exception as error:
            why = f"not created: the target's grants of customer {customer} could not be read " \
                  f"({_describe(error)}); run apply again"
            report.failed.extend((key, why) for key in keys)
            return
        found.update(seen)

    await asyncio.gather(*(listing(c, keys) for c, keys in wanted.items()))
    return found


def _ended(grant: CreditGrant) -> bool:
    return grant.status in (GrantStatus.VOIDED, GrantStatus.EXPIRED)


async def _retire(plan: MigrationPlan, source: Provider, how: Retire,
                  found: Mapping[str, CreditGrant], book: Journal, report: ApplyReport) -> None:
    """Void or expire each source grant whose every planned item is confirmed on the target.

    A source grant already ended (voided or expired, or no longer found: a vendor that does not
    list voided grants) counts as retired: a crash between retiring it and journalling that
    must not make every later run fail. When the source's credit stops later than the moment
    of retiring (``retire_effective_at``), the report names the overlap.
    """
    by_source: dict[str, list[PlanItem]] = defaultdict(list)
    for item in plan.items:
        by_source[item.source_id].append(item)
    retired = book.retired()
    for source_id, items in by_source.items():
        if source_id in retired or any(i.action != "migrate" for i in items):
            continue  # a skipped or refused part stays with the source
        if any(i.key not in found for i in items):
            continue
        try:
            for item in items:
                assert item.grant is not None
                assert item.key is not None
                stored = found[item.key]
                if (stored.amount != item.grant.amount or stored.customer_id != item.grant.customer_id
                        or stored.status is GrantStatus.VOIDED):
                    raise MigrationError(f"target grant {stored.id} does not hold what was planned")
            now = datetime.now(UTC)
            if not await _already_ended(source, source_id):
                ends = source.retire_effective_at(how, now)
                try:
                    await (source.avoid_grant(source_id) if how == "void"
                           else source.aexpire_grant(source_id))
                except Exception:
                    if not await _already_ended(source, source_id):
                        raise
                if ends > now:
                    starts = min((found[i.key].created_at or now) for i in items if i.key)
                    report.overlaps.append(RetireOverlap(source_id, min(starts, now), ends))
        except Exception as error:
            report.failed.append((source_id, f"retire: {_describe(error)}"))
            continue
        await asyncio.to_thread(book.record_retired, source_id, how)
        report.retired += 1


async def _already_ended(source: Provider, source_id: str) -> bool:
    try:
        return _ended(await source.aget_grant(source_id))
    except NotFoundError:
        return True  # planned from this source, now gone: voided (some vendors hide those)


# -- verify ---------------------------------------------------------------------------------


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

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.different)

    def lines(self) -> list[str]:
        out = [f"missing {key}" for key in self.missing]
        out += [f"duplicated {key}" for key in self.duplicated]
        out += [f"{key} {name}: planned {want}, found {got}"
                for key, name, want, got in self.different]
        return out


def verify_plan(plan: MigrationPlan, target: Provider) -> VerifyReport:
    """Re-read the target and check every planned grant is there once, as planned."""
    report = VerifyReport()
    planned = {i.key: i.grant for i in plan.to_create if i.key and i.grant}
    customers = sorted({g.customer_id for g in planned.values()})
    found: dict[str, list[CreditGrant]] = defaultdict(list)
    sums: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    for customer in customers:
        for grant in target.list_grants(customer):
            if grant.idempotency_key in planned and grant.status is not GrantStatus.VOIDED:
                found[grant.idempotency_key].append(grant)
                sums[customer][grant.amount.unit_key].append(grant.amount.amount)
    for key, want in planned.items():
        report.checked += 1
        got = found.get(key, [])
        if not got:
            report.missing.append(key)
            continue
        if len(got) > 1:
            report.duplicated.append(key)
        stored = got[0]
        for name, a, b in (("amount", want.amount, stored.amount),
                           ("priority", want.priority, stored.priority),
                           ("customer_id", want.customer_id, stored.customer_id)):
            if a != b and not (name == "priority" and a is None):
                report.different.append((key, name, _text(a) or "", _text(b) or ""))
    planned_totals = plan.totals()
    for customer, units in planned_totals.items():
        for unit, numbers in units.items():
            got_total = exact_sum(sums[customer][unit])
            report.totals.setdefault(customer, {})[unit] = {
                "planned": numbers["planned"], "found": str(got_total)}
            if Decimal(numbers["planned"]) != got_total:
                report.different.append((customer, f"total {unit}", numbers["planned"],
                                         str(got_total)))
    _compare_balances(plan, target, report)
    return report


def _compare_balances(plan: MigrationPlan, target: Provider, report: VerifyReport) -> None:
    """The usable balance per customer and unit: on the source before, on the target now."""
    before = plan.header.source_balances
    if before is None or not target.supports("balance"):
        return
    for customer, units in sorted(before.items()):
        after = {b.unit_key: b.usable.amount for b in target.get_balance(customer)}
        for unit in sorted(set(units) | set(after)):
            was = Decimal(units.get(unit, "0"))
            now = after.get(unit, Decimal(0))
            report.balances.setdefault(customer, {})[unit] = {
                "source_before": str(was), "target_after": str(now)}
            if was != now:
                report.different.append((customer, f"usable balance {unit}", str(was), str(now)))

