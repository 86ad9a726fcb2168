"""The local provider's flows: each operation is written once and runs sync or async."""

from __future__ import annotations

import dataclasses
import decimal
import json
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import billing_credits as bc

from ._canonical import (
    _REQUEST_JSON,
    NOTHING_CONSUMED,
    _canonical_from_request,
    _grant_id,
    _grant_ids,
    _request_excluded,
    canonical_text,
    iso_and_stored,
)
from ._sqlite import SqliteStore
from ._store import (
    SCHEMA_VERSION,
    EntryRow,
    GrantStore,
    Lot,
    Row,
    Tx,
    Unavailable,
    grant_of,
    is_url,
    lots_of,
    request_hash,
    signed,
    text_hash,
)

__all__ = ["LocalProvider", "default_database_path", "open_store"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
R = TypeVar("R")


def default_database_path() -> Path:
    """``$BILLING_CREDITS_DB`` (a path), else ``credits.db`` in the user's data directory."""
    if (configured := os.environ.get("BILLING_CREDITS_DB")) and not is_url(configured):
        return Path(configured).expanduser()
    import platformdirs

    return platformdirs.user_data_path("billing-credits") / "credits.db"


def _target(path: str | os.PathLike[str] | None, url: str | None) -> str | Path:
    """Where the ledger lives: ``url``, else ``path`` (which may be a URL too), else
    ``$BILLING_CREDITS_DB`` (a path or a ``postgresql://`` URL), else the default file."""
    if url is not None:
        if not is_url(url):
            raise bc.ConfigurationError(
                "url: give a postgresql:// URL (postgresql://user@host:5432/database)")
        return url
    if path is not None:
        text = os.fspath(path)
        return text if is_url(text) else Path(text).expanduser()
    configured = os.environ.get("BILLING_CREDITS_DB")
    if configured and is_url(configured):
        return configured
    return default_database_path()


def open_store(target: str | Path, clock: Callable[[], datetime], *, server_clock: bool = True,
               upgrade: bool = True) -> GrantStore:
    """The store for a path or a ``postgresql://`` URL (``upgrade=False``: opened to look, as
    ``billing-credits db upgrade --dry-run`` does, never changed)."""
    if isinstance(target, str) and is_url(target):
        bc.register_secret(urlsplit(target).password)  # before anything can echo the URL
        from ._postgres import PostgresStore  # psycopg loads only for a PostgreSQL ledger

        try:
            return PostgresStore(target, clock, server_clock=server_clock, upgrade=upgrade)
        except Unavailable as error:
            mapped = _unavailable(error)
        raise mapped  # outside the handler: nothing chained to it
    try:
        return SqliteStore(Path(target), clock, upgrade=upgrade)
    except (sqlite3.Error, OSError, ValueError) as error:
        problem = " ".join(str(error).split()) or type(error).__name__
    # Outside the handler: a path the database cannot live at is a setting to fix.
    raise bc.ConfigurationError(
        f"path {str(target)!r}: cannot be used as the local database ({problem})")


def _unavailable(error: Unavailable) -> bc.ProviderError:
    """The error a caller sees, with no chained exception (which would hold the driver's
    connection, credentials included)."""
    mapped: bc.ProviderError
    if error.refused:
        mapped = bc.AuthenticationError(str(error), provider="local", code="authentication_failed")
    else:
        mapped = bc.UnavailableError(str(error), provider="local", code="database_unavailable")
    return mapped


def _corrupted(provider: str, what: str, error: BaseException) -> bc.InvalidResponseError:
    problem = " ".join(str(error).split())[:300] or type(error).__name__
    if not isinstance(error, bc.BillingCreditsError):
        problem = f"{type(error).__name__}: {problem}"
    return bc.InvalidResponseError(f"{what} cannot be read (edited or corrupted outside "
                                   f"billing-credits?): {problem}", provider=provider,
                                   code="corrupted_row")


def _now() -> datetime:
    return datetime.now(UTC)


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


class LocalProvider(bc.Provider):
    """Grants in a SQLite file on this machine, or in a PostgreSQL database several
    application servers share: every neutral field, stored exactly; a credits ledger."""

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
        bc.Setting("path", "SQLite database file (default: per-user data directory); "
                   "BILLING_CREDITS_DB may hold a postgresql:// URL instead",
                   env="BILLING_CREDITS_DB"),
        bc.Setting("url", "PostgreSQL database, postgresql://user@host:5432/database (needs "
                   "billing-credits[postgres]; the password is never printed)"),
    )

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        clock: Callable[[], datetime] = _now,
        runtime: bc.Runtime | None = None,
    ) -> None:
        super().__init__(runtime=runtime or bc.Runtime(retry=bc.RetryPolicy(attempts=1)))
        target = _target(path, url)
        self._clock = clock
        self.path: Path | None = target if isinstance(target, Path) else None
        self._store = open_store(target, clock, server_clock=clock is _now)
        self._moneys: dict[str, bc.Money] = {}

    @classmethod
    def upgrade_database(cls, *, dry_run: bool = False, path: str | None = None,
                         url: str | None = None) -> list[str]:
        """Bring the database (``path``/``url`` as for the provider; default
        ``$BILLING_CREDITS_DB``) to this release's schema, in one transaction; return what it
        did, one line a step (``dry_run``: what it would do, changing nothing). Opening a
        provider does the same; ``billing-credits db upgrade`` runs this."""
        target = _target(path, url)
        looking = open_store(target, _now, upgrade=False)
        mapped: bc.ProviderError | None = None
        try:
            steps = looking.upgrade_steps()  # refuses a database newer than this release
            current = looking.version() == SCHEMA_VERSION
        except Unavailable as error:
            mapped = _unavailable(error)
        finally:
            looking.close()
        if mapped is not None:
            raise mapped
        if dry_run or current:
            return steps
        open_store(target, _now).close()
        return [*steps, f"done: {looking.address()} is at schema {SCHEMA_VERSION}"]

    def identity(self) -> str:
        if self.path is None:
            return f"local:{self._store.address()}"
        return f"local:{self.path.resolve()}"

    def now(self) -> datetime:
        return self._clock()

    def close(self) -> None:
        self._store.close()

    def __repr__(self) -> str:
        if self.path is None:
            return f"<LocalProvider {self._store.address()}>"
        return f"<LocalProvider path={str(self.path)!r}>"

    def _call(self, work: Callable[[], R]) -> R:
        """Run a store call; the database being away is a retryable ``UnavailableError``; a
        stored row that cannot be read (edited or corrupted behind the provider's back: bad
        JSON, an amount that is not a number) or a broken database file is
        ``InvalidResponseError``, never the driver's or the parser's exception."""
        mapped: bc.ProviderError
        try:
            return work()
        except bc.BillingCreditsError:
            raise
        except Unavailable as error:
            mapped = _unavailable(error)
        except sqlite3.OperationalError as error:
            mapped = bc.UnavailableError(f"the local database: {error}", provider=self.name,
                                         code="database_unavailable")
        except (sqlite3.Error, ValueError, ArithmeticError, TypeError, KeyError) as error:
            mapped = _corrupted(self.name, "the local database", error)
        raise mapped  # outside the handler: nothing chained to it (the driver's connection)

    def _tx(self, work: Callable[[Tx], R]) -> Callable[[], R]:
        return lambda: self._call(lambda: self._store.transaction(work))

    # -- flows --------------------------------------------------------------------------

    def import_batch(self, grants: list[bc.CreditGrant]) -> list[bool | bc.BillingCreditsError]:
        """Create many keyed grants in one transaction (for ``import_grants``); safe to repeat.

        ``grants`` are validated neutral grants, each with an idempotency key. For each: True
        when created, False when its key was there already (same grant), or the error that
        refused it (not representable, or the key used for a different grant).
        """
        results: list[bool | bc.BillingCreditsError] = []
        rows: list[tuple[Row, bc.CreditGrant]] = []
        places: list[int] = []
        ids = _grant_ids(len(grants))
        now = _text(self._clock())  # the batch's grants are created together
        for grant, grant_id in zip(grants, ids, strict=True):
            try:
                if grant.idempotency_key is None or grant.is_read_back():
                    raise bc.InvalidGrantError([bc.FieldProblem(
                        "idempotency_key", "a batch import needs keyed, new grants")])
                self.check(grant)
                row = self._row(grant, grant.idempotency_key, grant_id, now)
                # "now" as start must still read back (as in _create); it gives the window too
                rows.append((row, grant if grant.effective_at is not None
                             else self._read_row(row, None)))
                places.append(len(results))
                results.append(True)
            except bc.BillingCreditsError as error:
                results.append(error)
        stored = self._call(lambda: self._store.insert_many(rows))
        for place, (row, _), found in zip(places, rows, stored, strict=True):
            if found is not None:
                same = found.request_hash == row.request_hash or _migrated_under(
                    found, row.idempotency_key)
                results[place] = False if same else \
                    bc.ConflictError(f"idempotency key {row.idempotency_key!r} was used for a "
                                     f"different grant ({found.id})", provider=self.name,
                                     code="idempotency_key_reused")
        return results

    def _row(self, grant: bc.CreditGrant, idempotency_key: str,
             grant_id: str | None = None, now: str | None = None) -> Row:
        """The row storing ``grant``: its request serialised once (by pydantic, to JSON text)
        and its canonical form written directly for the hash (``canonical_text``; read back
        from the JSON for an uncommon grant); "now" as start made the row's time. A batch
        gives its ids and its one creation time (``now``, stored text)."""
        now = now or _text(self._clock()) or ""
        if grant.effective_at is not None:
            # (``model_dump_json(exclude=...)`` without its Python wrapper)
            request_json = grant.__pydantic_serializer__.to_json(
                grant, exclude=_request_excluded()).decode()
            times = iso_and_stored(grant.effective_at), iso_and_stored(grant.expires_at)
            text = canonical_text(grant, times[0][0], times[1][0])  # the common grant
            digest = text_hash(text) if text is not None else request_hash(
                _canonical_from_request(grant, json.loads(request_json), times))
            effective, expires = times[0][1] or "", times[1][1]
        else:
            request = grant.request_fields()
            request.pop("idempotency_key")
            digest = request_hash(_canonical_from_request(grant, request))
            request["effective_at"] = effective = now
            request_json = _REQUEST_JSON.encode(request)
            expires = _text(grant.expires_at)
        money = grant.amount
        return Row(0, grant_id or _grant_id(), grant.customer_id, idempotency_key,
                   grant.idempotency_key is not None, digest, str(money.amount), money.unit_key,
                   request_json, effective, expires, None, now,
                   NOTHING_CONSUMED if grant.schedule is None
                   else (Decimal(0),) * len(grant.schedule))

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        row = self._row(grant, idempotency_key)
        digest = row.request_hash
        back = self._read_row(row, None)  # what is stored must read back: refuse it here, not on every list
        lots = lots_of(row, back)
        stored, created = yield bc.blocking(
            lambda: self._call(lambda: self._store.insert(row, lots)), label="insert")
        if created:
            return back.model_copy(update={"replayed": False})
        if stored.request_hash != digest and not _migrated_under(stored, idempotency_key):
            raise bc.ConflictError(
                f"idempotency key {idempotency_key!r} was used for a different grant "
                f"({stored.id})",
                provider=self.name,
                code="idempotency_key_reused",
            )
        return self._read(stored).model_copy(update={"replayed": True})

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        limit = min(query.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = int(cursor) if cursor else 0
        rows, more = yield bc.blocking(
            lambda: self._call(lambda: self._store.page(query.customer_id, after, limit)),
            label="page")
        # A row that cannot be read is reported (``on_unreadable``), never stops the listing.
        grants, unreadable = bc.read_items(self.name, rows, self._read, lambda row: row.id)
        return bc.Page(grants, str(rows[-1].seq) if more and rows else None, unreadable)

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        row = yield bc.blocking(lambda: self._call(lambda: self._store.get(grant_id)),
                                label="get")
        return self._read(self._found(row, grant_id))

    def _void(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        def work(tx: Tx) -> Row | None:
            row = tx.grant(grant_id, lock=True)
            if row is None or row.voided_at is not None:
                return row
            lots = tx.grant_lots(grant_id, lock=True)
            now = tx.now()  # after the locks: nothing can commit between this time and ours
            # What was left in windows not ended by now is voided; ended ones expired before.
            left = bc.exact_sum(lot.remaining for lot in lots
                                if lot.ends_before is None or lot.ends_before > now)
            tx.set_grant(grant_id, voided_at=now)
            tx.add_entry(row.customer_id, row.id, None, "voided", left.copy_negate(), row.unit,
                         now, None, now)
            return tx.grant(grant_id)

        row = yield bc.blocking(self._tx(work), label="void")
        return self._read(self._found(row, grant_id))

    def _expire(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        def work(tx: Tx) -> Row | None:
            row = tx.grant(grant_id, lock=True)
            if row is None:
                return None
            lots = tx.grant_lots(grant_id, lock=True)
            now = tx.now()  # after the locks (see _void)
            grant = self._read(row, now)
            if grant.status is bc.GrantStatus.VOIDED:
                raise bc.ConflictError("a voided grant cannot be expired", provider=self.name)
            if grant.status is bc.GrantStatus.EXPIRED:
                return row
            if grant.effective_at is not None and now <= grant.effective_at:
                raise bc.ConflictError(
                    "the grant is not effective yet and cannot expire before it starts; "
                    "void it instead", provider=self.name)
            request = row.request
            request.update(_truncated(grant, now))
            kept = len(request.get("schedule") or (None,))
            request_json = json.dumps(request, sort_keys=True)
            self._read_row(row._replace(expires_at=_text(now), request_json=request_json,
                                        consumed=row.consumed[:kept]), now)  # validate first
            # Windows still to come are dropped: what they held expires now, as a row.
            dropped = bc.exact_sum(lot.remaining for lot in lots[kept:])
            tx.set_grant(grant_id, request_json=request_json, expires_at=now)
            tx.drop_windows(grant_id, kept)
            last = lots[kept - 1]
            if last.ends_before is None or last.ends_before > now:
                tx.end_window(grant_id, kept - 1, now)
            if dropped:
                tx.add_entry(row.customer_id, row.id, None, "expired", dropped.copy_negate(),
                             row.unit, now, None, now)
            return tx.grant(grant_id)

        row = yield bc.blocking(self._tx(work), label="expire")
        return self._read(self._found(row, grant_id))

    # -- balances, ledger, updates, consumption ------------------------------------------

    def _money(self, text: str) -> bc.Money:
        """A unit stored as JSON, as zero ``Money`` (cached: a handful of units per ledger)."""
        found = self._moneys.get(text)
        if found is None:
            found = bc.Money.model_validate({**json.loads(text), "amount": "0"})
            self._moneys[text] = found
        return found

    def _balance(
        self, customer_id: str, unit: str | None, at: datetime | None
    ) -> bc.Flow[list[bc.Balance]]:
        moment = at or self._clock()
        lots, later = yield bc.blocking(
            lambda: self._call(lambda: self._store.balance_lots(customer_id, unit, moment)),
            label="balance")
        # What was left at ``moment``: what is left now, plus what was consumed after it.
        back: dict[tuple[str, int], Decimal] = {}
        units: dict[str, bc.Money] = {}
        parts: dict[str, list[bc.BalancePart]] = {}
        with decimal.localcontext(bc.exact_context()):
            for gid, segment, amount in later:
                back[(gid, segment)] = back.get((gid, segment), Decimal(0)) + amount
            for lot in lots:
                if lot.unit not in units:
                    units[lot.unit] = self._money(lot.money)
                if not (lot.starts_at <= moment and (
                        lot.ends_before is None or moment < lot.ends_before)):
                    continue
                usable = lot.remaining + back.get((lot.grant_id, lot.idx), Decimal(0))
                if usable > 0:
                    parts.setdefault(lot.unit, []).append(bc.BalancePart(
                        grant_id=lot.grant_id, usable=units[lot.unit].with_amount(usable),
                        expires_at=lot.ends_before, priority=lot.priority))
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
            lambda: self._call(lambda: self._store.customer_ledger(customer_id)), label="ledger")
        if grant_id is not None and not any(row.id == grant_id for row in rows):
            raise bc.NotFoundError(f"no grant {grant_id!r} of customer {customer_id!r}",
                                   provider=self.name, status=404)
        try:
            keyed = self._keyed(rows, stored, now)
        except (ValueError, ArithmeticError, TypeError, KeyError) as error:
            problem = error
        else:
            after = tuple(json.loads(cursor)) if cursor else None
            chosen = [(key, entry) for key, entry in keyed
                      if (grant_id is None or entry.grant_id == grant_id)
                      and (since is None or entry.at >= since) and (after is None or key > after)]
            page, more = chosen[:DEFAULT_PAGE_SIZE], len(chosen) > DEFAULT_PAGE_SIZE
            return bc.LedgerPage([entry for _, entry in page],
                                 json.dumps(list(page[-1][0])) if more else None)
        raise _corrupted(self.name, f"the ledger of customer {customer_id}", problem)

    def _keyed(self, rows: list[Row], stored: list[EntryRow],
               now: datetime) -> list[tuple[tuple[Any, ...], bc.LedgerEntry]]:
        """A customer's whole ledger in order, keyed, each entry with its running balance."""
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
            for i, (key, line) in enumerate(keyed):
                unit = line.amount.unit_key
                running[unit] = running.get(unit, Decimal(0)) + line.amount.amount
                keyed[i] = (key, line.model_copy(update={
                    "running_balance": line.amount.with_amount(running[unit])}))
        return keyed

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

        def work(tx: Tx) -> Row | None:
            row = tx.grant(grant_id, lock=True)
            if row is None:
                return None
            if row.voided_at is not None:
                raise bc.ConflictError("a voided grant cannot be changed", provider=self.name)
            lots = tx.grant_lots(grant_id, lock=True)
            now = tx.now()  # after the locks (see _void)
            request = row.request
            if "name" in changes:
                request["name"] = changes["name"]
            if "metadata" in changes:
                request["metadata"] = changes["metadata"] or {}
            changed = row
            if "expires_at" in changes:
                changed = changed._replace(expires_at=_text(changes["expires_at"]))
                request.update(self._new_expiry(tx, row, changes["expires_at"], now))
            request_json = json.dumps(request, sort_keys=True)
            self._read_row(changed._replace(request_json=request_json), now)  # validate
            if "expires_at" in changes:
                tx.set_grant(grant_id, request_json=request_json, expires_at=changes["expires_at"])
                tx.end_window(grant_id, lots[-1].idx, changes["expires_at"])
            else:
                tx.set_grant(grant_id, request_json=request_json)
            return tx.grant(grant_id)

        row = yield bc.blocking(self._tx(work), label="update")
        return self._read(self._found(row, grant_id))

    def _new_expiry(self, tx: Tx, row: Row, expires_at: datetime | None,
                    now: datetime) -> dict[str, Any]:
        """The request fields for a new end of the grant's (last) window; refused when credit
        was consumed from that window at or after the new end."""
        grant = self._read(row, now)
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

    def consume(
        self, customer_id: str, amount: bc.Money, *, at: datetime | None = None, reference: str,
        product_id: str | None = None,
    ) -> list[bc.LedgerEntry]:
        usage = self.prepare_usage(customer_id, amount, at=at, reference=reference,
                                   product_id=product_id)
        return self.runtime.run(self._consume(usage, at_now=at is None))

    async def aconsume(
        self, customer_id: str, amount: bc.Money, *, at: datetime | None = None, reference: str,
        product_id: str | None = None,
    ) -> list[bc.LedgerEntry]:
        usage = self.prepare_usage(customer_id, amount, at=at, reference=reference,
                                   product_id=product_id)
        return await self.runtime.arun(self._consume(usage, at_now=at is None))

    def _consume(self, usage: bc.Usage, at_now: bool = False) -> bc.Flow[list[bc.LedgerEntry]]:
        """``at_now``: the usage was given no time; it takes the transaction's."""
        if not at_now and usage.at > self._clock():
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

        def work(tx: Tx) -> tuple[list[bc.LedgerEntry], bool]:
            """The entries, and whether their running balances are set (else: to read)."""
            # Lock the customer's lots first: a second consume of this customer waits here,
            # then finds the reference the first one recorded.
            lots = tx.spendable_lots(usage.customer_id, unit)
            found = tx.usage(reference)
            if found is not None:
                if found[1] != digest:
                    raise bc.ConflictError(
                        f"usage reference {reference!r} was applied before to other usage",
                        provider=self.name, code="reference_reused")
                stored = tx.entries_for(reference)
                moneys = tx.moneys({e.grant_id for e in stored if e.grant_id})
                return [self._entry(e, self._money(moneys[e.grant_id]) if e.grant_id in moneys
                                    else None) for e in stored], False
            now = tx.now()  # after the lock: no later transaction can be dated before it
            at = now if at_now else usage.at
            if at > now:
                raise bc.BadRequestError(
                    f"usage at {at.isoformat()} is in the future; record usage when it "
                    "happens", provider=self.name)
            draws, short = self._draws(tx, lots, usage, at)
            if short > 0:
                raise bc.ConflictError(
                    f"insufficient credit: {short} of {usage.amount} is not covered by "
                    f"{usage.customer_id}'s grants at {at.isoformat()}; nothing consumed",
                    provider=self.name, code="insufficient_credit")
            self._check_representable(tx, usage, draws)
            # The balance before this usage as list_ledger reads it, None: read it back after.
            running = tx.balance_before(usage.customer_id, unit, at, now, lots)
            entries: list[bc.LedgerEntry] = []
            for lot, take in draws:
                amount = take.copy_negate()
                seq = tx.add_entry(usage.customer_id, lot.grant_id, lot.idx, "consumed", amount,
                                   unit, at, reference, now)
                with decimal.localcontext(bc.exact_context()):
                    tx.set_remaining(lot.grant_id, lot.idx, lot.remaining - take)
                    running = None if running is None else running - take
                money = self._money(lot.money)
                entries.append(bc.LedgerEntry(
                    customer_id=usage.customer_id, grant_id=lot.grant_id,
                    kind=bc.LedgerKind.CONSUMED, amount=money.with_amount(
                        Decimal(signed(amount))), at=at, reference=reference,
                    vendor_id=f"lle_{seq}", running_balance=None if running is None
                    else money.with_amount(running)))
            tx.add_usage(reference, usage.customer_id, digest, at, now)
            return entries, running is not None

        done: tuple[list[bc.LedgerEntry], bool] = yield bc.blocking(self._tx(work),
                                                                    label="consume")
        if done[1] or not done[0]:
            return done[0]
        # Backdated usage, or a replay: the running balances as the ledger reads them.
        rows, stored = yield bc.blocking(
            lambda: self._call(lambda: self._store.customer_ledger(usage.customer_id)),
            label="consume")
        after = {e.vendor_id: e.running_balance for _, e in self._keyed(rows, stored, self._clock())}
        return [e.model_copy(update={"running_balance": after.get(e.vendor_id)}) for e in done[0]]

    def _draws(self, tx: Tx, lots: list[Lot], usage: bc.Usage,
               at: datetime) -> tuple[list[tuple[Lot, Decimal]], Decimal]:
        """Which lots pay for ``usage`` at ``at`` and how much each: ``LOCAL_ORDER``'s rules
        (the engine's ``OrderRule.sort_part``) applied to lot rows, its tie-break (grant id,
        then the window ending first, then the window's number) as ``allocate`` breaks ties;
        a lot whose grant has a scope is tested with ``admits`` on the grant. Returns the
        draws and what no lot could pay."""
        product = usage.product_id
        rules = bc.LOCAL_ORDER.rules
        grants: dict[str, bc.CreditGrant] = {}
        keyed = []
        for lot in lots:
            if not (lot.starts_at <= at and (lot.ends_before is None or at < lot.ends_before)):
                continue
            if not lot.admits_all:
                if lot.grant_id not in grants:
                    row = tx.grant(lot.grant_id)
                    assert row is not None
                    grants[lot.grant_id] = grant_of(row)
                if not bc.admits(grants[lot.grant_id], usage):
                    continue
            view = _LotView(lot)
            key = tuple(rule.sort_part(view, view, product) for rule in rules)  # type: ignore[arg-type]
            keyed.append((key, lot.grant_id, (1, 0) if lot.ends_before is None
                          else (0, lot.ends_before), lot.idx, lot))
        keyed.sort(key=lambda item: item[:4])
        need = usage.amount.amount
        draws: list[tuple[Lot, Decimal]] = []
        with decimal.localcontext(bc.exact_context()):
            for *_, lot in keyed:
                if need <= 0:
                    break
                take = min(need, lot.remaining)
                need -= take
                draws.append((lot, take))
        return draws, need

    def _check_representable(self, tx: Tx, usage: bc.Usage,
                             draws: list[tuple[Lot, Decimal]]) -> None:
        """Refuse, before anything is written, a consumption whose entries or whose grants'
        remaining amounts are not amounts the model can hold (more than ``MAX_DIGITS``
        significant digits: 10^38 less 10^-40, say): written, they would make the customer's
        grants, balance and ledger unreadable."""
        problems = []
        taken: dict[tuple[str, int], Decimal] = {}
        for lot, take in draws:
            if not _representable(take, usage.amount):
                problems.append(f"{take} drawn from grant {lot.grant_id}")
            with decimal.localcontext(bc.exact_context()):
                left = lot.remaining - take
            taken[(lot.grant_id, lot.idx)] = take
            if not _representable(left, usage.amount):
                problems.append(f"{left} left in window {lot.idx} of grant {lot.grant_id}")
        if not problems:
            # A grant's remaining balance sums its windows: read the others of a grant with
            # several (one window: its balance is the window's, checked above).
            for gid in {lot.grant_id for lot, _ in draws if lot.windows > 1}:
                with decimal.localcontext(bc.exact_context()):
                    total = bc.exact_sum(w.remaining - taken.get((gid, w.idx), Decimal(0))
                                         for w in tx.grant_lots(gid))
                if not _representable(total, usage.amount):
                    problems.append(f"the remaining balance of grant {gid}")
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

    def _read(self, row: Row, now: datetime | None = None) -> bc.CreditGrant:
        """A stored row as a read-back grant, with status and balance as of ``now``; a row
        that cannot be read is ``InvalidResponseError`` naming the grant."""
        try:
            return self._read_row(row, now)
        except (bc.BillingCreditsError, ValueError, ArithmeticError, TypeError, KeyError,
                AttributeError) as error:
            problem = error
        raise _corrupted(self.name, f"stored grant {row.id}", problem)

    def _read_row(self, row: Row, now: datetime | None) -> bc.CreditGrant:
        now = now or self._clock()
        grant = grant_of(row)
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


class _LotView:
    """What ``LOCAL_ORDER``'s rules read from a grant and its window, from a lot row."""

    __slots__ = ("created_at", "ends_before", "expires_at", "id", "priority", "starts_at")

    def __init__(self, lot: Lot) -> None:
        self.id = lot.grant_id
        self.priority = lot.priority
        self.created_at = lot.created_at
        self.starts_at = lot.starts_at
        self.ends_before = lot.ends_before
        self.expires_at = lot.ends_before


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
    used = list(row.consumed)
    count = len(grant.schedule or (None,))
    return (used + [Decimal(0)] * count)[:count]


def _windows(grant: bc.CreditGrant, row: Row) -> list[tuple[bc.Segment, Decimal, Decimal]]:
    """(window, amount, consumed) for each access window of a stored grant."""
    return [(segment, segment.amount, used)
            for segment, used in zip(grant.segments, _used(row, grant), strict=True)]


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
