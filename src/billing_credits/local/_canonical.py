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
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring_ascii as _quote  # (C) what the encoder writes
from typing import Any

import billing_credits as bc


def _grant_ids(count: int) -> list[str]:
    """``count`` new grant ids at once, as ``_grant_id`` makes them (one clock reading and
    one read of random bytes for a whole import batch), in ascending order: a batch's grants
    share one creation time, so the id, which breaks a tie of the consumption order
    (``LOCAL_ORDER``), keeps them in the order of the lines imported."""
    stamp = f"lcg_{time.time_ns() // 1_000_000:012x}"
    noise = os.urandom(10 * count).hex()
    return sorted(stamp + noise[i:i + 20] for i in range(0, 20 * count, 20))


def _grant_id() -> str:
    """A new grant id: ``lcg_`` and 32 hex digits, the time in milliseconds (12 digits) then
    80 random bits. Ids made one after another sort together, so the indexes on grant ids
    (``grants.id``, the ``lots`` key, ``ledger_by_grant``) grow at their end instead of
    splitting pages at random places: a bulk import writes far fewer pages."""
    return _grant_ids(1)[0]


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


_HASH_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)
"""The request hash's encoder (``_store.request_hash``): sorted keys, compact, ASCII."""


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _sorted_encoder() -> Any:
    """``_HASH_ENCODER.encode``, with the C encoder made once instead of on every call (what
    ``JSONEncoder.encode`` does: most of its cost for a small dict). The same arguments as
    ``JSONEncoder.iterencode`` gives it, so the same text (a property test compares them)."""
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return _HASH_ENCODER.encode
    encode = c_make_encoder(None, _refuse, _quote, None, ":", ",", True, False, True)
    return lambda value: "".join(encode(value, 0))


_encode_sorted = _sorted_encoder()
_SCOPE_TEXT: list[str] = []


def _quoted(text: str | None) -> str:
    """A string (or None) exactly as the hash's encoder writes it (``ensure_ascii``)."""
    return "null" if text is None else _quote(text)


def _money_text(money: bc.Money | None, context: Any) -> str | None:
    """``{"amount":…,"currency":…,"unit":null}`` as the hash's encoder writes the canonical
    form of a money in a currency (None: a custom unit, left to the encoder)."""
    if money is None:
        return "null"
    if money.unit is not None:
        return None
    return (f'{{"amount":{_quote(str(money.amount.normalize(context)))},'
            f'"currency":{_quote(money.currency)},"unit":null}}')  # type: ignore[arg-type]


def canonical_text(grant: bc.CreditGrant, effective_iso: str | None,
                   expires_iso: str | None) -> str | None:
    """``_HASH_JSON.encode(_canonical(grant))``, written directly for the common grant (amounts
    in a currency, one window, all usage), or None for any other (the caller encodes the
    canonical form). ``effective_iso``/``expires_iso``: the two times' ``isoformat()``.

    The same text, key for key (the keys in sorted order, as the encoder sorts them): a
    property test holds it equal to the encoder's for generated grants. It skips building the
    canonical dict and encoding it, most of what a request hash cost (issue 17)."""
    if grant.schedule is not None or not grant.scope.is_all_usage:
        return None
    context = bc.shared_exact_context()
    amount = _money_text(grant.amount, context)
    paid = _money_text(grant.paid_amount, context)
    if amount is None or paid is None:
        return None
    if not _SCOPE_TEXT:
        _SCOPE_TEXT.append(_HASH_ENCODER.encode(_canonical_scope()))
    priority = grant.priority
    category = grant.category
    metadata = grant.metadata
    return (
        f'{{"amount":{amount},'
        f'"category":{"null" if category is None else _quote(category.value)},'
        f'"category_label":{_quoted(grant.category_label)},'
        f'"customer_id":{_quote(grant.customer_id)},'
        f'"effective_at":{_quoted(effective_iso)},"expires_at":{_quoted(expires_iso)},'
        f'"metadata":{_encode_sorted(metadata) if metadata else "{}"},'
        f'"name":{_quoted(grant.name)},"paid_amount":{paid},'
        f'"priority":{"null" if priority is None else _quote(str(priority.normalize(context)))},'
        f'"reason":{_quoted(grant.reason)},"schedule":null,"scope":{_SCOPE_TEXT[0]}}}')


def _canonical_scope() -> Any:
    """The canonical form of the empty scope (all usage), as ``_canonical`` writes it."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in bc.Scope().model_dump().items()}
