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
import itertools
import json
import pickle
import re
import shutil
import sqlite3
import tempfile
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal, overload

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from billing_credits._errors import (
    BillingCreditsError,
    FieldProblem,
    MigrationError,
    NotFoundError,
    UnreadableGrant,
    UnsupportedOperationError,
)
from billing_credits._model import MIGRATED_KEY, CreditGrant, GrantStatus, Scope, Segment
from billing_credits._money import Money, exact, exact_json, exact_sum
from billing_credits._priority import preserve_order
from billing_credits._provider import OnUnreadable, Provider
from billing_credits._secrets import redact

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
    "write_plan",
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
    source_balances_unavailable: dict[str, str] = {}
    """Target customers whose source balance could not be read when planning, with why (it
    does not stop the plan): ``verify`` skips their balance comparison and says so."""


class _Tally:
    """The plan's summary, added up one item at a time (memory: per customer and reason)."""

    def __init__(self) -> None:
        self.to_create = 0
        self.refused = 0
        self.changes = 0
        self.skipped: Counter[str] = Counter()
        self.refusal_reasons: Counter[str] = Counter()
        self.change_reasons: Counter[str] = Counter()
        self.sums: dict[str, dict[str, list[Any]]] = defaultdict(dict)

    def add(self, item: PlanItem) -> None:
        if item.action == "migrate":
            assert item.grant is not None
            self.to_create += 1
            units = self.sums[item.grant.customer_id]
            unit = item.grant.amount.unit_key
            held = units.setdefault(unit, [Decimal(0), 0])
            held[0] = exact_sum((held[0], item.grant.amount.amount))
            held[1] += 1
        elif not item.refused:
            self.skipped[item.reason or ""] += 1
        if item.refused:
            self.refused += 1
            self.refusal_reasons[item.reason or ""] += 1
        self.changes += len(item.changes)
        for change in item.changes:
            self.change_reasons[f"{_field_kind(change.field)}: {change.why}"] += 1

    def totals(self) -> dict[str, dict[str, dict[str, str]]]:
        return {
            customer: {unit: {"planned": str(total), "grants": str(count)}
                       for unit, (total, count) in sorted(units.items())}
            for customer, units in sorted(self.sums.items())
        }

    def summary(self, header: PlanHeader) -> dict[str, Any]:
        return {
            "kind": "summary",
            "source": header.source,
            "target": header.target,
            "target_identity": header.target_identity,
            "retire_overlaps": header.retire_overlaps,
            "grants_to_create": self.to_create,
            "skipped": dict(sorted(self.skipped.items())),
            "refused": self.refused,
            "refusal_reasons": dict(sorted(self.refusal_reasons.items())),
            "changes": self.changes,
            "change_reasons": dict(sorted(self.change_reasons.items())),
            "totals": self.totals(),
        }


class _PlanFile(Sequence[PlanItem]):
    """The items of a plan file, read from the file each time they are iterated (never held).

    The file was checked whole when opened; it is refused if it changed since."""

    def __init__(self, path: Path, count: int, stamp: tuple[int, int]) -> None:
        self.path = path
        self._count = count
        self._stamp = stamp

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> PlanItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[PlanItem]: ...

    def __getitem__(self, index: int | slice) -> PlanItem | list[PlanItem]:
        return list(self)[index]

    def _check(self) -> None:
        if _stamp(self.path) != self._stamp:
            raise MigrationError(f"{self.path} changed since it was read: load it again")

    def __iter__(self) -> Iterator[PlanItem]:
        for _, item in self.located():
            yield item

    def located(self) -> Iterator[tuple[int, PlanItem]]:
        """Each item with its byte offset in the file (``at`` reads it again)."""
        self._check()
        with self.path.open("rb") as lines:
            offset = 0
            for line in lines:
                at, offset = offset, offset + len(line)
                data = exact_json(line)
                if isinstance(data, dict) and data.get("kind") == "item":
                    yield at, PlanItem.model_validate(data)

    def at(self, offsets: Iterable[int]) -> Iterator[PlanItem]:
        self._check()
        with self.path.open("rb") as lines:
            for offset in offsets:
                lines.seek(offset)
                yield _item(lines.readline())


def _item(line: bytes) -> PlanItem:
    return PlanItem.model_validate(exact_json(line.decode("utf-8")))


def _stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


@dataclass
class MigrationPlan:
    """A reviewable plan: a header, one ``PlanItem`` per decision, and totals.

    ``items`` is a list, or, for a plan opened with ``MigrationPlan.open``, the plan file's
    items read on each pass (a plan of any size then costs no memory per item; ``to_create``
    and ``refusals`` still make lists, ``iter_items`` does not)."""

    header: PlanHeader
    items: Sequence[PlanItem] = field(default_factory=list)

    def iter_items(self) -> Iterator[PlanItem]:
        return iter(self.items)

    def located(self) -> Iterator[tuple[int, PlanItem]]:
        """Each item with where it is (``items_at`` reads it again)."""
        if isinstance(self.items, _PlanFile):
            return self.items.located()
        return enumerate(self.items)

    def items_at(self, positions: Iterable[int]) -> Iterator[PlanItem]:
        """The items at these positions (from ``located``), in that order."""
        if isinstance(self.items, _PlanFile):
            return self.items.at(positions)
        return (self.items[position] for position in positions)

    @property
    def to_create(self) -> list[PlanItem]:
        return [i for i in self.items if i.action == "migrate"]

    @property
    def refusals(self) -> list[PlanItem]:
        return [i for i in self.items if i.refused]

    def _tally(self) -> _Tally:
        tally = _Tally()
        for item in self.items:
            tally.add(item)
        return tally

    def totals(self) -> dict[str, dict[str, dict[str, str]]]:
        """Per target customer and unit: the amount planned and the number of grants."""
        return self._tally().totals()

    def change_counts(self) -> dict[str, int]:
        """Each kind of change (field and reason) with the number of plan items it touches:
        the same reason is counted, not repeated once per grant."""
        return dict(sorted(self._tally().change_reasons.items()))

    def summary(self) -> dict[str, Any]:
        return self._tally().summary(self.header)

    def write(self, out: IO[str]) -> None:
        """JSON lines: the header, each item, the summary."""
        out.write(self.header.model_dump_json() + "\n")
        tally = _Tally()
        for item in self.items:
            tally.add(item)
            out.write(_line(item))
        out.write(json.dumps(tally.summary(self.header), sort_keys=True) + "\n")

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
        for item in self.items:
            if item.action == "migrate":
                assert item.grant is not None
                digest.update(item.grant.model_dump_json(exclude={"raw"}).encode())
        return digest.hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> MigrationPlan:
        """Read a plan written by ``save``, checking it is whole (its summary agrees)."""
        items: list[PlanItem] = []
        header = _read_plan(path, items.append)
        return cls(header, items)

    @classmethod
    def open(cls, path: str | Path) -> MigrationPlan:
        """Like ``load``, checking the whole file, but holding none of its items: they are
        read from the file on each pass (``apply_plan`` and ``verify_plan`` make a few)."""
        path = Path(path)
        stamp = _stamp(path)
        count = 0

        def counted(_: PlanItem) -> None:
            nonlocal count
            count += 1

        header = _read_plan(path, counted)
        return cls(header, _PlanFile(path, count, stamp))


def _line(item: PlanItem) -> str:
    return item.model_dump_json(exclude={"grant": {"raw"}}) + "\n"


def _read_plan(path: str | Path, keep: Callable[[PlanItem], None]) -> PlanHeader:
    """Read a plan file line by line, giving each item to ``keep``; check its summary."""
    header: PlanHeader | None = None
    summary: dict[str, Any] | None = None
    tally = _Tally()
    try:
        with Path(path).open() as lines:
            for number, line in enumerate(lines, start=1):
                data = exact_json(line)
                kind = data.get("kind") if isinstance(data, dict) else None
                if kind == "header":
                    header = PlanHeader.model_validate(data)
                elif kind == "item":
                    item = PlanItem.model_validate(data)
                    tally.add(item)
                    keep(item)
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
    # Compare what the stored summary holds (a plan written before a summary field was
    # added still loads); the counts and totals must always be there and agree.
    computed = json.loads(json.dumps(tally.summary(header), sort_keys=True, default=str))
    stored = json.loads(json.dumps(summary, sort_keys=True, default=str))
    if any(name not in stored for name in ("grants_to_create", "refused", "totals")) or any(
            computed.get(name) != value for name, value in stored.items()):
        raise MigrationError(f"{path}: the items do not add up to its summary; plan again")
    return header


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
                    from billing_credits.consumption._simulate import preserve_burn_order  # ties broken alike

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
            read = [(b.unit_key, exact_sum(p.usable for p in b.parts if p.grant_id in migrated)
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


@dataclass
class _Scan:
    """What apply needs to know of the whole plan before it creates anything, in one pass:
    the refusals, the planned grants carrying a paid amount, the plan's fingerprint, and the
    planned keys per target customer."""

    refusals: int = 0
    paid: int = 0
    total: int = 0
    fingerprint: str = ""
    wanted: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    origins: dict[_Origin, str] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: MigrationPlan) -> _Scan:
        scan = cls()
        digest = hashlib.sha256(f"{plan.header.source}\0{plan.header.target}".encode())
        for item in plan.iter_items():
            scan.refusals += item.refused
            if item.action != "migrate":
                continue
            assert item.grant is not None
            assert item.key is not None
            digest.update(item.grant.model_dump_json(exclude={"raw"}).encode())
            scan.paid += item.grant.paid_amount is not None and item.grant.paid_amount.amount > 0
            scan.wanted[item.grant.customer_id].append(item.key)
            if (origin := _planned_origin(plan, item)) is not None:
                scan.origins[origin] = item.key
            scan.total += 1
        scan.fingerprint = digest.hexdigest()
        return scan


def _creator(scan: _Scan, target: Provider) -> Provider:
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
    paid = scan.paid
    if paid:
        raise MigrationError(
            f"{target.name} invoices the paid amount of {paid} planned grant(s) and cannot "
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


def _check_endpoints(plan: MigrationPlan, scan: _Scan, target: Provider,
                     source: Provider | None, retire: Retire | None) -> None:
    header = plan.header
    if target.name != header.target:
        raise MigrationError(f"the plan targets {header.target!r}, not {target.name!r}")
    if header.target_identity is not None and target.identity() != header.target_identity:
        raise MigrationError(
            f"the plan was made for target {header.target_identity}, but apply was given "
            f"{target.identity()}: nothing created. Give apply the same target settings as the "
            "plan (-T ...), or plan again against this target")
    refusals = scan.refusals if plan.header.strict else 0
    if refusals:
        raise MigrationError(
            f"the plan has {refusals} refusal(s) and is strict: fix them (customer "
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
    scan = _Scan.of(plan)
    _check_endpoints(plan, scan, target, source, retire)
    creator = _creator(scan, target)
    loop = asyncio.get_running_loop()
    started = loop.time()
    book = Journal(journal, plan=scan.fingerprint, target=target.identity())
    report = ApplyReport()
    keep = retire is not None and source is not None  # what retiring checks, per planned key
    try:
        gate = asyncio.Semaphore(max(concurrency, 1))
        total = scan.total
        found = await _reconcile(scan, target, gate, report, keep)
        del scan
        for key, held in found.items():
            await asyncio.to_thread(book.record_created, key, held.id if held else "")
        unreadable = {key for key, _ in report.failed}
        report.already_done = len(found)
        finished = report.already_done
        if progress:
            progress(finished, total)
        todo = (i for i in plan.iter_items() if i.action == "migrate"
                and i.key not in found and i.key not in unreadable)

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
            found[item.key] = _Held.of(created) if keep else None
            if created.replayed:
                report.already_done += 1
            else:
                report.created += 1
            finished += 1
            if progress:
                progress(finished, total)

        async def worker() -> None:
            for item in todo:  # the items are read from the plan as the workers take them
                await create(item)

        await asyncio.gather(*(worker() for _ in range(max(concurrency, 1))))
        if retire is not None and source is not None:
            await _retire(plan, source, retire, found, book, report)
    finally:
        book.close()
        report.seconds = loop.time() - started
    return report


@dataclass(frozen=True, slots=True)
class _Held:
    """What retiring checks of a target grant (kept per planned key only when retiring)."""

    id: str
    amount: Money
    customer_id: str
    voided: bool
    created_at: datetime | None

    @classmethod
    def of(cls, grant: CreditGrant) -> _Held:
        return cls(grant.id or "", grant.amount, grant.customer_id,
                   grant.status is GrantStatus.VOIDED, grant.created_at)


async def _reconcile(scan: _Scan, target: Provider, gate: asyncio.Semaphore,
                     report: ApplyReport, keep: bool) -> dict[str, _Held | None]:
    """The planned grants (``scan.wanted``: keys per target customer) the target already holds
    (with what retiring checks when ``keep``), by key or by provenance (a grant migrated from
    the same source grant and segment, under another key: ``scan.origins``): one listing per
    target customer.

    A customer whose grants cannot all be read is not touched: each of its planned items is
    reported failed (creating without knowing what is there could duplicate a grant).
    """
    found: dict[str, _Held | None] = {}

    async def listing(customer: str, keys: list[str]) -> None:
        planned = set(keys)
        seen: dict[str, _Held | None] = {}
        try:
            async with gate:
                async for grant in target.alist_grants(customer):
                    key = _planned_key(grant, planned, scan.origins)
                    if key is not None and key not in seen:
                        seen[key] = _Held.of(grant) if keep else None
        except Exception as error:
            why = f"not created: the target's grants of customer {customer} could not be read " \
                  f"({_describe(error)}); run apply again"
            report.failed.extend((key, why) for key in keys)
            return
        found.update(seen)

    await asyncio.gather(*(listing(c, keys) for c, keys in scan.wanted.items()))
    return found


_Origin = tuple[str, str, str | None]


def _origin(grant: CreditGrant) -> _Origin | None:
    """The source grant (provider, id, segment) a migrated grant's provenance metadata names."""
    provider = grant.metadata.get("migrated_from_provider")
    source_id = grant.metadata.get("migrated_from_grant")
    if not provider or not source_id:
        return None
    return provider, source_id, grant.metadata.get("migrated_from_segment")


def _planned_origin(plan: MigrationPlan, item: PlanItem) -> _Origin | None:
    """A planned grant's origin, when it carries provenance naming this plan's source grant: a
    target grant migrated from the same source grant by an earlier plan, under another key (an
    application key later shared by two source grants gets derived keys), is that planned grant
    already there."""
    if item.grant is None or item.key is None or not item.source_id:
        return None
    origin = _origin(item.grant)
    segment = None if item.segment is None else str(item.segment)
    return origin if origin == (plan.header.source, item.source_id, segment) else None


def _planned_origins(plan: MigrationPlan) -> dict[_Origin, str]:
    """Each planned grant's origin mapped to its key (see ``_planned_origin``)."""
    origins: dict[_Origin, str] = {}
    for item in plan.iter_items():
        if item.action == "migrate" and (origin := _planned_origin(plan, item)) is not None:
            assert item.key is not None
            origins[origin] = item.key
    return origins


def _planned_key(grant: CreditGrant, planned: Container[str | None],
                 origins: Mapping[_Origin, str]) -> str | None:
    """The planned key a target grant stands for: its own key, or its provenance's."""
    if grant.idempotency_key in planned:
        return grant.idempotency_key
    origin = _origin(grant)
    key = origins.get(origin) if origin is not None else None
    return key if key is not None and key in planned else None


def _ended(grant: CreditGrant) -> bool:
    return grant.status in (GrantStatus.VOIDED, GrantStatus.EXPIRED)


async def _retire(plan: MigrationPlan, source: Provider, how: Retire,
                  found: Mapping[str, _Held | None], book: Journal, report: ApplyReport) -> None:
    """Void or expire each source grant whose every planned item is confirmed on the target.

    A source grant already ended (voided or expired, or no longer found: a vendor that does not
    list voided grants) counts as retired: a crash between retiring it and journalling that
    must not make every later run fail. When the source's credit stops later than the moment
    of retiring (``retire_effective_at``), the report names the overlap.
    """
    # Per source grant, what each of its items planned (key, amount, customer), or None
    # for a skipped or refused part (which stays with the source).
    by_source: dict[str, list[tuple[str, Money, str] | None]] = defaultdict(list)
    for item in plan.iter_items():
        if item.action == "migrate" and item.grant is not None and item.key is not None:
            by_source[item.source_id].append((item.key, item.grant.amount, item.grant.customer_id))
        else:
            by_source[item.source_id].append(None)
    retired = book.retired()
    for source_id, items in by_source.items():
        if source_id in retired or any(i is None for i in items):
            continue  # a skipped or refused part stays with the source
        planned = [i for i in items if i is not None]
        if any(found.get(key) is None for key, _, _ in planned):
            continue
        try:
            held: list[_Held] = []
            for key, amount, customer_id in planned:
                stored = found[key]
                assert stored is not None
                if stored.amount != amount or stored.customer_id != customer_id or stored.voided:
                    raise MigrationError(f"target grant {stored.id} does not hold what was planned")
                held.append(stored)
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
                    starts = min((h.created_at or now) for h in held)
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
    memory holds where each planned grant is in the plan and one customer's grants, never the
    whole plan or the whole target."""
    report = VerifyReport()
    origins = _planned_origins(plan)
    where: dict[str, dict[str, int]] = defaultdict(dict)  # customer -> key -> position
    for position, item in plan.located():
        if item.action == "migrate" and item.key and item.grant:
            where[item.grant.customer_id][item.key] = position
    report.checked = sum(len(keys) for keys in where.values())
    per_key: list[tuple[int, str, tuple[str, str, str, str] | None]] = []  # by plan position
    totals: list[tuple[str, str, str, str]] = []
    for customer in sorted(where):
        positions = where.pop(customer)
        found: dict[str, list[CreditGrant]] = defaultdict(list)
        sums: dict[str, list[Decimal]] = defaultdict(list)
        for grant in target.list_grants(customer):
            key = _planned_key(grant, positions, origins)
            if key is not None and grant.status is not GrantStatus.VOIDED:
                found[key].append(grant)
                sums[grant.amount.unit_key].append(grant.amount.amount)
        planned: dict[str, list[Decimal]] = defaultdict(list)
        for (key, position), item in zip(positions.items(), plan.items_at(positions.values()),
                                         strict=True):
            want = item.grant
            assert want is not None
            planned[want.amount.unit_key].append(want.amount.amount)
            got = found.get(key, [])
            if not got:
                per_key.append((position, "missing", (key, "", "", "")))
                continue
            if len(got) > 1:
                per_key.append((position, "duplicated", (key, "", "", "")))
            stored = got[0]
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

