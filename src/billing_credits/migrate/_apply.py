"""Apply a plan: create each planned grant once (journal, reconcile what a lost reply
created), then retire the source grants.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from billing_credits._errors import (
    MigrationError,
    NotFoundError,
)
from billing_credits._model import CreditGrant, GrantStatus
from billing_credits._money import Money
from billing_credits._provider import Provider

from ._index import Origin, PlanIndex, origin_of
from ._journal import Journal
from ._plan import (
    MigrationPlan,
    PlanItem,
    Retire,
    _describe,
    _recorder,
)

__all__ = ["ApplyReport", "Progress", "RetireOverlap", "apply_plan"]


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

    ``duplicates``: planned keys the target already held more than once before this run (by
    key or provenance, voided grants aside), each with the ids of the grants standing for it:
    apply creates nothing for them and says so; ``verify`` lists them too. Void the extras.
    """

    created: int = 0
    already_done: int = 0
    retired: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    overlaps: list[RetireOverlap] = field(default_factory=list)
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "already_done": self.already_done,
                "retired": self.retired, "failed": len(self.failed),
                "duplicated": len(self.duplicates),
                "overlaps": [str(o) for o in self.overlaps], "seconds": round(self.seconds, 3)}

Progress = Callable[[int, int], None]


@dataclass
class _Scan:
    """What apply needs to know of the whole plan before it creates anything, in one pass:
    the refusals, the planned grants carrying a paid amount, the plan's fingerprint, and the
    planned keys per target customer with their origins (``index``: on disk, so memory holds
    none of them; with ``sources``, every item's source grant too, for retiring)."""

    index: PlanIndex
    refusals: int = 0
    paid: int = 0
    total: int = 0
    fingerprint: str = ""

    @classmethod
    def of(cls, plan: MigrationPlan, *, sources: bool = False) -> _Scan:
        scan = cls(PlanIndex(sources=sources))
        digest = hashlib.sha256(f"{plan.header.source}\0{plan.header.target}".encode())
        try:
            for position, item in plan.located():
                scan.refusals += item.refused
                scan.index.add(plan, position, item)
                if item.action != "migrate":
                    continue
                assert item.grant is not None
                assert item.key is not None
                digest.update(item.grant.model_dump_json(exclude={"raw"}).encode())
                scan.paid += item.grant.paid_amount is not None and item.grant.paid_amount.amount > 0
                scan.total += 1
            scan.index.built()
        except BaseException:
            scan.index.close()
            raise
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
        planned, given = _readable_pair(header.target_identity, target.identity())
        raise MigrationError(
            f"the plan was made for target {planned}, but apply was given "
            f"{given}: nothing created. Give apply the same target settings as the "
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
            planned, given = _readable_pair(header.source_identity, source.identity())
            raise MigrationError(
                f"the plan was made from source {planned}, but apply was given "
                f"{given} to retire from: nothing created. Give the same source "
                "settings as the plan (-F ...)")

def _start(plan: MigrationPlan, target: Provider, journal: str | Path, source: Provider | None,
           retire: Retire | None, keep: bool) -> tuple[_Scan, Provider, Journal]:
    """The plan scanned (its index on disk), the endpoints checked, the creator and the journal;
    the index closed if any of it fails."""
    scan = _Scan.of(plan, sources=keep)
    try:
        _check_endpoints(plan, scan, target, source, retire)
        creator = _creator(scan, target)
        book = Journal(journal, plan=scan.fingerprint, target=target.identity())
    except BaseException:
        scan.index.close()
        raise
    return scan, creator, book


def _readable_pair(planned: str, given: str) -> tuple[str, str]:
    """Both identities for people (``stripe at http://…``); as recorded when that is all
    that tells them apart (another credential's digest)."""
    from billing_credits._readable import identity_text

    texts = identity_text(planned), identity_text(given)
    if texts[0] == texts[1]:
        return (f"{texts[0]} (credential digest {planned.rsplit(':', 1)[-1]})",
                f"{texts[1]} (credential digest {given.rsplit(':', 1)[-1]})")
    return texts

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
    keep = retire is not None and source is not None  # what retiring checks, per planned key
    scan, creator, book = _start(plan, target, journal, source, retire, keep)
    index = scan.index
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = ApplyReport()
    try:
        gate = asyncio.Semaphore(max(concurrency, 1))
        total = scan.total
        await _reconcile(index, target, gate, report, keep, concurrency)
        for key, held in index.found_keys():
            await asyncio.to_thread(book.record_created, key, held.id if held else "")
        report.already_done = index.found_count()
        finished = report.already_done
        if progress:
            progress(finished, total)
        todo = (i for i in plan.iter_items() if i.action == "migrate"
                and i.key is not None and not index.known(i.key))

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
            index.mark_found(item.key, _Held.of(created) if keep else None)
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
            await _retire(source, retire, index, book, report)
    finally:
        book.close()
        index.close()
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

async def _reconcile(index: PlanIndex, target: Provider, gate: asyncio.Semaphore,
                     report: ApplyReport, keep: bool, concurrency: int) -> None:
    """Mark in ``index`` the planned grants (keys per target customer) the target already
    holds (with what retiring checks when ``keep``), by key or by provenance (a grant migrated
    from the same source grant and segment, under another key): one listing per target
    customer, ``concurrency`` at a time, memory holding what those customers need.

    A customer whose grants cannot all be read is not touched: each of its planned items is
    reported failed (creating without knowing what is there could duplicate a grant).
    """

    async def listing(customer: str) -> None:
        async with gate:
            keys = index.keys(customer)
            planned = set(keys)
            origins = index.origins(customer)
            seen: dict[str, _Held | None] = {}
            holders: dict[str, list[str]] = {}  # this customer's planned keys -> live grant ids
            try:
                async for grant in target.alist_grants(customer):
                    key = _planned_key(grant, planned, origins)
                    if key is None:
                        continue
                    if grant.status is not GrantStatus.VOIDED:
                        holders.setdefault(key, []).append(grant.id or "(no id)")
                    if key not in seen:
                        seen[key] = _Held.of(grant) if keep else None
            except Exception as error:
                why = f"not created: the target's grants of customer {customer} could not be " \
                      f"read ({_describe(error)}); run apply again"
                report.failed.extend((key, why) for key in keys)
                index.mark_failed(keys)
                return
        for key, held in seen.items():
            index.mark_found(key, held)
        report.duplicates.update({k: ids for k, ids in holders.items() if len(ids) > 1})

    customers = index.customers(first_seen=True)

    async def worker() -> None:
        for customer in customers:
            await listing(customer)

    await asyncio.gather(*(worker() for _ in range(max(concurrency, 1))))

def _planned_key(grant: CreditGrant, planned: Container[str | None],
                 origins: Mapping[Origin, str]) -> str | None:
    """The planned key a target grant stands for: its own key, or its provenance's."""
    if grant.idempotency_key in planned:
        return grant.idempotency_key
    origin = origin_of(grant)
    key = origins.get(origin) if origin is not None else None
    return key if key is not None and key in planned else None

def _ended(grant: CreditGrant) -> bool:
    return grant.status in (GrantStatus.VOIDED, GrantStatus.EXPIRED)

async def _retire(source: Provider, how: Retire, index: PlanIndex, book: Journal,
                  report: ApplyReport) -> None:
    """Void or expire each source grant whose every planned item is confirmed on the target.

    A source grant already ended (voided or expired, or no longer found: a vendor that does not
    list voided grants) counts as retired: a crash between retiring it and journalling that
    must not make every later run fail. When the source's credit stops later than the moment
    of retiring (``retire_effective_at``), the report names the overlap. One source grant at a
    time: ``index`` holds, per source grant, what each of its items planned (key, amount,
    customer), or None for a skipped or refused part (which stays with the source).
    """
    for source_id, items in index.by_source():
        if any(i is None for i in items) or book.is_retired(source_id):
            continue  # a skipped or refused part stays with the source
        planned: list[tuple[str, Money, str]] = items
        held: list[_Held] = []
        for key, _, _ in planned:
            stored = index.held(key)
            if stored is None:
                break
            held.append(stored)
        if len(held) != len(planned):
            continue
        try:
            for stored, (_, amount, customer_id) in zip(held, planned, strict=True):
                if stored.amount != amount or stored.customer_id != customer_id or stored.voided:
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
