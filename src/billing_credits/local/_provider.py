"""The local provider's flows: each operation is written once and runs sync or async."""

from __future__ import annotations

import dataclasses
import decimal
import enum
import json
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import billing_credits as bc

from ._store import EntryRow, GrantStore, Row, Transaction, request_hash, signed

__all__ = ["LocalProvider", "default_database_path"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def default_database_path() -> Path:
    """``$BILLING_CREDITS_DB``, else ``credits.db`` in the user's data directory."""
    if configured := os.environ.get("BILLING_CREDITS_DB"):
        return Path(configured).expanduser()
    import platformdirs

    return platformdirs.user_data_path("billing-credits") / "credits.db"


def _now() -> datetime:
    return datetime.now(UTC)


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


class LocalProvider(bc.Provider):
    """Grants in a SQLite file on this machine: every neutral field, stored exactly."""

    name = "local"
    capabilities = bc.Capabilities(
        custom_units=True,
        scope_kinds=bc.ALL_SCOPE_KINDS,
        max_segments=None,
        metadata=bc.MetadataLimits(),
        operations=bc.ALL_OPERATIONS,
        balance_as_of="any",
        updatable_fields=frozenset({"expires_at", "name", "metadata"}),
        notes=("stores every neutral field exactly; a working credits ledger: consume burns "
               "credit down in the declared order, atomically and once per reference",),
    )
    consumption_order = bc.LOCAL_ORDER
    remaining_source = "local ledger: open and future windows less consumed entries"
    settings = (
        bc.Setting("path", "SQLite database file (default: per-user data directory)",
                   env="BILLING_CREDITS_DB"),
    )

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], datetime] = _now,
        runtime: bc.Runtime | None = None,
    ) -> None:
        super().__init__(runtime=runtime or bc.Runtime(retry=bc.RetryPolicy(attempts=1)))
        self.path = Path(path).expanduser() if path is not None else default_database_path()
        self._clock = clock
        self._store = GrantStore(self.path)

    def identity(self) -> str:
        return f"local:{self.path.resolve()}"

    def now(self) -> datetime:
        return self._clock()

    def close(self) -> None:
        self._store.close()

    def __repr__(self) -> str:
        return f"<LocalProvider path={str(self.path)!r}>"

    # -- flows --------------------------------------------------------------------------

    def import_batch(self, grants: list[bc.CreditGrant]) -> list[bool | bc.BillingCreditsError]:
        """Create many keyed grants in one transaction (for ``import_grants``); safe to repeat.

        ``grants`` are validated neutral grants, each with an idempotency key. For each: True
        when created, False when its key was there already (same grant), or the error that
        refused it (not representable, or the key used for a different grant).
        """
        results: list[bool | bc.BillingCreditsError] = []
        rows: list[Row] = []
        places: list[int] = []
        for grant in grants:
            try:
                if grant.idempotency_key is None or grant.is_read_back():
                    raise bc.InvalidGrantError([bc.FieldProblem(
                        "idempotency_key", "a batch import needs keyed, new grants")])
                self.check(grant)
                row = self._row(grant, grant.idempotency_key)
                if grant.effective_at is None:
                    self._read(row)  # "now" as start must still read back (as in _create)
                rows.append(row)
                places.append(len(results))
                results.append(True)
            except bc.BillingCreditsError as error:
                results.append(error)
        stored = self._store.insert_many(rows)
        for place, row, found in zip(places, rows, stored, strict=True):
            if found is not None:
                same = found.request_hash == row.request_hash or _migrated_under(
                    found, row.idempotency_key)
                results[place] = False if same else \
                    bc.ConflictError(f"idempotency key {row.idempotency_key!r} was used for a "
                                     f"different grant ({found.id})", provider=self.name,
                                     code="idempotency_key_reused")
        return results

    def _row(self, grant: bc.CreditGrant, idempotency_key: str) -> Row:
        now = self._clock()
        request = grant.request_fields()
        request.pop("idempotency_key")
        digest = request_hash(_canonical_from_request(grant, request))
        if grant.effective_at is None:
            request["effective_at"] = _text(now)
        return Row(
            seq=0,
            id=f"lcg_{uuid.uuid4().hex}",
            customer_id=grant.customer_id,
            idempotency_key=idempotency_key,
            key_supplied=grant.idempotency_key is not None,
            request_hash=digest,
            amount=str(grant.amount.amount),
            unit=grant.amount.unit_key,
            request_json=json.dumps(request, sort_keys=True),
            effective_at=request["effective_at"],
            expires_at=_text(grant.expires_at),
            voided_at=None,
            created_at=_text(now) or "",
            consumed_json=json.dumps(["0"] * len(grant.schedule or (None,))),
        )

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        row = self._row(grant, idempotency_key)
        digest = row.request_hash
        self._read(row)  # what is stored must read back: refuse it here, not on every list
        stored, created = yield bc.blocking(lambda: self._store.insert(row), label="insert")
        if not created and stored.request_hash != digest and not _migrated_under(stored,
                                                                                idempotency_key):
            raise bc.ConflictError(
                f"idempotency key {idempotency_key!r} was used for a different grant "
                f"({stored.id})",
                provider=self.name,
                code="idempotency_key_reused",
            )
        return self._read(stored).model_copy(update={"replayed": not created})

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        limit = min(query.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = int(cursor) if cursor else 0
        rows, more = yield bc.blocking(
            lambda: self._store.page(query.customer_id, after, limit), label="page"
        )
        grants = [self._read(row) for row in rows]
        return bc.Page(grants, str(rows[-1].seq) if more and rows else None)

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        row = yield bc.blocking(lambda: self._store.get(grant_id), label="get")
        return self._read(self._found(row, grant_id))

    def _void(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        now = self._clock()

        def void(row: Row) -> dict[str, Any] | None:
            return None if row.voided_at else {"voided_at": _text(now)}

        def entries(db: Any, before: Row, after: Row) -> None:
            # What was left in windows not ended by now is voided; ended ones expired before.
            grant = self._read(before)
            left = bc.exact_sum(
                amount - used for (segment, amount, used) in _windows(grant, before)
                if segment.ends_before is None or segment.ends_before > now)
            Transaction(self._store, db).add_entry(
                after.customer_id, after.id, None, "voided", signed(left.copy_negate()),
                after.unit, _text(now) or "", None, _text(now) or "")

        row = yield bc.blocking(lambda: self._store.update(grant_id, void, entries), label="void")
        return self._read(self._found(row, grant_id))

    def _expire(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        now = self._clock()

        def expire(row: Row) -> dict[str, Any] | None:
            grant = self._read(row)
            if grant.status is bc.GrantStatus.VOIDED:
                raise bc.ConflictError("a voided grant cannot be expired", provider=self.name)
            if grant.status is bc.GrantStatus.EXPIRED:
                return None
            if grant.effective_at is not None and now <= grant.effective_at:
                raise bc.ConflictError(
                    "the grant is not effective yet and cannot expire before it starts; "
                    "void it instead", provider=self.name)
            request = row.request
            request.update(_truncated(grant, now))
            kept = len(request.get("schedule") or (None,))
            changed: dict[str, Any] = {
                "expires_at": _text(now), "request_json": json.dumps(request, sort_keys=True),
                "consumed_json": json.dumps([str(c) for c in _used(row, grant)[:kept]])}
            self._read(dataclasses.replace(row, **changed))  # validate before committing
            return changed

        def entries(db: Any, before: Row, after: Row) -> None:
            # Windows still to come are dropped: what they held expires now, as a row.
            kept = len(after.request.get("schedule") or (None,))
            windows = _windows(self._read(before), before)[kept:]
            dropped = bc.exact_sum(amount - used for (_, amount, used) in windows)
            if dropped:
                Transaction(self._store, db).add_entry(
                    after.customer_id, after.id, None, "expired", signed(dropped.copy_negate()),
                    after.unit, _text(now) or "", None, _text(now) or "")

        row = yield bc.blocking(
            lambda: self._store.update(grant_id, expire, entries), label="expire")
        return self._read(self._found(row, grant_id))

    # -- balances, ledger, updates, consumption ------------------------------------------

    def _balance(
        self, customer_id: str, unit: str | None, at: datetime | None
    ) -> bc.Flow[list[bc.Balance]]:
        moment = at or self._clock()
        rows, stored = yield bc.blocking(
            lambda: self._store.customer_ledger(customer_id, None), label="balance")
        used: dict[tuple[str, int], Decimal] = {}
        with decimal.localcontext(bc.exact_context()):
            for entry in stored:
                if entry.kind == "consumed" and entry.grant_id and entry.segment is not None \
                        and _moment(entry.at) <= moment:
                    slot = (entry.grant_id, entry.segment)
                    used[slot] = used.get(slot, Decimal(0)) - Decimal(entry.amount)
        units: dict[str, bc.Money] = {}
        parts: dict[str, list[bc.BalancePart]] = {}
        for row in rows:
            if row.voided_at is not None and _moment(row.voided_at) <= moment:
                continue
            grant = self._read(row)
            key = grant.amount.unit_key
            if unit is not None and key != unit:
                continue
            units.setdefault(key, grant.amount)
            for index, segment in enumerate(grant.segments):
                open_now = segment.starts_at <= moment and (
                    segment.ends_before is None or moment < segment.ends_before)
                if not open_now:
                    continue
                with decimal.localcontext(bc.exact_context()):
                    usable = segment.amount - used.get((row.id, index), Decimal(0))
                if usable > 0:
                    parts.setdefault(key, []).append(bc.BalancePart(
                        grant_id=row.id, usable=grant.amount.with_amount(usable),
                        expires_at=segment.ends_before,
                        priority=grant.priority))
        if unit is not None and unit not in units:
            units[unit] = _unit_money(unit)
        return [
            bc.Balance(
                customer_id=customer_id,
                usable=money.with_amount(bc.exact_sum(p.usable.amount for p in parts.get(key, ()))),
                pending=money.with_amount(Decimal(0)),
                parts=tuple(parts.get(key, ())),
                as_of=moment,
                source="local ledger: open windows less consumed entries (no pending invoices)",
            )
            for key, money in sorted(units.items())
        ]

    def _ledger_page(
        self, customer_id: str, grant_id: str | None, since: datetime | None, cursor: str | None
    ) -> bc.Flow[bc.LedgerPage]:
        now = self._clock()
        rows, stored = yield bc.blocking(
            lambda: self._store.customer_ledger(customer_id, None), label="ledger")
        if grant_id is not None and not any(row.id == grant_id for row in rows):
            raise bc.NotFoundError(f"no grant {grant_id!r} of customer {customer_id!r}",
                                   provider=self.name, status=404)
        grants = {row.id: (row, self._read(row)) for row in rows}
        keyed: list[tuple[tuple[Any, ...], bc.LedgerEntry]] = []
        for row_entry in stored:
            entry = row_entry
            money = grants[entry.grant_id][1].amount if entry.grant_id in grants else None
            if entry.kind == "granted" and entry.grant_id in grants:
                # A grant backdated to before its creation was granted when its first window
                # opened: consumption and expiry in that window must not come before it.
                opened = _text(grants[entry.grant_id][1].segments[0].starts_at) or entry.at
                entry = dataclasses.replace(entry, at=min(entry.at, opened))
            keyed.append((_entry_key(entry.at, entry.kind, entry.seq, entry.grant_id,
                                     entry.segment), self._entry(entry, money)))
        for row, grant in grants.values():
            keyed += self._expiries(row, grant, now)
        keyed.sort(key=lambda pair: pair[0])
        # The running balance: the customer's credit in the entry's unit after it, every grant
        # and window still to come included (the sum of the ledger so far).
        running: dict[str, Decimal] = {}
        with decimal.localcontext(bc.exact_context()):
            for i, (key, entry) in enumerate(keyed):
                unit = entry.amount.unit_key
                running[unit] = running.get(unit, Decimal(0)) + entry.amount.amount
                keyed[i] = (key, entry.model_copy(update={
                    "running_balance": entry.amount.with_amount(running[unit])}))
        if grant_id is not None:
            keyed = [(key, entry) for key, entry in keyed if entry.grant_id == grant_id]
        after = tuple(json.loads(cursor)) if cursor else None
        chosen = [
            (key, entry) for key, entry in keyed
            if (since is None or entry.at >= since) and (after is None or key > after)
        ]
        page = chosen[:DEFAULT_PAGE_SIZE]
        more = len(chosen) > DEFAULT_PAGE_SIZE
        return bc.LedgerPage([entry for _, entry in page],
                             json.dumps(list(page[-1][0])) if more else None)

    def _entry(self, entry: EntryRow, money: bc.Money | None) -> bc.LedgerEntry:
        amount = (money or _unit_money(entry.unit)).with_amount(Decimal(entry.amount))
        return bc.LedgerEntry(
            customer_id=entry.customer_id, grant_id=entry.grant_id,
            kind=bc.LedgerKind(entry.kind), amount=amount, at=_moment(entry.at),
            reference=entry.reference, vendor_id=f"lle_{entry.seq}")

    def _expiries(self, row: Row, grant: bc.CreditGrant,
                  now: datetime) -> list[tuple[tuple[Any, ...], bc.LedgerEntry]]:
        """Credit left in windows that ended (before any void): an expiry, read, not stored."""
        ended_by = now if row.voided_at is None else min(now, _moment(row.voided_at))
        found = []
        for index, (segment, amount, used) in enumerate(_windows(grant, row)):
            end = segment.ends_before
            with decimal.localcontext(bc.exact_context()):
                left = amount - used
            if end is None or end > ended_by or left <= 0:
                continue
            key = _entry_key(_text(end) or "", "expired", 0, row.id, index)
            found.append((key, bc.LedgerEntry(
                customer_id=row.customer_id, grant_id=row.id, kind=bc.LedgerKind.EXPIRED,
                amount=grant.amount.with_amount(left.copy_negate()), at=end,
                vendor_id=f"lle_expiry_{row.id}_{index}")))
        return found

    def _update(self, grant_id: str, update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
        changes = update.changes()

        def work(tx: Transaction) -> Row | None:
            row = tx.grant(grant_id)
            if row is None:
                return None
            if row.voided_at is not None:
                raise bc.ConflictError("a voided grant cannot be changed", provider=self.name)
            request = row.request
            columns: dict[str, Any] = {}
            if "name" in changes:
                request["name"] = changes["name"]
            if "metadata" in changes:
                request["metadata"] = changes["metadata"] or {}
            if "expires_at" in changes:
                columns["expires_at"] = _text(changes["expires_at"])
                request.update(self._new_expiry(tx, row, changes["expires_at"]))
            columns["request_json"] = json.dumps(request, sort_keys=True)
            self._read(dataclasses.replace(row, **columns))  # validate before committing
            tx.set_columns(grant_id, columns)
            return tx.grant(grant_id)

        row = yield bc.blocking(lambda: self._store.transaction(work), label="update")
        return self._read(self._found(row, grant_id))

    def _new_expiry(self, tx: Transaction, row: Row, expires_at: datetime | None) -> dict[str, Any]:
        """The request fields for a new end of the grant's (last) window; refused when credit
        was consumed from that window at or after the new end."""
        grant = self._read(row)
        last = len(grant.segments) - 1
        if expires_at is not None and expires_at <= grant.segments[last].starts_at:
            raise bc.InvalidGrantError([bc.FieldProblem(
                "expires_at", "must be after the start of the grant's (last) window")],
                model="GrantUpdate")
        if expires_at is not None:
            late = [e for e in tx.grant_entries(row.id)
                    if e.kind == "consumed" and e.segment == last and _moment(e.at) >= expires_at]
            if late:
                raise bc.ConflictError(
                    f"credit of this window was consumed at {late[0].at}, at or after the new "
                    f"expiry {expires_at.isoformat()}", provider=self.name)
        if grant.schedule is None:
            return {"expires_at": _text(expires_at)}
        segments = [s.model_dump(mode="json") for s in grant.schedule]
        segments[-1]["ends_before"] = _text(expires_at)
        return {"expires_at": _text(expires_at), "schedule": segments}

    def _consume(self, usage: bc.Usage) -> bc.Flow[list[bc.LedgerEntry]]:
        now = self._clock()
        if usage.at > now:
            raise bc.BadRequestError(
                f"usage at {usage.at.isoformat()} is in the future; record usage when it "
                "happens", provider=self.name)
        reference = usage.reference
        if reference is None:
            raise bc.InvalidGrantError([bc.FieldProblem("reference", "required")], model="Usage")
        digest = request_hash({
            "customer_id": usage.customer_id,
            "amount": str(usage.amount.amount.normalize(bc.exact_context())),
            "unit": usage.amount.unit_key, "product_id": usage.product_id,
        })  # not ``at``: a retry without one takes a new "now", and is still the same usage
        unit = usage.amount.unit_key

        def work(tx: Transaction) -> tuple[list[Row], list[EntryRow]]:
            found = tx.usage(reference)
            if found is not None:
                if found[1] != digest:
                    raise bc.ConflictError(
                        f"usage reference {reference!r} was applied before to other usage",
                        provider=self.name, code="reference_reused")
                return tx.customer_rows(found[0]), tx.entries_for(reference)
            rows = [r for r in tx.customer_rows(usage.customer_id)
                    if r.voided_at is None and r.unit == unit]
            grants = [self._read(r) for r in rows]
            already = {(row.id, i): used for row, grant in zip(rows, grants, strict=True)
                       for i, used in enumerate(_used(row, grant))}
            plan = bc.allocate(grants, [usage], bc.LOCAL_ORDER, already=already, until=usage.at)
            if plan.uncovered:
                short = plan.uncovered[0][1]
                raise bc.ConflictError(
                    f"insufficient credit: {short} of {usage.amount} is not covered by "
                    f"{usage.customer_id}'s grants at {usage.at.isoformat()}; nothing consumed",
                    provider=self.name, code="insufficient_credit")
            recorded = _text(now) or ""
            totals = {row.id: _used(row, grant) for row, grant in zip(rows, grants, strict=True)}
            for draw in plan.draws:
                with decimal.localcontext(bc.exact_context()):
                    totals[draw.grant_id][draw.segment] += draw.amount
            self._check_representable(usage, plan, rows, grants, totals)
            for draw in plan.draws:
                tx.add_entry(usage.customer_id, draw.grant_id, draw.segment, "consumed",
                             signed(draw.amount.copy_negate()), unit, _text(usage.at) or "",
                             reference, recorded)
            for gid in {draw.grant_id for draw in plan.draws}:
                tx.set_columns(gid, {"consumed_json": json.dumps([str(u) for u in totals[gid]])})
            tx.add_usage(reference, usage.customer_id, digest, _text(usage.at) or "", recorded)
            return rows, tx.entries_for(reference)

        rows, entries = yield bc.blocking(lambda: self._store.transaction(work), label="consume")
        money = {row.id: self._read(row).amount for row in rows}
        return [self._entry(e, money.get(e.grant_id or "")) for e in entries]

    def _check_representable(self, usage: bc.Usage, plan: bc.Allocation, rows: list[Row],
                             grants: list[bc.CreditGrant],
                             totals: dict[str, list[Decimal]]) -> None:
        """Refuse, before anything is written, a consumption whose entries or whose grants'
        remaining amounts are not amounts the model can hold (more than ``MAX_DIGITS``
        significant digits: 10^38 less 10^-40, say): written, they would make the customer's
        grants, balance and ledger unreadable."""
        problems = [f"{draw.amount} drawn from grant {draw.grant_id}" for draw in plan.draws
                    if not _representable(draw.amount, usage.amount)]
        for row, grant in zip(rows, grants, strict=True):
            for index, (segment, used) in enumerate(
                    zip(grant.segments, totals[row.id], strict=False)):
                with decimal.localcontext(bc.exact_context()):
                    left = segment.amount - used
                if not _representable(left, usage.amount):
                    problems.append(f"{left} left in window {index} of grant {row.id}")
            if not problems:
                try:  # the grant as it would be stored, its remaining balance included
                    self._read(dataclasses.replace(row, consumed_json=json.dumps(
                        [str(u) for u in totals[row.id]])))
                except bc.InvalidGrantError:
                    problems.append(f"the remaining balance of grant {row.id}")
        if problems:
            from billing_credits._money import MAX_DIGITS

            raise bc.ConflictError(
                f"consuming {usage.amount} would leave amounts of more than {MAX_DIGITS} "
                f"significant digits ({'; '.join(problems[:3])}); nothing consumed",
                provider=self.name, code="not_representable")

    # -- helpers ------------------------------------------------------------------------

    def _found(self, row: Row | None, grant_id: str) -> Row:
        if row is None:
            raise bc.NotFoundError(f"no grant {grant_id!r}", provider=self.name, status=404)
        return row

    def _read(self, row: Row) -> bc.CreditGrant:
        """A stored row as a read-back grant, with status and balance as of now."""
        now = self._clock()
        request = row.request
        grant = bc.CreditGrant.model_validate(
            {**request, "idempotency_key": row.idempotency_key if row.key_supplied else None}
        )
        status = bc.GrantStatus.VOIDED if row.voided_at is not None else grant.status_at(now)
        remaining = Decimal(0)
        if status is not bc.GrantStatus.VOIDED:
            remaining = bc.exact_sum(
                amount - used for (segment, amount, used) in _windows(grant, row)
                if segment.ends_before is None or segment.ends_before > now)
        return bc.CreditGrant.model_validate({
            **grant.model_dump(),
            "id": row.id,
            "provider": self.name,
            "status": status,
            "balance": grant.amount.with_amount(remaining),
            "created_at": row.created_at,
        })


def _migrated_under(row: Row, key: str) -> bool:
    """Whether ``row`` is a migrated grant that took over the application's key ``key``.

    Such a grant is the application's grant moved here (its amount may be what was left, its
    metadata names the source): a later create with that key is a replay of it, not a new
    grant and not a conflict.
    """
    metadata = row.request.get("metadata") or {}
    return isinstance(metadata, dict) and metadata.get(bc.MIGRATED_KEY) == key


_RANK = {"granted": 0, "consumed": 1, "adjusted": 2, "expired": 3, "voided": 4}


def _entry_key(at: str, kind: str, seq: int, grant_id: str | None,
               segment: int | None) -> tuple[Any, ...]:
    """Where an entry sorts in a ledger: by time, then granted before consumed before expired
    before voided, then as written; the cursor of a page is its last entry's key."""
    return (at, _RANK.get(kind, 9), seq, grant_id or "", -1 if segment is None else segment)


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _unit_money(unit: str) -> bc.Money:
    """Zero in the unit named by a ``Money.unit_key``."""
    if unit.startswith("unit:"):
        return bc.Money(amount=Decimal(0), unit=bc.CreditUnit(id=unit.removeprefix("unit:")))
    return bc.Money(amount=Decimal(0), currency=unit)


def _representable(amount: Decimal, like: bc.Money) -> bool:
    """Whether ``amount`` is one the model accepts in ``like``'s unit (``Money``'s digit limits)."""
    try:
        like.with_amount(amount)
    except bc.InvalidGrantError:
        return False
    return True


def _used(row: Row, grant: bc.CreditGrant) -> list[Decimal]:
    """What was consumed from each window of ``grant`` (stored ``row``), one per window."""
    used = row.consumed
    count = len(grant.schedule or (None,))
    return (used + [Decimal(0)] * count)[:count]


def _windows(grant: bc.CreditGrant, row: Row) -> list[tuple[bc.Segment, Decimal, Decimal]]:
    """(window, amount, consumed) for each access window of a stored grant."""
    return [(segment, segment.amount, used)
            for segment, used in zip(grant.segments, _used(row, grant), strict=True)]


def _excluded() -> frozenset[str]:
    """Fields outside the canonical form (read at call time: the models load lazily)."""
    return frozenset(bc.CreditGrant.read_back_fields()) | {"idempotency_key"}


def _canonical(grant: bc.CreditGrant) -> dict[str, Any]:
    """The request fields with amounts normalized (``10`` and ``10.00`` are the same grant).

    Stored request hashes depend on this exact output: change what it returns, never how.
    """
    context = bc.exact_context()

    plain = (str, bool, int, type(None))

    def normal(value: Any) -> Any:
        kind = type(value)
        if kind in plain:
            return value
        if kind is dict:
            return {k: v if type(v) in plain else normal(v) for k, v in value.items()}
        if kind is tuple or kind is list:
            return [v if type(v) in plain else normal(v) for v in value]
        if isinstance(value, Decimal):
            return str(value.normalize(context))
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [normal(v) for v in value]
        if isinstance(value, enum.Enum):
            return value.value
        return value

    fields = grant.model_dump(exclude=set(_excluded()))
    result: dict[str, Any] = normal(fields)
    return result


def _canonical_from_request(grant: bc.CreditGrant, request: dict[str, Any]) -> dict[str, Any]:
    """``_canonical(grant)``, built from the grant's JSON request fields (already computed for
    storage) by fixing only the exact numbers and times: the same result, a third the work.
    A property test holds it equal to ``_canonical``."""
    context = bc.exact_context()

    def number(value: Decimal) -> str:
        return str(value.normalize(context))

    def money(value: bc.Money | None, data: Any) -> Any:
        return None if value is None else {**data, "amount": number(value.amount)}

    excluded = _excluded()
    result = {key: value for key, value in request.items() if key not in excluded}
    result["amount"] = money(grant.amount, request["amount"])
    result["paid_amount"] = money(grant.paid_amount, request["paid_amount"])
    result["priority"] = None if grant.priority is None else number(grant.priority)
    result["effective_at"] = None if grant.effective_at is None else grant.effective_at.isoformat()
    result["expires_at"] = None if grant.expires_at is None else grant.expires_at.isoformat()
    if grant.schedule is not None:
        result["schedule"] = [
            {**data, "amount": number(segment.amount),
             "starts_at": segment.starts_at.isoformat(),
             "ends_before": None if segment.ends_before is None else segment.ends_before.isoformat()}
            for segment, data in zip(grant.schedule, request["schedule"], strict=True)]
    return result


def _truncated(grant: bc.CreditGrant, now: datetime) -> dict[str, Any]:
    """The request fields of ``grant`` ended at ``now``: later segments dropped, the current
    one cut short."""
    if grant.schedule is None:
        return {"expires_at": _text(now)}
    kept = [s for s in grant.schedule if s.starts_at < now]
    last = kept[-1]
    if last.ends_before is None or last.ends_before > now:
        kept[-1] = bc.Segment(amount=last.amount, starts_at=last.starts_at, ends_before=now,
                              id=last.id)
    total = bc.exact_sum(s.amount for s in kept)
    return {
        "expires_at": _text(now),
        "schedule": [s.model_dump(mode="json") for s in kept],
        "amount": grant.amount.with_amount(total).model_dump(mode="json"),
    }
