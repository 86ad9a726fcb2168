"""The local provider's flows: each operation is written once and runs sync or async."""

from __future__ import annotations

import dataclasses
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

from ._store import GrantStore, Row, request_hash

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
        notes=("stores every neutral field exactly; no usage is recorded, so a grant's balance "
               "is its unexpired amount",),
    )
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
                results[place] = False if found.request_hash == row.request_hash else \
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
        )

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        now = self._clock()
        request = grant.request_fields()
        request.pop("idempotency_key")
        digest = request_hash(_canonical(grant))
        if grant.effective_at is None:
            request["effective_at"] = _text(now)
        row = Row(
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
        )
        self._read(row)  # what is stored must read back: refuse it here, not on every list
        stored, created = yield bc.blocking(lambda: self._store.insert(row), label="insert")
        if not created and stored.request_hash != digest:
            raise bc.ConflictError(
                f"idempotency key {idempotency_key!r} was used for a different grant "
                f"({stored.id})",
                provider=self.name,
                code="idempotency_key_reused",
            )
        return self._read(stored)

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

        row = yield bc.blocking(lambda: self._store.update(grant_id, void), label="void")
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
            changed: dict[str, Any] = {
                "expires_at": _text(now), "request_json": json.dumps(request, sort_keys=True)}
            self._read(dataclasses.replace(row, **changed))  # validate before committing
            return changed

        row = yield bc.blocking(lambda: self._store.update(grant_id, expire), label="expire")
        return self._read(self._found(row, grant_id))

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
            remaining = sum(
                (s.amount for s in grant.segments if s.ends_before is None or s.ends_before > now),
                Decimal(0),
            )
        return bc.CreditGrant.model_validate({
            **grant.model_dump(),
            "id": row.id,
            "provider": self.name,
            "status": status,
            "balance": grant.amount.with_amount(remaining),
            "created_at": row.created_at,
        })


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
    total = sum((s.amount for s in kept), Decimal(0))
    return {
        "expires_at": _text(now),
        "schedule": [s.model_dump(mode="json") for s in kept],
        "amount": grant.amount.with_amount(total).model_dump(mode="json"),
    }
