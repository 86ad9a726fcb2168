"""The planner: reads the source and decides, per grant (and per segment when the target holds
fewer segments), to migrate it, with the exact neutral grant to create, or to skip it with a
reason. Every change on the way (amount, priority, scope, customer) is listed as a ``Change``
with its reason. Nothing is written anywhere but the plan (``plan_migration``, ``write_plan``).
"""

from __future__ import annotations

import itertools
import json
import pickle
import shutil
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, Any

from billing_credits._errors import (
    BillingCreditsError,
    FieldProblem,
    MigrationError,
    UnreadableGrant,
)
from billing_credits._model import MIGRATED_KEY, CreditGrant, GrantStatus, Scope
from billing_credits._money import exact_sum
from billing_credits._priority import preserve_order
from billing_credits._provider import OnUnreadable, Provider
from billing_credits._readable import duration_text
from billing_credits._secrets import redact

from ._plan import (
    AmountMode,
    Change,
    MigrationPlan,
    PlanHeader,
    PlanItem,
    PriorityPolicy,
    _describe,
    _field_kind,
    _line,
    _recorder,
    _Tally,
    migration_key,
)
from ._windows import _allot, _window

__all__ = ["CustomerMap", "ScopeMap", "aligned_times", "plan_migration", "write_plan"]


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

    The plan is held in memory; ``write_plan`` writes the same plan to a file holding no item.
    """
    planner = _Planner(source, target, customers=customers, amount_mode=amount_mode,
                       customer_map=customer_map, scope_map=scope_map,
                       priority_policy=priority_policy, strict=strict, provenance=provenance,
                       now=now)
    items = list(planner.items())
    return MigrationPlan(planner.header, items)


def write_plan(
    source: Provider,
    target: Provider,
    out: IO[str],
    *,
    customers: Iterable[str] | None = None,
    amount_mode: AmountMode = "remaining",
    customer_map: CustomerMap | None = None,
    scope_map: ScopeMap | None = None,
    priority_policy: PriorityPolicy = "exact",
    strict: bool = True,
    provenance: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``plan_migration``, written to ``out`` as ``MigrationPlan.write`` would (header, items,
    summary) as it is decided: memory holds a few small indexes per grant (keys, source ids),
    never the plan. The drafts wait in a temporary file until the shared-key and per-customer
    rules have seen them all; the items in another, since the header (source balances) comes
    first. Returns the summary. ``MigrationPlan.open`` reads the written plan back lazily."""
    planner = _Planner(source, target, customers=customers, amount_mode=amount_mode,
                       customer_map=customer_map, scope_map=scope_map,
                       priority_policy=priority_policy, strict=strict, provenance=provenance,
                       now=now)
    tally = _Tally()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as body:
        for item in planner.items():
            tally.add(item)
            body.write(_line(item))
        body.seek(0)
        out.write(planner.header.model_dump_json() + "\n")
        shutil.copyfileobj(body, out)
    summary = tally.summary(planner.header)
    out.write(json.dumps(summary, sort_keys=True) + "\n")
    return summary


class _Spool:
    """Drafts waiting for every grant to be read, with the application key each keeps, and
    the source grants the plan migrates: on disk (a private temporary SQLite file), so that
    memory holds none of them."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("")
        self._db.execute("CREATE TABLE draft (seq INTEGER PRIMARY KEY, grp INTEGER, kept TEXT, "
                         "data BLOB)")
        self._db.execute("CREATE TABLE migrated (source_id TEXT PRIMARY KEY)")

    def add(self, group: int, draft: _Draft) -> None:
        self._db.execute("INSERT INTO draft (grp, kept, data) VALUES (?, ?, ?)",
                         (group, draft.kept_key, pickle.dumps(draft, pickle.HIGHEST_PROTOCOL)))

    def shared(self) -> dict[str, int]:
        """Each application key kept by more than one draft, with how many keep it."""
        return dict(self._db.execute(
            "SELECT kept, COUNT(*) FROM draft WHERE kept IS NOT NULL GROUP BY kept "
            "HAVING COUNT(*) > 1").fetchall())

    def migrate(self, source_id: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO migrated VALUES (?)", (source_id,))

    def __contains__(self, source_id: object) -> bool:
        """Whether the plan migrates (part of) this source grant."""
        return self._db.execute("SELECT 1 FROM migrated WHERE source_id = ?",
                                (source_id,)).fetchone() is not None

    def groups(self, grouped: bool) -> Iterator[list[_Draft]]:
        """The drafts in the order they came; grouped: each group's together, groups in the
        order they came."""
        order = "grp, seq" if grouped else "seq"
        rows = self._db.execute(f"SELECT grp, data FROM draft ORDER BY {order}")  # noqa: S608
        if not grouped:
            for _, data in rows:
                yield [pickle.loads(data)]  # noqa: S301 (written just above, by this process)
            return
        for _, group in itertools.groupby(rows, key=lambda row: row[0]):
            yield [pickle.loads(data) for _, data in group]  # noqa: S301

    def close(self) -> None:
        self._db.close()


class _Planner:
    """One planning run: ``items()`` yields the plan's items as they are decided; then
    ``header`` is whole (the source balances are read last)."""

    def __init__(self, source: Provider, target: Provider, *, customers: Iterable[str] | None,
                 amount_mode: AmountMode, customer_map: CustomerMap | None,
                 scope_map: ScopeMap | None, priority_policy: PriorityPolicy, strict: bool,
                 provenance: bool, now: datetime | None) -> None:
        self.source, self.target = source, target
        self.customers, self.amount_mode = customers, amount_mode
        self.customer_map, self.scope_map = customer_map, scope_map
        self.priority_policy, self.provenance = priority_policy, provenance
        self.now = now = now or datetime.now(UTC)
        self.header = PlanHeader(
            source=source.name, target=target.name, target_identity=target.identity(),
            source_identity=source.identity(), retire_overlaps=_retire_overlaps(source, now),
            created_at=now, amount_mode=amount_mode, priority_policy=priority_policy,
            strict=strict)

    def items(self) -> Iterator[PlanItem]:
        source, target, now = self.source, self.target, self.now
        recorder = _recorder(target)
        spool = _Spool()
        try:
            groups: dict[str, int] = {}  # each target customer, in the order first seen
            seen: dict[str, None] = {}
            unreadable: list[PlanItem] = []

            def refuse(entry: UnreadableGrant) -> None:  # never dropped: a refusal naming it
                unreadable.append(PlanItem(
                    source_id=entry.vendor_id or "", customer_id="", action="skip", refused=True,
                    reason=f"unreadable {entry.provider} item {entry.vendor_id or '(no id)'}: "
                           f"{redact(entry.problem)}"))

            for grant in _source_grants(source, self.customers, refuse):
                seen[grant.customer_id] = None
                drafts: list[_Draft] = []
                try:
                    skipped = _decide(grant, source.name, target, self.amount_mode,
                                      self.customer_map, self.scope_map, self.provenance, now,
                                      drafts)
                except (BillingCreditsError, ValueError) as error:  # one the planner cannot place
                    skipped = _skip(grant, " ".join(str(error).split()), refused=True)
                if skipped is not None:
                    yield skipped
                for draft in drafts:
                    draft.source = draft.source.model_copy(update={"raw": None})
                    group = groups.setdefault(draft.grant.customer_id, len(groups))
                    spool.add(group, draft)
            yield from unreadable
            kept = spool.shared()
            preserve = self.priority_policy == "preserve-order"
            for spooled in spool.groups(grouped=preserve):
                for draft in spooled:
                    _shared_key(draft, kept, source.name, self.provenance)
                group_drafts = _preserve_order(spooled, target) if preserve else spooled
                if preserve and source.consumption_order is not None \
                        and target.consumption_order is not None:
                    from ._compare import preserve_burn_order  # ties broken alike

                    preserve_burn_order(group_drafts, source.consumption_order,
                                        target.consumption_order, target.capabilities.priority,
                                        target_name=target.name, now=now)
                for draft in group_drafts:
                    item = _finish(draft, target, recorder)
                    if item.action == "migrate":
                        spool.migrate(item.source_id)
                    yield item
            if self.amount_mode == "remaining":
                unavailable: dict[str, str] = {}
                balances = _source_balances(source, seen, self.customer_map, spool, unavailable)
                self.header = self.header.model_copy(update={
                    "remaining_source": f"{source.name}: {source.remaining_source}",
                    "source_balances": balances, "source_balances_unavailable": unavailable})
        finally:
            spool.close()


def _retire_overlaps(source: Provider, now: datetime) -> dict[str, str]:
    found = {}
    for how in ("void", "expire"):
        if source.capabilities.supports(how):
            ends = source.retire_effective_at(how, now)
            if ends > now:
                found[how] = (f"retiring by {how} leaves the source credit spendable until "
                              f"{ends.isoformat()} if done at {now.isoformat()} "
                              f"({duration_text((ends - now).total_seconds())} after), while "
                              "the target grants already exist")
    return found


def _kept(provenance: bool) -> str:
    return f"; the original is kept in metadata {MIGRATED_KEY}" if provenance else ""


def _shared_key(draft: _Draft, kept: Mapping[str, int], source_name: str,
                provenance: bool) -> None:
    """An application key carried by several source grants cannot name each target grant
    (``kept``: each key kept by several drafts, with how many): those get derived keys, and the
    change says why."""
    if draft.kept_key is None or kept.get(draft.kept_key, 0) < 2:
        return
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
                     migrated: Container[str],
                     unavailable: dict[str, str]) -> dict[str, dict[str, str]] | None:
    """Usable balances on the source, per target customer and unit (None: not reported).

    Where the source splits a balance by grant, only the grants the plan migrates count: a
    grant refused or skipped is not expected on the target. A customer whose balance cannot
    be read (its grants add up to more than a ``Money`` holds, say) goes to ``unavailable``
    with why, for that customer alone: it never stops the plan."""
    if not source.supports("balance"):
        return None
    found: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    for customer in customers:
        target_customer = _customer(customer_map, customer)
        if not target_customer:
            continue
        try:
            read = [(b.unit_key, exact_sum(p.usable.amount for p in b.parts if p.grant_id in migrated)
                     if b.parts else b.usable.amount) for b in source.get_balance(customer)]
        except BillingCreditsError as error:
            unavailable[target_customer] = (
                f"the source balance of customer {customer} could not be read: "
                f"{_describe(error)}")
            continue
        for unit, usable in read:
            found[target_customer][unit].append(usable)
    return {customer: {unit: str(exact_sum(values)) for unit, values in sorted(units.items())}
            for customer, units in sorted(found.items()) if customer not in unavailable}


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
        metadata.pop("migrated_from_segment", None)  # an earlier migration's: names this one
    original = grant.idempotency_key
    if original is not None and provenance:
        metadata[MIGRATED_KEY] = original
    allotted = _allot(grant, amount_mode, now, changes)
    common: dict[str, Any] = {"customer_id": target_customer, "scope": scope}
    max_segments = target.capabilities.max_segments
    # Split or not by the source's own schedule, never by the windows still live: a later plan
    # (a window ended, usage emptied one) must give each target grant the key it had, since
    # apply finds what an earlier apply made by key.
    if grant.schedule is None or max_segments is None or len(grant.segments) <= max_segments:
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


def aligned_times(grant: CreditGrant, target: Provider) -> tuple[CreditGrant, list[Change],
                                                                  str | None]:
    """``grant`` with its times aligned to ``target``'s resolution as the planner aligns them
    (starts later, ends earlier), each moved time as a ``Change``, and the refusal when its
    window is too short to survive (else None). Import uses it too."""
    draft = _Draft(grant, None, grant, [])
    refusal = _align(draft, target)
    return draft.grant, draft.changes, refusal


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _step(step: timedelta) -> str:
    return f"{step.total_seconds():g} s"


def _key_without_provenance(draft: _Draft) -> None:
    """The application's own key, kept on a target grant that differs from the source grant,
    without ``migrated_from_key`` (``provenance=False``): the target cannot tell the
    application's later create with that key is the grant already migrated, and refuses it as
    a conflict (same key, other fields). The plan says so on the grant."""
    key = draft.kept_key
    if key is None or draft.grant.metadata.get(MIGRATED_KEY) == key:
        return
    differs = sorted({_field_kind(c.field) for c in draft.changes})
    if not differs:
        return  # the same fields: the application's repeat is a replay of this create
    draft.changes.append(Change(
        field="idempotency_key", source=key, target=key,
        why=f"kept, but without provenance ({MIGRATED_KEY}) a later create on the target with "
            f"this key and the source's fields ({', '.join(differs)} differ) is refused as a "
            "conflict, not found as this grant: plan with provenance to avoid it"))


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
    _key_without_provenance(draft)
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


# -- verify ---------------------------------------------------------------------------------


