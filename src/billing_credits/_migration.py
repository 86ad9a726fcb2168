"""Migration of grants from one provider to another: plan, apply, verify.

- ``plan`` reads the source and decides, per grant (and per segment when the target holds
  fewer segments), to migrate it, with the exact neutral grant to create, or to skip it with
  a reason. Every change on the way (amount, priority, scope, customer) is listed as a
  ``Change`` with its reason. Nothing is written anywhere but the plan.
- ``apply`` creates the planned grants. Each carries an idempotency key derived from (source
  provider, source grant id, segment), so no re-run, resume or retry ever makes a second grant;
  a journal beside the plan makes re-runs cheap. Creates run concurrently, at the target's rate
  limit. Source grants are retired (voided or expired) only when asked, and only after all of
  their target grants are confirmed.
- ``verify`` re-reads the target and reconciles it with the plan, per customer and unit.
"""

from __future__ import annotations

import asyncio
import decimal
import hashlib
import json
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ._errors import BillingCreditsError, FieldProblem, MigrationError, UnreadableGrant
from ._model import CreditGrant, GrantStatus, Scope, Segment
from ._money import exact, exact_json, exact_sum
from ._priority import preserve_order
from ._provider import OnUnreadable, Provider
from ._secrets import redact

__all__ = [
    "ApplyReport",
    "Change",
    "MigrationError",
    "MigrationPlan",
    "PlanItem",
    "VerifyReport",
    "apply_plan",
    "migration_key",
    "plan_migration",
    "verify_plan",
]

AmountMode = Literal["remaining", "original"]
PriorityPolicy = Literal["exact", "preserve-order"]
Retire = Literal["void", "expire"]


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

    @property
    def key(self) -> str | None:
        return self.grant.idempotency_key if self.grant is not None else None


class PlanHeader(_Record):
    kind: Literal["header"] = "header"
    source: str
    target: str
    created_at: datetime
    amount_mode: AmountMode
    priority_policy: PriorityPolicy
    strict: bool


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

    def summary(self) -> dict[str, Any]:
        skipped: dict[str, int] = defaultdict(int)
        for item in self.items:
            if item.action == "skip":
                skipped[item.reason or ""] += 1
        return {
            "kind": "summary",
            "source": self.header.source,
            "target": self.header.target,
            "grants_to_create": len(self.to_create),
            "skipped": dict(sorted(skipped.items())),
            "refused": len(self.refusals),
            "changes": sum(len(i.changes) for i in self.items),
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
        if json.loads(json.dumps(plan.summary(), sort_keys=True, default=str)) != json.loads(
            json.dumps(summary, sort_keys=True, default=str)
        ):
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


@dataclass
class _Draft:
    source: CreditGrant
    segment: int | None
    grant: CreditGrant
    changes: list[Change]


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
    the target's domain keeping their order. ``strict``: refusals make ``apply`` stop before
    creating anything. ``provenance`` adds ``migrated_from_*`` metadata keys naming the source.
    """
    now = now or datetime.now(UTC)
    header = PlanHeader(source=source.name, target=target.name, created_at=now,
                        amount_mode=amount_mode, priority_policy=priority_policy, strict=strict)
    plan = MigrationPlan(header)
    drafts: list[_Draft] = []
    unreadable: list[UnreadableGrant] = []
    for grant in _source_grants(source, customers, unreadable.append):
        try:
            skipped = _decide(grant, source.name, target, amount_mode, customer_map, scope_map,
                              provenance, now, drafts)
        except BillingCreditsError as error:
            skipped = _skip(grant, str(error), refused=True)
        if skipped is not None:
            plan.items.append(skipped)
    for entry in unreadable:  # never dropped: each is a refusal naming the vendor's id
        plan.items.append(PlanItem(
            source_id=entry.vendor_id or "", customer_id="", action="skip", refused=True,
            reason=f"unreadable {entry.provider} item {entry.vendor_id or '(no id)'}: "
                   f"{redact(entry.problem)}"))
    if priority_policy == "preserve-order":
        drafts = _preserve_order(drafts, target)
    for draft in drafts:
        plan.items.append(_finish(draft, target))
    return plan


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
    allotted = _allot(grant, amount_mode, now, changes)
    common: dict[str, Any] = {"customer_id": target_customer, "scope": scope}
    max_segments = target.capabilities.max_segments
    if grant.schedule is None or max_segments is None or len(allotted) <= max_segments:
        window = _window(grant, allotted)
        key = migration_key(source_name, grant.id or "", None)
        new = grant.as_new(**common, **window, metadata=metadata, idempotency_key=key)
        drafts.append(_Draft(grant, None, new, changes))
        return None
    for index, segment in allotted:  # one target grant per window
        key = migration_key(source_name, grant.id or "", index)
        extra = {"migrated_from_segment": str(index)} if provenance else {}
        new = grant.as_new(
            **common, amount=grant.amount.with_amount(segment.amount), schedule=None,
            effective_at=segment.starts_at, expires_at=segment.ends_before,
            metadata={**metadata, **extra}, idempotency_key=key)
        drafts.append(_Draft(grant, index, new, [*changes, Change(
            field="schedule", source=f"{len(grant.segments)} segments",
            target=f"segment {index} as its own grant",
            why=f"{target.name} holds at most {max_segments} segment(s) per grant")]))
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


def _finish(draft: _Draft, target: Provider) -> PlanItem:
    problems: list[FieldProblem] = target.capabilities.check(draft.grant)
    if not problems:
        try:
            draft.changes += [
                Change(field=a.field, source=a.requested, target=a.stored,
                       why=f"{target.name}: {a.reason}")
                for a in target.preview(draft.grant)]
        except BillingCreditsError as error:
            problems = [FieldProblem("", str(error))]
    base = {"source_id": draft.source.id or "", "segment": draft.segment,
            "customer_id": draft.source.customer_id, "changes": tuple(draft.changes)}
    if problems:
        reason = f"{target.name} cannot represent: " + "; ".join(str(p) for p in problems)
        return PlanItem(**base, action="skip", reason=reason, refused=True, grant=draft.grant)
    try:
        target.check(draft.grant)
    except BillingCreditsError as error:
        return PlanItem(**base, action="skip", reason=str(error), refused=True, grant=draft.grant)
    return PlanItem(**base, action="migrate", grant=draft.grant)


# -- apply ----------------------------------------------------------------------------------


class Journal:
    """What apply has done, in SQLite beside the plan: created keys and retired sources.

    A journal belongs to one plan and one target (``Provider.identity()``): opening it for
    another is refused, so a rehearsal's journal can never make a real run skip its work.
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
                    f"journal {path} belongs to another {name} ({stored[:40]}); use a fresh "
                    "journal for this plan and target")

    def created(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, target_id FROM created").fetchall())

    def retired(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT source_id FROM retired")}

    def record_created(self, key: str, target_id: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO created VALUES (?, ?, ?)",
                             (key, target_id, datetime.now(UTC).isoformat()))

    def record_retired(self, source_id: str, how: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO retired VALUES (?, ?, ?)",
                             (source_id, how, datetime.now(UTC).isoformat()))

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class ApplyReport:
    """What one apply run did."""

    created: int = 0
    already_done: int = 0
    retired: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


Progress = Callable[[int, int], None]


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

    Refuses a strict plan with refusals before creating anything. With ``retire``, a source
    grant is voided or expired on ``source`` only when every item planned for it was migrated
    (none skipped or refused) and each of its target grants reads back as planned.
    """
    if target.name != plan.header.target:
        raise MigrationError(f"the plan targets {plan.header.target!r}, not {target.name!r}")
    if plan.header.strict and plan.refusals:
        raise MigrationError(
            f"the plan has {len(plan.refusals)} refusal(s) and is strict: fix them (customer "
            "map, scope map, priority policy) and plan again, or plan with strict=False")
    if retire is not None and (source is None or source.name != plan.header.source):
        raise MigrationError(f"retiring needs the source provider {plan.header.source!r}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    book = Journal(journal, plan=plan.fingerprint(), target=target.identity())
    report = ApplyReport()
    try:
        done = book.created()
        todo = [i for i in plan.to_create if i.key not in done]
        report.already_done = len(plan.to_create) - len(todo)
        total = len(plan.to_create)
        finished = report.already_done
        if progress:
            progress(finished, total)
        gate = asyncio.Semaphore(max(concurrency, 1))

        async def create(item: PlanItem) -> None:
            nonlocal finished
            assert item.grant is not None
            assert item.key is not None
            async with gate:
                try:
                    created = await target.acreate_grant(item.grant)
                except BillingCreditsError as error:
                    report.failed.append((item.key, str(error)))
                    return
            await asyncio.to_thread(book.record_created, item.key, created.id or "")
            done[item.key] = created.id or ""
            report.created += 1
            finished += 1
            if progress:
                progress(finished, total)

        async with asyncio.TaskGroup() as group:
            for item in todo:
                group.create_task(create(item))
        if retire is not None and source is not None:
            await _retire(plan, source, target, retire, done, book, report)
    finally:
        book.close()
        report.seconds = loop.time() - started
    return report


async def _retire(plan: MigrationPlan, source: Provider, target: Provider, how: Retire,
                  done: Mapping[str, str], book: Journal, report: ApplyReport) -> None:
    """Void or expire each source grant whose every planned item is confirmed on the target."""
    by_source: dict[str, list[PlanItem]] = defaultdict(list)
    for item in plan.items:
        by_source[item.source_id].append(item)
    retired = book.retired()
    for source_id, items in by_source.items():
        if source_id in retired or any(i.action != "migrate" for i in items):
            continue  # a skipped or refused part stays with the source
        if any(i.key not in done for i in items):
            continue
        try:
            for item in items:
                assert item.grant is not None
                assert item.key is not None
                stored = await target.aget_grant(done[item.key])
                if (stored.amount != item.grant.amount or stored.customer_id != item.grant.customer_id
                        or stored.status is GrantStatus.VOIDED):
                    raise MigrationError(f"target grant {stored.id} does not hold what was planned")
            await (source.avoid_grant(source_id) if how == "void"
                   else source.aexpire_grant(source_id))
        except BillingCreditsError as error:
            report.failed.append((source_id, f"retire: {error}"))
            continue
        await asyncio.to_thread(book.record_retired, source_id, how)
        report.retired += 1


# -- verify ---------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    """Differences between a plan and the target, per planned grant and per customer/unit."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    different: list[tuple[str, str, str, str]] = field(default_factory=list)
    totals: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

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
    return report

