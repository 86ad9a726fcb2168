"""Pure translation between neutral grants and Orb credit blocks: no I/O.

Orb keeps prepaid credit in **credit blocks**, made by ``increment`` ledger entries
(``POST /customers/{id}/credits/ledger_entry``; ``orb/resources/customers/credits/ledger.py``,
``orb/types/customers/credits/ledger_create_entry_params.py``). One neutral grant is one
block; its id is the block id. Everything here is a typed function of its arguments.

Neutral → Orb is exact or refused (``NotRepresentableError`` naming the field). Orb → neutral
is exact, and lists in ``CreditGrant.adjustments`` what Orb holds differently from the neutral
meaning.

- **Amounts** travel as JSON numbers (``amount: float`` in the SDK's params; the SDK's
  ``openapi_dumps`` serialises a Python float with ``repr``). A decimal is sent only when the
  double nearest it prints back as the same decimal (``Capabilities.amount_float64``), so the
  number on the wire says exactly the decimal meant; answers are parsed from the raw JSON text
  as ``Decimal`` (never through a float).
- **paid_amount ↔ per_unit_cost_basis**: Orb stores what one credit cost, as a decimal string
  "in the customer's currency" (``per_unit_cost_basis: Optional[str]``). It is
  ``paid_amount / amount``, computed exactly; a quotient that is not a finite decimal
  (10 / 3) is refused. Read back, ``paid_amount = per_unit_cost_basis × amount``, exact.
- **name/reason → description**: the increment's description is the name (the reason when
  there is no name), for people reading Orb's ledger. A credit block has no description
  (``CreditListResponse``), so both also travel in ``bc_name``/``bc_reason`` metadata, which
  is what is read back.
- **scope ↔ filters**: ``product_ids`` ↔ an ``item_id`` ``includes`` filter (block filters allow
  only ``item_id``: ``AddIncrementCreditLedgerEntryRequestParamsFilter``). An ``excludes``
  filter has no neutral meaning: such a block is refused when read.
- **dates**: Orb's ``effective_date``/``expiry_date`` are dates ("optional expiry date in
  ``YYYY-MM-DD`` format", ledger.py; ``target_expiry_date`` "(specified in YYYY-MM-DD
  format)"), and "credit expiry should always happen close to a date boundary in the customer's
  timezone" (``ledger.py``; ``Customer.timezone``, ``orb/types/customer.py``, defaults to the
  account's). The provider takes times in whole UTC days (finer ones are refused; a migration
  aligns them in the safe direction and reports it), then aligns each to the customer's local
  day in the safe direction (``align_window``: a start later, an end earlier, so Orb never
  holds credit outside the requested window), sends the local midnight with its offset, and
  reports every move as an adjustment. Dates read back without an offset are the customer's
  local days.
- **priority**: Orb has none (it deducts by expiry, then cost basis: ``ORB_ORDER``). A grant
  with a priority is refused before any request, unless the provider's ``priority`` setting is
  ``record``: then the priority is kept in ``bc_priority`` metadata only, Orb ignores it, and
  every create and read reports that as an adjustment.

Neutral fields Orb has no place for travel in block metadata under ``bc_`` (the block's
``increment`` entry reports the same metadata: ``orb/resources/credit_blocks.py``, update):
``bc_customer`` (the customer, as the caller addresses it: a credit block names none),
``bc_name``, ``bc_reason``, ``bc_category``, ``bc_category_label``, ``bc_idempotency_key``,
``bc_priority`` (record policy), ``bc_voided_at`` (set when the provider voids the block),
``bc_flags`` (``unset:effective_at``).
"""

from __future__ import annotations

import decimal
import hashlib
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import billing_credits as bc

__all__ = [
    "API_REFERENCE",
    "DAY",
    "KEY_MEMORY",
    "LEDGER_DOC",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "META_CUSTOMER",
    "META_IDEMPOTENCY_KEY",
    "META_PRIORITY",
    "META_VOIDED",
    "NO_PRIORITY",
    "ORB_ORDER",
    "PROVIDER_NAME",
    "RESERVED_PREFIX",
    "PriorityPolicy",
    "align_window",
    "block_balance",
    "cost_basis",
    "decimal_of",
    "differences",
    "entry_to_ledger",
    "expiration_change_params",
    "from_block",
    "header_key",
    "increment_params",
    "invoice_settings",
    "local_ceil",
    "local_floor",
    "problems",
    "void_params",
    "zone",
]

PROVIDER_NAME = "orb"
RESERVED_PREFIX = "bc_"
META_CUSTOMER = "bc_customer"
META_NAME = "bc_name"
META_REASON = "bc_reason"
META_CATEGORY = "bc_category"
META_CATEGORY_LABEL = "bc_category_label"
META_IDEMPOTENCY_KEY = "bc_idempotency_key"
META_PRIORITY = "bc_priority"
META_VOIDED = "bc_voided_at"
META_FLAGS = "bc_flags"
_KNOWN = frozenset({META_CUSTOMER, META_NAME, META_REASON, META_CATEGORY, META_CATEGORY_LABEL,
                    META_IDEMPOTENCY_KEY, META_PRIORITY, META_VOIDED, META_FLAGS})
_FLAG_UNSET_EFFECTIVE = "unset:effective_at"

API_REFERENCE = "https://docs.withorb.com/api-reference/credit/create-ledger-entry"
LEDGER_DOC = ("orb-billing orb/resources/customers/credits/ledger.py (Ledger.list docstring; "
              "https://docs.withorb.com/api-reference/credit/fetch-customer-credits-ledger)")
IDEMPOTENCY_DOC = "https://docs.withorb.com/reference/idempotency"

_MONEY_DIGITS = 40
"""The significant digits and decimal places a ``bc.Money`` holds (the core's ``MAX_DIGITS``,
not public)."""

DAY = timedelta(days=1)
"""Orb's date resolution for ``effective_date``/``expiry_date`` (see the module docstring)."""
KEY_MEMORY = timedelta(hours=48)
""""Keys will expire after 48 hours, and Orb may re-execute side-effects as a result"
(https://docs.withorb.com/reference/idempotency)."""
MAX_IDEMPOTENCY_KEY_LENGTH = 64
""""Idempotency keys can be arbitrary strings with a max length of 64 characters"
(https://docs.withorb.com/reference/idempotency). A longer neutral key (up to 128) is sent as
a derived 64-character header key (``header_key``) and kept whole in ``bc_idempotency_key``."""

PriorityPolicy = Literal["refuse", "record"]
PRIORITY_RECORDED = ("Orb has no priority (it deducts by expiry date, then cost basis); the "
                     "priority is recorded in metadata bc_priority only and does not order "
                     "consumption")


class _NoPriority(bc.PriorityDomain):
    """The priorities Orb holds: none. Every value is refused, naming why."""

    def problem(self, value: Decimal) -> str | None:
        return ("cannot be held: Orb has no priority (it deducts by expiry date, then cost "
                "basis); give None, or the provider setting priority=record")

    def describe(self) -> str:
        return "none (Orb deducts by expiry date, then cost basis)"

    def nearest(self, value: Decimal) -> Decimal:
        return value


NO_PRIORITY: bc.PriorityDomain = _NoPriority("integer", Decimal(1), Decimal(0))
"""Holds no value (its capacity is 0, so ``preserve_order`` names every customer with a
priority as one that cannot keep it)."""

ORB_ORDER = bc.ConsumptionOrder(
    provider=PROVIDER_NAME,
    rules=(
        bc.OrderRule(
            "expires_at", "asc", LEDGER_DOC,
            note="'deducts from the soonest expiring credit block first'; non-expiring last",
            missing="last"),
        bc.OrderRule(
            "cost_basis", "asc", LEDGER_DOC,
            note="'multiple blocks with the same expiration date ... the block with the lower "
                 "cost basis first'"),
    ),
    documented_tie_break=False,
    scope_aware=True,
)
"""Orb's automatic deduction order, which a ``decrement`` entry follows too ("Orb matches the
algorithm for automatic deductions", ``LedgerCreateEntry`` docstring in the same file). Orb
documents nothing after the cost basis: ties go by block id, reported by the engine."""


# -- money ---------------------------------------------------------------------------------


def decimal_of(value: Any, where: str) -> Decimal:
    """A JSON number read exactly (the provider parses Orb's JSON with ``parse_float=Decimal``)
    as a finite ``Decimal``; a float (a lossy reading), a boolean or text is refused."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"{where} is {value!r:.80}, not an exactly read JSON number")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{where} is not finite")
    return number


def _wire_amount(amount: Decimal) -> float:
    """``amount`` as the float the SDK serialises (``repr``), only when that is exact."""
    if not bc.float64_exact(amount):
        raise bc.NotRepresentableError(PROVIDER_NAME, [bc.FieldProblem(
            "amount", f"{amount} has more digits than a JSON double carries exactly")])
    return float(amount)


def cost_basis(grant: bc.CreditGrant) -> Decimal | None:
    """``paid_amount / amount`` exactly (None without a paid amount); a quotient that is not a
    finite decimal is refused (``NotRepresentableError`` on ``paid_amount``)."""
    paid = grant.paid_amount
    if paid is None:
        return None
    if not paid.same_unit(grant.amount):
        raise bc.NotRepresentableError(PROVIDER_NAME, [bc.FieldProblem(
            "paid_amount", f"Orb's per_unit_cost_basis is in the customer's currency: give it in "
            f"{grant.amount.unit_key}, not {paid.unit_key}")])
    try:
        return bc.shared_exact_context().divide(paid.amount, grant.amount.amount)
    except decimal.Inexact:
        raise bc.NotRepresentableError(PROVIDER_NAME, [bc.FieldProblem(
            "paid_amount", f"{paid.amount} / {grant.amount.amount} per credit is not a finite "
            "decimal; Orb stores the cost of one credit (per_unit_cost_basis)")]) from None


def _text(value: Decimal) -> str:
    """A decimal as plain text, no exponent (``0.75``, ``120``)."""
    text = f"{value.normalize(bc.shared_exact_context()):f}" if value else "0"
    return text


# -- checks --------------------------------------------------------------------------------


def _header_safe(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


def header_key(key: str) -> str:
    """The ``Idempotency-Key`` header for a neutral key: the key itself up to 64 characters,
    else ``bc-`` and a SHA-256 digest of it (61 characters), the same for every retry."""
    if len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        return key
    return "bc-" + hashlib.sha256(key.encode()).hexdigest()[:MAX_IDEMPOTENCY_KEY_LENGTH - 3]


def problems(grant: bc.CreditGrant) -> list[bc.FieldProblem]:
    """What of ``grant`` Orb cannot hold beyond the declared capabilities."""
    found: list[bc.FieldProblem] = []
    try:
        cost_basis(grant)
    except bc.NotRepresentableError as error:
        found += error.problems
    if grant.name == "":
        found.append(bc.FieldProblem("name", "Orb stores an empty description as none; give None"))
    if grant.reason == "":
        found.append(bc.FieldProblem("reason", "an empty reason cannot be told from none"))
    key = grant.idempotency_key
    if key is not None and not _header_safe(key):
        found.append(bc.FieldProblem(
            "idempotency_key", "travels in the Idempotency-Key header: printable ASCII only"))
    for label, text in (("category_label", grant.category_label),):
        if text == "":
            found.append(bc.FieldProblem(label, "an empty label cannot be told from none"))
    for i, item in enumerate(grant.scope.product_ids):
        if grant.scope.product_ids.index(item) != i:
            found.append(bc.FieldProblem(
                f"scope.product_ids.{i}", "Orb's item filter is a set: a repeated item is lost"))
    if grant.schedule is not None:
        found.append(bc.FieldProblem(
            "schedule", "an Orb credit block has one window: give effective_at/expires_at"))
    return found


# -- neutral → Orb -------------------------------------------------------------------------


def invoice_settings(*, invoice: bool, net_terms: int) -> dict[str, Any]:
    """``invoice_settings`` for a paid increment.

    "if ``per_unit_cost_basis`` is greater than zero, an invoice will be generated and
    ``invoice_settings`` must be included"; "If you invoice or handle payment of credits
    outside of Orb ... set ``mark_as_paid`` ... to ``true`` to prevent duplicate invoicing
    effects"; "one of either ``custom_due_date`` or ``net_terms`` is required"
    (``orb/resources/customers/credits/ledger.py``, ``create_entry``). Unless the caller asked
    Orb to invoice (``invoice=True``), the invoice is marked paid and not auto-collected.
    """
    if invoice:
        return {"auto_collection": True, "net_terms": net_terms, "mark_as_paid": False}
    return {"auto_collection": False, "net_terms": 0, "mark_as_paid": True}


def _flags(grant: bc.CreditGrant) -> list[str]:
    flags = []
    if grant.effective_at is None:
        flags.append(_FLAG_UNSET_EFFECTIVE)
    return flags


def _metadata(grant: bc.CreditGrant, customer_id: str, policy: PriorityPolicy) -> dict[str, str]:
    metadata = dict(grant.metadata)
    metadata[META_CUSTOMER] = customer_id
    if grant.name is not None:
        metadata[META_NAME] = grant.name
    if grant.reason is not None:
        metadata[META_REASON] = grant.reason
    if grant.category is not None:
        metadata[META_CATEGORY] = grant.category.value
    if grant.category_label is not None:
        metadata[META_CATEGORY_LABEL] = grant.category_label
    if grant.idempotency_key is not None:
        metadata[META_IDEMPOTENCY_KEY] = grant.idempotency_key
    if grant.priority is not None:
        if policy != "record":
            raise bc.NotRepresentableError(PROVIDER_NAME, [bc.FieldProblem(
                "priority", NO_PRIORITY.problem(grant.priority) or "")])
        metadata[META_PRIORITY] = str(grant.priority)
    if flags := _flags(grant):
        metadata[META_FLAGS] = ",".join(flags)
    return metadata


def _day(moment: datetime, where: str) -> datetime:
    utc = moment.astimezone(UTC)
    if utc != utc.replace(hour=0, minute=0, second=0, microsecond=0):
        raise bc.NotRepresentableError(PROVIDER_NAME, [bc.FieldProblem(
            where, f"{moment.isoformat()} is not a whole UTC day; Orb holds dates")])
    return utc


# -- the customer's timezone ---------------------------------------------------------------

TIMEZONE_DOC = ("orb-billing orb/resources/customers/credits/ledger.py ('credit expiry should "
                "always happen close to a date boundary in the customer's timezone'); "
                "orb/types/customer.py (Customer.timezone)")


def zone(name: str) -> ZoneInfo:
    """The IANA zone Orb names for a customer (``Customer.timezone``); an unknown name is a
    ``ValueError`` (the provider reports it as an unusable answer, never guesses UTC)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"customer timezone {name!r:.60} is not an IANA timezone") from None


def _day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of local ``day`` in ``tz``, in UTC. A midnight skipped by a
    daylight-saving jump resolves (``fold=0``, PEP 495) to the instant of the jump, which is
    where the day begins."""
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def local_floor(moment: datetime, tz: ZoneInfo) -> datetime:
    """The start of the customer's local day holding ``moment`` (never after it), in UTC."""
    day = moment.astimezone(tz).date()
    start = _day_start(day, tz)
    while start > moment:  # a day boundary repeated by a jump back: the earlier day
        day -= timedelta(days=1)
        start = _day_start(day, tz)
    return start


def local_ceil(moment: datetime, tz: ZoneInfo) -> datetime:
    """The first local day start at or after ``moment`` in ``tz``, in UTC."""
    start = local_floor(moment, tz)
    if start == moment:
        return start
    day = start.astimezone(tz).date()
    while start < moment:
        day += timedelta(days=1)
        start = _day_start(day, tz)
    return start


def _local_moved(field: str, requested: datetime, stored: datetime, timezone: str,
                 direction: str) -> bc.Adjustment:
    return bc.Adjustment(
        field=field, requested=requested.isoformat(), stored=stored.isoformat(),
        reason=f"Orb holds dates as days in the customer's timezone ({timezone}): moved "
               f"{direction} to a local day boundary (the safe direction; {TIMEZONE_DOC})")


def align_window(effective_at: datetime | None, expires_at: datetime | None,
                 timezone: str) -> tuple[datetime | None, datetime | None, list[bc.Adjustment]]:
    """``effective_at`` and ``expires_at`` on the customer's local day boundaries, in the safe
    direction (the start later, the end earlier), with an adjustment for each that moved. A
    window that aligns to nothing is refused (``NotRepresentableError`` on ``expires_at``)."""
    tz = zone(timezone)
    adjustments: list[bc.Adjustment] = []
    start = end = None
    if effective_at is not None:
        start = local_ceil(effective_at.astimezone(UTC), tz)
        if start != effective_at:
            adjustments.append(_local_moved("effective_at", effective_at, start, timezone,
                                            "later"))
    if expires_at is not None:
        end = local_floor(expires_at.astimezone(UTC), tz)
        if end != expires_at:
            adjustments.append(_local_moved("expires_at", expires_at, end, timezone,
                                            "earlier"))
    if start is not None and end is not None and end <= start:
        raise bc.NotRepresentableError(PROVIDER_NAME, [bc.FieldProblem(
            "expires_at", f"{effective_at.isoformat() if effective_at else ''} to "
            f"{expires_at.isoformat() if expires_at else ''} holds no whole day in the "
            f"customer's timezone ({timezone}); Orb's dates are its local days")])
    return start, end, adjustments


def _wire_day(moment: datetime, timezone: str) -> datetime:
    """A local day start as sent: the customer's local midnight with its UTC offset, so its
    date reads the same in the customer's timezone and in the text."""
    return moment.astimezone(zone(timezone))


def increment_params(
    grant: bc.CreditGrant,
    *,
    policy: PriorityPolicy = "refuse",
    invoice: bool = False,
    net_terms: int = 30,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """The keyword arguments of the SDK's ``customers.credits.ledger.create_entry`` (an
    ``increment``) for ``grant``, checked first; the customer goes in the path.

    ``timezone`` is the customer's (``Customer.timezone``): the dates sent are its local day
    boundaries, aligned in the safe direction (``align_window``, which reports the moves).

    ``invoice`` asks Orb to invoice a paid amount; without it the invoice Orb must make for a
    cost basis above zero is marked paid (the payment happened elsewhere).
    """
    if found := problems(grant):
        raise bc.NotRepresentableError(PROVIDER_NAME, found)
    assert grant.amount.currency is not None, "custom units are refused by the capabilities"
    params: dict[str, Any] = {
        "entry_type": "increment",
        "amount": _wire_amount(grant.amount.amount),
        "currency": grant.amount.currency,
    }
    description = grant.name if grant.name is not None else grant.reason
    if description is not None:
        params["description"] = description
    effective = None if grant.effective_at is None else _day(grant.effective_at, "effective_at")
    expiry = None if grant.expires_at is None else _day(grant.expires_at, "expires_at")
    start, end, _ = align_window(effective, expiry, timezone)
    if start is not None:
        params["effective_date"] = _wire_day(start, timezone)
    if end is not None:
        params["expiry_date"] = _wire_day(end, timezone)
    if grant.scope.product_ids:
        params["filters"] = [{"field": "item_id", "operator": "includes",
                              "values": list(grant.scope.product_ids)}]
    basis = cost_basis(grant)
    if basis is not None:
        params["per_unit_cost_basis"] = _text(basis)
        if basis > 0:
            params["invoice_settings"] = invoice_settings(invoice=invoice, net_terms=net_terms)
    params["metadata"] = _metadata(grant, grant.customer_id, policy)
    return params


def void_params(block_id: str, amount: Decimal, currency: str) -> dict[str, Any]:
    """A ``void`` entry for what is left of a block (``AddVoidCreditLedgerEntryRequestParams``:
    ``amount`` and ``block_id`` required; "amount indicates how many credits to void, up to
    the block's initial balance")."""
    return {"entry_type": "void", "amount": _wire_amount(amount), "block_id": block_id,
            "currency": currency}


def expiration_change_params(block_id: str, expiry: datetime | None, target: datetime,
                             currency: str, timezone: str = "UTC") -> dict[str, Any]:
    """An ``expiration_change`` of a whole block to ``target`` (a local day start in the
    customer's ``timezone``, sent as that local date ``YYYY-MM-DD``: ``target_expiry_date`` is
    ``Union[str, date]``). ``amount`` is left out: the target date
    is documented for credits "transferred (as part of a partial block expiration)", so the
    whole block changes in place (the fake's model of it; see the README)."""
    params: dict[str, Any] = {
        "entry_type": "expiration_change", "block_id": block_id,
        "target_expiry_date": target.astimezone(zone(timezone)).date(), "currency": currency,
    }
    if expiry is not None:
        params["expiry_date"] = expiry
    return params


# -- Orb → neutral -------------------------------------------------------------------------


def _bad(obj: Mapping[str, Any], problem: str) -> bc.InvalidResponseError:
    return bc.InvalidResponseError(
        f"Orb credit block {obj.get('id')!r} {problem}; it cannot be read as a neutral grant",
        provider=PROVIDER_NAME, body=bc.excerpt(obj))


def _moment(value: Any, where: str, timezone: str = "UTC") -> datetime | None:
    """An ISO 8601 time as a UTC instant; one without an offset (a bare date) is the
    customer's local time in ``timezone`` (Orb's dates are its days)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{where} is {value!r:.80}, not an ISO 8601 text")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is UTC:  # "+00:00", as Orb writes its times: already as wanted
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(timezone))
    return moment.astimezone(UTC)


def block_balance(block: Mapping[str, Any]) -> Decimal:
    """A block's ``balance`` (what is left of it), exact."""
    return decimal_of(block.get("balance"), "balance")


def _scope_of(block: Mapping[str, Any]) -> tuple[str, ...]:
    """The items a block's filter limits it to (``Scope.product_ids``); none: all usage."""
    filters = block.get("filters") or []
    if not isinstance(filters, list):
        raise _bad(block, f"has filters that are not a list ({filters!r:.80})")
    if len(filters) > 1:
        # Orb's filter lists elsewhere are "all must match" (orb/types/shared/price.py); for
        # block filters it says nothing: neither their union nor their intersection is guessed
        raise _bad(block, f"has {len(filters)} item filters, whose combination Orb does not "
                   "document for credit blocks; the neutral scope is not guessed")
    items: list[str] = []
    for item in filters:
        if not isinstance(item, Mapping):
            raise _bad(block, f"has a filter that is not an object ({item!r:.80})")
        if item.get("field") != "item_id" or item.get("operator") != "includes":
            raise _bad(block, f"has a {item.get('field')} {item.get('operator')} filter, which "
                       "the neutral scope cannot say (it names what credit applies to, not "
                       "what it excludes)")
        values = item.get("values")
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise _bad(block, f"has filter values that are not ids ({values!r:.80})")
        items += values
    return tuple(items)


def _paid_of(block: Mapping[str, Any], amount: Decimal) -> Decimal | None:
    """``per_unit_cost_basis × amount``, exact (None without a cost basis)."""
    basis_text = block.get("per_unit_cost_basis")
    if basis_text is None:
        return None
    if not isinstance(basis_text, str):
        raise _bad(block, f"has a per_unit_cost_basis that is not text ({basis_text!r:.80})")
    basis = Decimal(basis_text)
    if not basis.is_finite() or basis < 0:
        raise _bad(block, f"has per_unit_cost_basis {basis_text!r:.80}")
    product = bc.shared_exact_context().multiply(basis, amount)
    shape = product.as_tuple()
    if product and (len(shape.digits) > _MONEY_DIGITS or int(shape.exponent) < -_MONEY_DIGITS):
        # the texts' trailing zeros ("100000000000.0" × "5.6…", "1.0" × "0.0…01") add digits,
        # not value: dropped exactly (normalize in the exact context never rounds)
        product = product.normalize(bc.shared_exact_context())
    return product


def _all_text(mapping: Mapping[Any, Any]) -> bool:
    """Whether every key and value of ``mapping`` is a string (two loops in C: ``join``
    refuses anything else with ``TypeError``)."""
    try:
        "".join(mapping)
        "".join(mapping.values())
    except TypeError:
        return False
    return True


@bc.reads_vendor_payload(PROVIDER_NAME, "credit block")
def from_block(block: Mapping[str, Any], *, currency: str, now: datetime,
               customer_id: str | None = None, timezone: str = "UTC") -> bc.CreditGrant:
    """An Orb credit block (decoded exactly: numbers as ``Decimal``) as a read-back grant.

    ``currency`` is the block's currency (Orb's block names none; the provider lists blocks in
    one currency); the customer comes from ``bc_customer`` metadata, else ``customer_id``;
    ``timezone`` is the customer's, for dates Orb gives without an offset.
    The grant's ``amount`` is the block's ``maximum_initial_balance`` and its ``balance``
    what is left (zero once voided or expired).
    """
    raw_meta = block.get("metadata") or {}
    if not isinstance(raw_meta, Mapping) or not _all_text(raw_meta):
        raise _bad(block, "has metadata that is not a map of strings")
    flags = set(filter(None, (raw_meta.get(META_FLAGS) or "").split(",")))
    customer = raw_meta.get(META_CUSTOMER) or customer_id
    if not customer:
        raise _bad(block, f"names no customer (no {META_CUSTOMER} metadata): list the "
                   "customer's grants to read it")
    initial = block.get("maximum_initial_balance")
    if initial is None:
        raise _bad(block, "has no maximum_initial_balance (the amount it was created with)")
    # The amounts go to the grant as data: validated with it, in one pass.
    amount = decimal_of(initial, "maximum_initial_balance")
    adjustments: list[bc.Adjustment] = []
    paid = _paid_of(block, amount)
    effective = _moment(block.get("effective_date"), "effective_date", timezone)
    expires = _moment(block.get("expiry_date"), "expiry_date", timezone)
    if _FLAG_UNSET_EFFECTIVE in flags and effective is not None:
        adjustments.append(bc.Adjustment(
            field="effective_at", requested=None, stored=effective.isoformat(),
            reason="Orb makes a block effective at creation when no date is given"))
        effective = None
    if effective is not None and expires is not None and expires <= effective:
        adjustments.append(bc.Adjustment(
            field="effective_at", requested=None, stored=effective.isoformat(),
            reason="Orb expired the block on or before its effective date"))
        effective = None
    priority = None
    if (priority_text := raw_meta.get(META_PRIORITY)) is not None:
        priority = Decimal(priority_text)
        adjustments.append(bc.Adjustment(field="priority", requested=priority_text,
                                         stored=None, reason=PRIORITY_RECORDED))
    category = raw_meta.get(META_CATEGORY)  # its text: a Category once validated with the grant
    voided = raw_meta.get(META_VOIDED)
    balance = block_balance(block)
    if voided is not None:
        status = bc.GrantStatus.VOIDED
    elif expires is not None and now >= expires:
        status = bc.GrantStatus.EXPIRED
    elif effective is not None and now < effective:
        status = bc.GrantStatus.SCHEDULED
    else:
        status = bc.GrantStatus.ACTIVE
    if status in (bc.GrantStatus.VOIDED, bc.GrantStatus.EXPIRED):
        balance = Decimal(0)
    metadata = {k: v for k, v in raw_meta.items() if k not in _KNOWN}
    items = _scope_of(block)
    return bc.CreditGrant.model_validate({
        "customer_id": customer,
        "amount": {"amount": amount, "currency": currency},
        "name": raw_meta.get(META_NAME),
        "reason": raw_meta.get(META_REASON),
        "category": category,
        "category_label": raw_meta.get(META_CATEGORY_LABEL),
        "paid_amount": None if paid is None else {"amount": paid, "currency": currency},
        "effective_at": effective,
        "expires_at": expires,
        "priority": priority,
        # validated with the grant; no filter is the default scope, all usage (one shared)
        **({"scope": {"product_ids": items}} if items else {}),
        "metadata": metadata,
        "idempotency_key": raw_meta.get(META_IDEMPOTENCY_KEY),
        "id": block.get("id"),
        "provider": PROVIDER_NAME,
        "status": status,
        "balance": {"amount": balance, "currency": currency},
        # the block's text was checked with its page (``bc.decode_vendor_json``) when it came
        # from one: kept without walking every string again
        "raw": bc.payload_copy(block),
        "adjustments": tuple(adjustments),
    })


_KINDS: dict[str, str] = {
    "increment": "granted",
    "decrement": "consumed",
    "credit_block_expiry": "expired",
    "void": "voided",
    "void_initiated": "adjusted",
    "expiration_change": "adjusted",
    "amendment": "adjusted",
}
"""Every ``entry_type`` of ``LedgerListResponse`` (``orb/types/customers/credits/
ledger_list_response.py``) and its neutral kind (``bc.LedgerKind`` values: the models load on
first use, not when the provider is listed)."""


@bc.reads_vendor_payload(PROVIDER_NAME, "ledger entry")
def entry_to_ledger(entry: Mapping[str, Any], customer_id: str) -> bc.LedgerEntry:
    """One Orb ledger entry as a neutral one, signed by its kind.

    ``increment`` +amount; ``decrement``, ``credit_block_expiry`` and ``void`` −amount;
    ``amendment`` (a decrement undone) +amount; ``expiration_change`` and ``void_initiated``
    move no credit out of the customer's balance (a whole-block change is in place; a void
    awaiting its invoice is only initiated): 0, the raw entry kept. ``running_balance`` is
    Orb's ``ending_balance`` (the customer's, in the entry's currency).
    """
    kind_text = entry.get("entry_type")
    kind_name = _KINDS.get(kind_text) if isinstance(kind_text, str) else None
    if kind_name is None:
        raise ValueError(f"unknown entry_type {kind_text!r:.80}")
    kind = bc.LedgerKind(kind_name)
    amount = abs(decimal_of(entry.get("amount"), "amount"))
    if kind_text in ("decrement", "credit_block_expiry", "void"):
        amount = -amount
    elif kind_text in ("expiration_change", "void_initiated"):
        amount = Decimal(0)
    currency = entry.get("currency")
    if not isinstance(currency, str):
        raise TypeError("currency is not text")
    block = entry.get("credit_block") or {}
    reference = None
    if kind_text == "decrement":
        reference = (entry.get("metadata") or {}).get("bc_usage_reference") \
            or entry.get("invoice_id") or entry.get("event_id")
    at = _moment(entry.get("created_at"), "created_at")
    assert at is not None
    return bc.LedgerEntry(
        customer_id=customer_id,
        grant_id=block.get("id") if isinstance(block, Mapping) else None,
        kind=kind,
        amount=bc.Money(amount=amount, currency=currency),
        at=at,
        running_balance=bc.Money(amount=decimal_of(entry.get("ending_balance"), "ending_balance"),
                                 currency=currency),
        reference=reference,
        vendor_id=entry.get("id"),
        raw=dict(entry),
    )


def differences(requested: bc.CreditGrant, stored: bc.CreditGrant) -> list[bc.Adjustment]:
    """Fields Orb stored differently from what was requested (empty: stored exactly)."""
    asked = requested.as_new().comparable()
    got = stored.as_new().comparable()
    return [
        bc.Adjustment(field=name, requested=None if asked[name] is None else str(asked[name]),
                      stored=None if got.get(name) is None else str(got.get(name)),
                      reason="Orb stored a different value than requested")
        for name in sorted(asked)
        if asked[name] != got.get(name)
    ]
