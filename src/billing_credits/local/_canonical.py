"""What a stored grant row is made of, apart from the database: the request's canonical form
(whose hash tells an idempotent replay from a reused key), the stored request's encoder, new
grant ids."""

from __future__ import annotations

import enum
import json
import os
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import billing_credits as bc


def _grant_id() -> str:
    """A new grant id: ``lcg_`` and 32 hex digits, the time in milliseconds (12 digits) then
    80 random bits. Ids made one after another sort together, so the indexes on grant ids
    (``grants.id``, the ``lots`` key, ``ledger_by_grant``) grow at their end instead of
    splitting pages at random places: a bulk import writes far fewer pages."""
    return f"lcg_{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


_REQUEST_JSON = json.JSONEncoder(sort_keys=True, check_circular=False)
"""``json.dumps(..., sort_keys=True)`` (the stored request's form), built once."""
_EXCLUDED: list[frozenset[str]] = []
_REQUEST_EXCLUDED: list[set[str]] = []
NOTHING_CONSUMED = (Decimal(0),)


def _request_excluded() -> set[str]:
    """The fields outside a stored request: the read-back ones and the idempotency key (kept
    in its own column)."""
    if not _REQUEST_EXCLUDED:
        _REQUEST_EXCLUDED.append(set(_excluded()))
    return _REQUEST_EXCLUDED[0]


def _excluded() -> frozenset[str]:
    """Fields outside the canonical form (read at first call: the models load lazily)."""
    if not _EXCLUDED:
        _EXCLUDED.append(frozenset(bc.CreditGrant.read_back_fields()) | {"idempotency_key"})
    return _EXCLUDED[0]


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


def iso_and_stored(moment: datetime | None) -> tuple[str | None, str | None]:
    """``moment.isoformat()`` (as the canonical form writes it) and its stored text (UTC,
    microseconds), the second made from the first when ``moment`` is in UTC (as the model
    holds times): one formatting instead of two."""
    if moment is None:
        return None, None
    iso = moment.isoformat()
    if iso.endswith("+00:00"):
        if len(iso) == 25:
            return iso, iso[:19] + ".000000+00:00"
        if len(iso) == 32:
            return iso, iso
    return iso, moment.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical_from_request(
        grant: bc.CreditGrant, request: dict[str, Any],
        times: tuple[tuple[str | None, str | None], tuple[str | None, str | None]] | None = None,
) -> dict[str, Any]:
    """``_canonical(grant)``, built from the grant's JSON request fields (already computed for
    storage) by fixing only the exact numbers and times: the same result, a third the work.
    A property test holds it equal to ``_canonical``."""
    context = bc.exact_context()

    def number(value: Decimal) -> str:
        return str(value.normalize(context))

    def money(value: bc.Money | None, data: Any) -> Any:
        return None if value is None else {**data, "amount": number(value.amount)}

    result = dict(request)
    for key in _excluded().intersection(request):
        del result[key]
    result["amount"] = money(grant.amount, request["amount"])
    result["paid_amount"] = money(grant.paid_amount, request["paid_amount"])
    result["priority"] = None if grant.priority is None else number(grant.priority)
    if times is not None:  # ``iso_and_stored`` of the two, already made
        result["effective_at"], result["expires_at"] = times[0][0], times[1][0]
    else:
        result["effective_at"] = None if grant.effective_at is None \
            else grant.effective_at.isoformat()
        result["expires_at"] = None if grant.expires_at is None else grant.expires_at.isoformat()
    if grant.schedule is not None:
        result["schedule"] = [
            {**data, "amount": number(segment.amount),
             "starts_at": segment.starts_at.isoformat(),
             "ends_before": None if segment.ends_before is None else segment.ends_before.isoformat()}
            for segment, data in zip(grant.schedule, request["schedule"], strict=True)]
    return result
