"""Pure, typed translation between neutral grants and Metronome payloads (both credit APIs).

No I/O happens here. Every function takes a ``TranslationConfig`` (the provider's settings that
affect meaning) and, where "now" matters, an explicit ``now``.

Conventions, both APIs:

- Amounts are exact ``Decimal`` values inside payloads; ``json_number`` turns them into the JSON
  number that says exactly the same decimal (checked with ``billing_credits.float64_exact``).
- A credit type id listed in ``credit_types`` is an ISO currency with a scale (USD (cents):
  vendor ``1000`` is neutral ``10.00 USD``); any other id is a custom ``CreditUnit(id, name)``.
- Times go out as UTC RFC 3339 with millisecond precision and ``Z``
  (``2022-04-01T00:00:00.000Z``), the shape the Metronome SDK sends.
- Library bookkeeping travels in custom fields whose keys start with ``bc_`` (``RESERVED_PREFIX``),
  so fields Metronome has no place for round-trip instead of being dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache, cached_property
from typing import Any

import billing_credits as bc

from ._balance import grant_balance, ledger_summary, number_text
from ._wire import (
    _EPOCH,
    _MS,
    Alignment,
    align,
    ceil_hour,
    floor_hour,
    format_time,
    json_number,
    parse_time,
    time_problem,
    to_decimal,
)

__all__ = [
    "GENERATED_KEY",
    "RESERVED_KEYS",
    "RESERVED_PREFIX",
    "USD_CENTS",
    "Alignment",
    "CurrencyScale",
    "TranslationConfig",
    "align",
    "ceil_hour",
    "credit_create_payload",
    "credit_from_item",
    "credits_problems",
    "floor_hour",
    "format_time",
    "grant_create_payload",
    "grant_from_item",
    "json_number",
    "parse_time",
    "plans_problems",
    "time_problem",
    "to_decimal",
]

USD_CENTS = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"
"""Metronome's "USD (cents)" credit type (``metronome/resources/v1/pricing_units.py``)."""

RESERVED_PREFIX = "bc_"
"""Custom-field keys starting with this carry the library's own bookkeeping."""

PAID_AMOUNT = "bc_paid_amount"
PAID_UNIT = "bc_paid_unit"
PAID_UNIT_NAME = "bc_paid_unit_name"
CATEGORY = "bc_category"
CATEGORY_LABEL = "bc_category_label"
UNNAMED = "bc_unnamed"
PRIORITY_DEFAULT = "bc_priority_default"
RESERVED_KEYS = frozenset({
    PAID_AMOUNT, PAID_UNIT, PAID_UNIT_NAME, CATEGORY, CATEGORY_LABEL, UNNAMED, PRIORITY_DEFAULT})
"""Every custom-field key this package writes; only these are taken out of ``metadata``."""

UNSET = "unset"
MAX_CUSTOM_FIELD_VALUE = 200

GENERATED_KEY = re.compile(
    r"^bc-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
"""The shape of the idempotency key ``billing_credits.Provider`` generates when the caller gives
none (``bc-<uuid4>``). Such a ``uniqueness_key`` reads back as ``idempotency_key=None``."""

@dataclass(frozen=True)
class CurrencyScale:
    """A credit type that is an ISO currency: vendor amount = neutral amount × 10**scale."""

    currency: str
    scale: int


@dataclass(frozen=True)
class TranslationConfig:
    """The settings that change what a payload means."""

    credit_types: Mapping[str, CurrencyScale] = field(
        default_factory=lambda: {USD_CENTS: CurrencyScale("USD", 2)}
    )
    default_priority: Decimal = Decimal(100)
    far_future: datetime = datetime(2099, 12, 31, tzinfo=UTC)
    alignment: Alignment = "hour"
    invoice_paid_amount: bool = False
    record_only: bool = False
    """Set on ``record_only()`` copies: ``invoice_paid_amount`` is off whatever the settings."""
    default_name: str = "Credits"
    product_id: str | None = None
    provider: str = "metronome"

    def credit_type_for(self, currency: str) -> str | None:
        for type_id, scale in self.credit_types.items():
            if scale.currency == currency:
                return type_id
        return None

    @cached_property
    def priority_domain(self) -> bc.PriorityDomain:
        return bc.PriorityDomain("float64", default=self.default_priority)


# -- money ------------------------------------------------------------------------------------


def _vendor_amount(money: bc.Money, config: TranslationConfig) -> tuple[str, Decimal] | str:
    """``(credit_type_id, vendor amount)`` for ``money``, or why it cannot be expressed."""
    if money.unit is not None:
        return money.unit.id, money.amount
    assert money.currency is not None
    type_id = config.credit_type_for(money.currency)
    if type_id is None:
        known = ", ".join(sorted(s.currency for s in config.credit_types.values()))
        return (f"currency {money.currency} has no configured Metronome credit type "
                f"(configured: {known}); add it to the credit_types setting")
    return type_id, money.amount.scaleb(config.credit_types[type_id].scale,
                                           bc.shared_exact_context())


def _money_problems(name: str, money: bc.Money, amounts: Iterable[Decimal],
                    config: TranslationConfig) -> list[bc.FieldProblem]:
    found = []
    for amount in amounts:
        vendor = _vendor_amount(money.with_amount(amount), config)
        if isinstance(vendor, str):
            return [bc.FieldProblem(name, vendor)]
        if not bc.float64_exact(vendor[1]):
            found.append(bc.FieldProblem(
                name, f"{amount} becomes {vendor[1]} in Metronome's unit, which a JSON double "
                "does not carry exactly"))
    return found


def money_from_vendor(amount: Any, credit_type: Mapping[str, Any] | None,
                      config: TranslationConfig) -> bc.Money:
    """A vendor amount in a credit type (``{id, name}``; None: USD (cents)) as neutral Money."""
    return bc.Money.model_validate(_money_data(amount, credit_type, config))


def _money_data(amount: Any, credit_type: Mapping[str, Any] | None,
                config: TranslationConfig) -> dict[str, Any]:
    """``money_from_vendor``'s fields, not yet validated (the grant holding them validates
    them with everything else, in one pass)."""
    return _money_in(amount, credit_type, _scale_of(credit_type, config))


def _scale_of(credit_type: Mapping[str, Any] | None,
              config: TranslationConfig) -> CurrencyScale | None:
    """The configured currency of a credit type (``{id, name}``; None: USD (cents)), if any."""
    type_id = credit_type["id"] if credit_type else USD_CENTS
    return config.credit_types.get(type_id if type(type_id) is str else str(type_id))


def _money_in(amount: Any, credit_type: Mapping[str, Any] | None,
              scale: CurrencyScale | None) -> dict[str, Any]:
    """``_money_data`` with the credit type's ``_scale_of`` already known (an item's amounts
    share one credit type: it is looked up once)."""
    value = Decimal(amount) if type(amount) is int else \
        amount if type(amount) is Decimal else to_decimal(amount)  # (a balance: a Decimal)
    if scale is not None:
        # exact: the thread's default context would round past 28 digits
        return {"amount": value.scaleb(-scale.scale, bc.shared_exact_context()),
                "currency": scale.currency}
    type_id = str(credit_type["id"] if credit_type else USD_CENTS)
    name = credit_type.get("name") if credit_type else None
    return {"amount": value, "unit": {"id": type_id, "name": name}}


def _money_text(money: Mapping[str, Any]) -> str:
    """``str(Money)`` of ``_money_data``: ``10.00 USD``, or the amount and the unit's name."""
    unit = money.get("unit")
    label = money["currency"] if unit is None else (unit["name"] or unit["id"])
    amount = str(money["amount"])  # positional unless it has an exponent: then as "f" does
    return f"{amount if 'E' not in amount else format(money['amount'], 'f')} {label}"


def _money_pair(money: bc.Money, config: TranslationConfig) -> dict[str, Any]:
    vendor = _vendor_amount(money, config)
    if isinstance(vendor, str):
        raise bc.NotRepresentableError(config.provider, [bc.FieldProblem("amount", vendor)])
    return {"amount": vendor[1], "credit_type_id": vendor[0]}


# -- bookkeeping in custom fields ---------------------------------------------------------------


def _carried_paid(paid: bc.Money) -> dict[str, str]:
    fields = {PAID_AMOUNT: str(paid.amount)}
    if paid.currency is not None:
        fields[PAID_UNIT] = paid.currency
    else:
        assert paid.unit is not None
        fields[PAID_UNIT] = f"credit_type:{paid.unit.id}"
        if paid.unit.name is not None:
            fields[PAID_UNIT_NAME] = paid.unit.name
    return fields


def _read_carried_paid(fields: Mapping[str, str]) -> bc.Money | None:
    data = _carried_paid_data(fields)
    return None if data is None else bc.Money.model_validate(data)


def _carried_paid_data(fields: Mapping[str, str]) -> dict[str, Any] | None:
    if PAID_AMOUNT not in fields or PAID_UNIT not in fields:
        return None
    unit = fields[PAID_UNIT]
    amount = Decimal(fields[PAID_AMOUNT])
    if unit.startswith("credit_type:"):
        return {"amount": amount, "unit": {"id": unit.removeprefix("credit_type:"),
                                           "name": fields.get(PAID_UNIT_NAME)}}
    return {"amount": amount, "currency": unit}


def _sends_paid_natively(grant: bc.CreditGrant, config: TranslationConfig) -> bool:
    return (config.invoice_paid_amount and grant.paid_amount is not None
            and grant.paid_amount.amount > 0)


def _plans_bookkeeping(grant: bc.CreditGrant, config: TranslationConfig) -> dict[str, str]:
    fields: dict[str, str] = {}
    if grant.paid_amount is not None and not _sends_paid_natively(grant, config):
        fields.update(_carried_paid(grant.paid_amount))
    if grant.name is None:
        fields[UNNAMED] = "true"
    if grant.priority is None:
        fields[PRIORITY_DEFAULT] = "true"
    grant_type = grant.category_label or (grant.category.value if grant.category else None)
    native_paid = grant.paid_amount if _sends_paid_natively(grant, config) else None
    paid_read = native_paid or grant.paid_amount
    paid_value = None if paid_read is None else paid_read.amount
    if _category_from(grant_type, paid_value, {}) != (grant.category, grant.category_label):
        fields[CATEGORY] = grant.category.value if grant.category else UNSET
    return fields


def _credits_bookkeeping(grant: bc.CreditGrant) -> dict[str, str]:
    fields: dict[str, str] = {}
    if grant.paid_amount is not None:
        fields.update(_carried_paid(grant.paid_amount))
    if grant.category is not None:
        fields[CATEGORY] = grant.category.value
    if grant.category_label is not None:
        fields[CATEGORY_LABEL] = grant.category_label
    if grant.priority is None:
        fields[PRIORITY_DEFAULT] = "true"
    return fields


def _category_from(
    grant_type: str | None, paid: bc.Money | Decimal | None, fields: Mapping[str, str]
) -> tuple[bc.Category | None, str | None]:
    """``(category, category_label)`` from a v1 ``credit_grant_type``.

    ``paid``/``promotional`` are categories; any other label is kept and the category inferred
    from the paid amount (above 0: paid). A ``bc_category`` custom field overrides the inference
    (written only when inference would not give back what was sent).
    """
    if CATEGORY in fields:
        value = fields[CATEGORY]
        return (None if value == UNSET else bc.Category(value)), grant_type
    if grant_type is None:
        return None, None
    named = _categories().get(grant_type)
    if named is not None:
        return named, None
    amount = paid if paid is None or isinstance(paid, Decimal) else paid.amount
    paid_positive = amount is not None and amount > 0
    return (bc.Category.PAID if paid_positive else bc.Category.PROMOTIONAL), grant_type


@cache
def _categories() -> dict[str, bc.Category]:
    """The categories by their value (one dict lookup per item read, not an enum call)."""
    return {category.value: category for category in bc.Category}


def _user_fields(fields: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k not in RESERVED_KEYS}


def _idempotency_key(value: Any) -> str | None:
    if not isinstance(value, str) or GENERATED_KEY.match(value):
        return None
    return value


# -- checks -----------------------------------------------------------------------------------


def _common_problems(grant: bc.CreditGrant, config: TranslationConfig,
                     bookkeeping: Mapping[str, str], now: datetime | None) -> list[bc.FieldProblem]:
    found: list[bc.FieldProblem] = []
    if now is not None and grant.effective_at is None and grant.expires_at is not None:
        start = floor_hour(now) if config.alignment == "hour" else now
        if grant.expires_at <= start:
            found.append(bc.FieldProblem(
                "expires_at", f"{grant.expires_at.isoformat()} is not after the start Metronome "
                f"would get ({format_time(start)}, the creation time); give effective_at"))
    amounts = [s.amount for s in grant.schedule] if grant.schedule else [grant.amount.amount]
    found += _money_problems("amount", grant.amount, amounts, config)
    if grant.name == "":
        found.append(bc.FieldProblem("name", "Metronome refuses an empty name; use None"))
    for key, value in bookkeeping.items():
        if len(value) > MAX_CUSTOM_FIELD_VALUE:
            found.append(bc.FieldProblem(
                key.removeprefix(RESERVED_PREFIX),
                f"carried in custom field {key!r} as {len(value)} characters; at most "
                f"{MAX_CUSTOM_FIELD_VALUE} fit"))
    moments: list[tuple[str, datetime | None]] = [("effective_at", grant.effective_at),
                                                  ("expires_at", grant.expires_at)]
    for i, segment in enumerate(grant.schedule or ()):
        moments += [(f"schedule.{i}.starts_at", segment.starts_at),
                    (f"schedule.{i}.ends_before", segment.ends_before)]
    for name, moment in moments:
        if (problem := time_problem(name, moment, config.alignment)) is not None:
            found.append(problem)
        if moment is not None and moment >= config.far_future:
            found.append(bc.FieldProblem(
                name, f"{moment.isoformat()} is at or after the far-future date "
                f"{format_time(config.far_future)} that stands for 'never'"))
    return found


def plans_problems(grant: bc.CreditGrant, config: TranslationConfig,
                   now: datetime | None = None) -> list[bc.FieldProblem]:
    """What a v1 credit grant cannot hold of ``grant`` (capabilities cover the rest).

    With ``now``, also a grant without ``effective_at`` that would end before it starts.
    """
    found = _common_problems(grant, config, _plans_bookkeeping(grant, config), now)
    if grant.paid_amount is not None and _sends_paid_natively(grant, config):
        found += _money_problems("paid_amount", grant.paid_amount,
                                 [grant.paid_amount.amount], config)
    return found


def credits_problems(grant: bc.CreditGrant, config: TranslationConfig,
                     now: datetime | None = None) -> list[bc.FieldProblem]:
    """What a customer credit cannot hold of ``grant`` (capabilities cover the rest)."""
    return _common_problems(grant, config, _credits_bookkeeping(grant), now)


# -- v1 credit grants -------------------------------------------------------------------------


def _window(
    grant: bc.CreditGrant, config: TranslationConfig, now: datetime,
    adjustments: list[bc.Adjustment],
) -> tuple[datetime, datetime]:
    if grant.effective_at is None:
        start = floor_hour(now) if config.alignment == "hour" else now
        if config.alignment == "none":
            start = start - ((start - _EPOCH) % _MS)
        adjustments.append(bc.Adjustment(
            field="effective_at", requested=None, stored=format_time(start),
            reason="Metronome needs an explicit start: the creation time"
            + (", floored to the UTC hour" if config.alignment == "hour" else "")))
    else:
        start = align("effective_at", grant.effective_at, end=False,
                       alignment=config.alignment, adjustments=adjustments)
    if grant.expires_at is None:
        end = config.far_future
    else:
        end = align("expires_at", grant.expires_at, end=True,
                     alignment=config.alignment, adjustments=adjustments)
    return start, end


def _priority(grant: bc.CreditGrant, config: TranslationConfig,
              adjustments: list[bc.Adjustment]) -> Decimal:
    if grant.priority is None:
        adjustments.append(bc.Adjustment(
            field="priority", requested=None, stored=str(config.default_priority),
            reason="Metronome requires a priority: the configured default was sent; it reads "
            "back as None (custom field bc_priority_default)"))
        return config.default_priority
    problem = config.priority_domain.problem(grant.priority)
    if problem is not None:
        raise bc.PriorityNotRepresentableError(
            config.provider, [bc.FieldProblem("priority", f"{grant.priority} {problem}")])
    return grant.priority


def grant_create_payload(
    grant: bc.CreditGrant, uniqueness_key: str, config: TranslationConfig, now: datetime
) -> tuple[dict[str, Any], tuple[bc.Adjustment, ...]]:
    """The ``POST /v1/credits/createGrant`` body for ``grant``, and the adjustments made.

    ``paid_amount`` is sent as 0 USD (cents) unless the grant has a positive paid amount and the
    caller opted into invoicing; otherwise a cost basis travels in ``bc_paid_*`` custom fields.
    """
    if problems := plans_problems(grant, config, now):
        raise bc.NotRepresentableError(config.provider, problems)
    adjustments: list[bc.Adjustment] = []
    start, end = _window(grant, config, now, adjustments)
    if grant.name is None:
        adjustments.append(bc.Adjustment(
            field="name", requested=None, stored=config.default_name,
            reason="Metronome requires a name; it reads back as None (custom field bc_unnamed)"))
    if (grant.paid_amount is not None and grant.paid_amount.amount > 0
            and not _sends_paid_natively(grant, config)):
        adjustments.append(bc.Adjustment(
            field="paid_amount", requested=str(grant.paid_amount), stored="0",
            reason="Metronome invoices a positive paid_amount: it was sent as 0 (no invoice) "
            "and kept in custom fields bc_paid_amount/bc_paid_unit, where it reads back from"
            + ("; this copy records it only and never bills (record_only)" if config.record_only
               else "; set invoice_paid_amount to bill it")))
    payload: dict[str, Any] = {
        "customer_id": grant.customer_id,
        "name": grant.name if grant.name is not None else config.default_name,
        "grant_amount": _money_pair(grant.amount, config),
        "paid_amount": (
            _money_pair(grant.paid_amount, config)
            if grant.paid_amount is not None and _sends_paid_natively(grant, config)
            else {"amount": Decimal(0), "credit_type_id": USD_CENTS}
        ),
        "priority": _priority(grant, config, adjustments),
        "effective_at": format_time(start),
        "expires_at": format_time(end),
        "uniqueness_key": uniqueness_key,
    }
    if grant.reason is not None:
        payload["reason"] = grant.reason
    grant_type = grant.category_label or (grant.category.value if grant.category else None)
    if grant_type is not None:
        payload["credit_grant_type"] = grant_type
    if grant.scope.product_ids:
        payload["product_ids"] = list(grant.scope.product_ids)
    fields = {**grant.metadata, **_plans_bookkeeping(grant, config)}
    if fields:
        payload["custom_fields"] = fields
    return payload, tuple(adjustments)


_SCHEDULED, _EXPIRED, _ACTIVE = "scheduled", "expired", "active"
"""``bc.GrantStatus`` values (the model reads them as its members; a member looked up on its
class costs more than the comparisons that choose it)."""


def _status(effective: datetime | None, expires: datetime | None, now: datetime) -> str:
    if effective is not None and now < effective:
        return _SCHEDULED
    if expires is not None and now >= expires:
        return _EXPIRED
    return _ACTIVE


def _end(moment: datetime, config: TranslationConfig) -> datetime | None:
    return None if moment >= config.far_future else moment


def grant_from_item(
    item: Mapping[str, Any], config: TranslationConfig, now: datetime, *, provider: str
) -> bc.CreditGrant:
    """A ``listGrants`` item as a neutral grant, keeping every field.

    Amounts in configured currencies become major units (USD (cents) 1000 → 10.00 USD); other
    credit types become ``CreditUnit(id, name)``. ``balance`` is what the customer can still
    use (see ``grant_balance``). ``raw`` is the item as received plus ``_summary``: both
    balances, their date, the rule that chose the balance, and the deductions and pending
    deductions summed. An item of the wrong shape is ``InvalidResponseError``
    (``bc.reading_vendor_payload``), never any other exception.
    """
    try:  # as ``with bc.reading_vendor_payload(...)``, without a block's cost for each item
        return _grant_from_item(item, config, now, provider=provider)
    except Exception as error:
        bc.reading_vendor_payload(provider, "listGrants item", item).refuse(error)
        raise


def _grant_from_item(
    item: Mapping[str, Any], config: TranslationConfig, now: datetime, *, provider: str
) -> bc.CreditGrant:
    get = item.get
    custom = get("custom_fields")
    fields: dict[str, str] = {str(k): str(v) for k, v in custom.items()} if custom else {}
    grant_amount = item["grant_amount"]
    credit_type = grant_amount.get("credit_type")
    scale = _scale_of(credit_type, config)  # (the balance is in it too)
    amount = _money_in(grant_amount["amount"], credit_type, scale)
    paid_item = get("paid_amount")
    if paid_item is None:
        native_paid = None
    else:
        paid_type = paid_item.get("credit_type")
        # The grant's scale when it is the same credit type by the same id text (ids that are
        # equal but not text, 1 and 1.0, are looked up each by its own text)
        same = paid_type == credit_type and (not credit_type or type(credit_type["id"]) is str)
        native_paid = _money_in(paid_item["amount"], paid_type,
                                scale if same else _scale_of(paid_type, config))
    paid = native_paid if native_paid is not None and native_paid["amount"] > 0 else None
    if paid is None and fields:
        paid = _carried_paid_data(fields)
    category, label = _category_from(get("credit_grant_type"),
                                     None if paid is None else paid["amount"], fields)
    effective = parse_time(item["effective_at"])
    ends = parse_time(item["expires_at"])
    expires = None if ends >= config.far_future else ends
    balance_data = get("balance") or {}
    remaining, rule = grant_balance(item, expires_at=ends, now=now)
    balance = None if remaining is None else _money_in(remaining, credit_type, scale)
    # The item's text was checked with its page (see ``_transport.loads``), and the summary
    # holds only its text and this module's: the grant keeps ``raw`` without walking it again.
    raw = bc.payload_copy(item)
    posted, including = balance_data.get("excluding_pending"), balance_data.get("including_pending")
    deductions, pending = get("deductions"), get("pending_deductions")
    raw["_summary"] = {  # (ints, the usual numbers, and empty lists written directly)
        "balance_excluding_pending": str(posted) if type(posted) is int else number_text(posted),
        "balance_including_pending": str(including) if type(including) is int
        else number_text(including),
        "balance_effective_at": balance_data.get("effective_at"),
        "balance_rule": rule,
        "deductions": ledger_summary(deductions) if deductions
        else {"count": 0, "amount": "0", "invoice_ids": []},
        "pending_deductions": ledger_summary(pending) if pending
        else {"count": 0, "amount": "0", "invoice_ids": []},
        "native_paid_amount": None if native_paid is None else _money_text(native_paid),
        "invoice_id": get("invoice_id"),
    }
    priority = get("priority")
    key = get("uniqueness_key")
    data: dict[str, Any] = {
        "customer_id": item["customer_id"],
        "amount": amount,
        "name": None if UNNAMED in fields else get("name"),
        "reason": get("reason"),
        "category": category,
        "category_label": label,
        "paid_amount": paid,
        "effective_at": effective,
        "expires_at": expires,
        "priority": None if PRIORITY_DEFAULT in fields else (
            Decimal(priority) if type(priority) is int  # what from_vendor gives an int
            else config.priority_domain.from_vendor(
                None if priority is None else to_decimal(priority))),
        "metadata": fields if RESERVED_KEYS.isdisjoint(fields)  # (a dict made above)
        else {k: v for k, v in fields.items() if k not in RESERVED_KEYS},
        "idempotency_key": key if type(key) is str and not (
            key.startswith("bc-") and GENERATED_KEY.match(key)) else _idempotency_key(key),
        "id": str(item["id"]),
        "provider": provider,
        "status": _status(effective, expires, now),
        "balance": balance,
        "raw": raw,
    }
    products = get("products")
    if products:  # else the default: all usage
        data["scope"] = {"product_ids": tuple(str(p["id"]) for p in products)}
    return bc.CreditGrant.model_validate(data)  # one validation, nested money included


def _priority_in(value: Any, fields: Mapping[str, str],
                 config: TranslationConfig) -> Decimal | None:
    """The neutral priority: None when the library sent the default for "no priority"."""
    if PRIORITY_DEFAULT in fields:
        return None
    return config.priority_domain.from_vendor(None if value is None else to_decimal(value))


# -- contract customer credits ------------------------------------------------------------------


def credit_create_payload(
    grant: bc.CreditGrant, uniqueness_key: str, config: TranslationConfig, now: datetime
) -> tuple[dict[str, Any], tuple[bc.Adjustment, ...]]:
    """The ``POST /v1/contracts/customerCredits/create`` body for ``grant``, and adjustments.

    Each segment of the schedule (or the single window) becomes one ``schedule_items`` entry;
    an open end becomes the far-future date. ``product_id`` is the credit's own product from
    the settings; what the credit applies to is the scope.
    """
    if problems := credits_problems(grant, config, now):
        raise bc.NotRepresentableError(config.provider, problems)
    if not config.product_id:
        raise bc.ConfigurationError(
            "the metronome provider needs product_id: the Metronome product the credit itself "
            "is booked under (not what it applies to)")
    adjustments: list[bc.Adjustment] = []
    vendor_unit = _money_pair(grant.amount, config)["credit_type_id"]
    items: list[dict[str, Any]] = []
    if grant.schedule is None:
        start, end = _window(grant, config, now, adjustments)
        items.append({"amount": _money_pair(grant.amount, config)["amount"],
                      "starting_at": format_time(start), "ending_before": format_time(end)})
    else:
        for i, segment in enumerate(grant.schedule):
            start = align(f"schedule.{i}.starts_at", segment.starts_at, end=False,
                           alignment=config.alignment, adjustments=adjustments)
            end = config.far_future if segment.ends_before is None else align(
                f"schedule.{i}.ends_before", segment.ends_before, end=True,
                alignment=config.alignment, adjustments=adjustments)
            items.append({
                "amount": _money_pair(grant.amount.with_amount(segment.amount), config)["amount"],
                "starting_at": format_time(start), "ending_before": format_time(end)})
    payload: dict[str, Any] = {
        "customer_id": grant.customer_id,
        "product_id": config.product_id,
        "priority": _priority(grant, config, adjustments),
        "access_schedule": {"credit_type_id": vendor_unit, "schedule_items": items},
        "uniqueness_key": uniqueness_key,
    }
    if grant.name is not None:
        payload["name"] = grant.name
    if grant.reason is not None:
        payload["description"] = grant.reason
    scope = grant.scope
    if scope.product_ids:
        payload["applicable_product_ids"] = list(scope.product_ids)
    if scope.product_tags:
        payload["applicable_product_tags"] = list(scope.product_tags)
    if scope.contract_ids:
        payload["applicable_contract_ids"] = list(scope.contract_ids)
    if scope.specifiers:
        payload["specifiers"] = [_specifier_out(s) for s in scope.specifiers]
    fields = {**grant.metadata, **_credits_bookkeeping(grant)}
    if fields:
        payload["custom_fields"] = fields
    return payload, tuple(adjustments)


def _specifier_out(spec: bc.Specifier) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.product_id is not None:
        out["product_id"] = spec.product_id
    if spec.product_tags:
        out["product_tags"] = list(spec.product_tags)
    if spec.pricing_group_values:
        out["pricing_group_values"] = dict(spec.pricing_group_values)
    if spec.presentation_group_values:
        out["presentation_group_values"] = dict(spec.presentation_group_values)
    return out


def _specifier_in(data: Mapping[str, Any]) -> bc.Specifier:
    return bc.Specifier(
        product_id=data.get("product_id"),
        product_tags=tuple(data.get("product_tags") or ()),
        pricing_group_values=dict(data.get("pricing_group_values") or {}),
        presentation_group_values=dict(data.get("presentation_group_values") or {}),
    )


def credit_id(customer_id: str, vendor_id: str) -> str:
    """The neutral id of a customer credit: ``<customer_id>:<credit_id>``.

    Every customer-credit endpoint needs the customer as well as the credit, so the neutral id
    carries both; ``split_credit_id`` takes it apart.
    """
    return f"{customer_id}:{vendor_id}"


def split_credit_id(grant_id: str) -> tuple[str, str] | None:
    customer, sep, credit = grant_id.rpartition(":")
    if not sep or not customer or not credit:
        return None
    return customer, credit


def credit_from_item(
    item: Mapping[str, Any], customer_id: str, config: TranslationConfig, now: datetime,
    *, provider: str,
) -> bc.CreditGrant:
    """A ``customerCredits/list`` item (``Credit``) as a neutral grant.

    One schedule item reads as a single window (``schedule=None``; its segment id stays in
    ``raw``); several read as ``schedule`` with their segment ids. An end at or after the
    far-future date reads as None (never). ``balance`` follows the neutral meaning (what is
    left to use, now or later): Metronome's usable-now balance, present when the list asked for
    it, plus the full amounts of segments that have not started yet. An item of the wrong
    shape is ``InvalidResponseError`` (``bc.reading_vendor_payload``), never any other exception.
    """
    try:  # as ``with bc.reading_vendor_payload(...)``, without a block's cost for each item
        return _credit_from_item(item, customer_id, config, now, provider=provider)
    except Exception as error:
        bc.reading_vendor_payload(provider, "credit", item).refuse(error)
        raise


def _credit_from_item(
    item: Mapping[str, Any], customer_id: str, config: TranslationConfig, now: datetime,
    *, provider: str,
) -> bc.CreditGrant:
    fields: dict[str, str] = {str(k): str(v) for k, v in (item.get("custom_fields") or {}).items()}
    schedule_data = item.get("access_schedule") or {}
    credit_type = schedule_data.get("credit_type")
    items = list(schedule_data.get("schedule_items") or ())
    if not items:
        raise bc.InvalidResponseError(f"credit {item.get('id')!r} has no access schedule",
                                      provider=provider, body=bc.excerpt(item))
    amounts = [money_from_vendor(s["amount"], credit_type, config) for s in items]
    total = amounts[0].with_amount(bc.exact_sum(m.amount for m in amounts))
    starts = [parse_time(s["starting_at"]) for s in items]
    ends = [parse_time(s["ending_before"]) for s in items]
    schedule: tuple[bc.Segment, ...] | None = None
    if len(items) > 1:
        schedule = tuple(
            bc.Segment(amount=m.amount, starts_at=s,
                       ends_before=_end(e, config) if i == len(items) - 1 else e,
                       id=str(data["id"]) if data.get("id") is not None else None)
            for i, (m, s, e, data) in enumerate(zip(amounts, starts, ends, items, strict=True))
        )
    effective, expires = starts[0], _end(ends[-1], config)
    category = fields.get(CATEGORY)
    balance = None
    if item.get("balance") is not None:
        usable_now = money_from_vendor(item["balance"], credit_type, config)
        future = bc.exact_sum(m.amount for m, start in zip(amounts, starts, strict=True)
                              if start > now)
        balance = usable_now.with_amount(bc.exact_sum((usable_now.amount, future)))
    created = item.get("created_at")
    return bc.CreditGrant(
        customer_id=customer_id,
        amount=total,
        name=item.get("name"),
        reason=item.get("description"),
        category=None if category in (None, UNSET) else bc.Category(category),
        category_label=fields.get(CATEGORY_LABEL),
        paid_amount=_read_carried_paid(fields),
        effective_at=effective,
        expires_at=expires,
        schedule=schedule,
        priority=_priority_in(item.get("priority"), fields, config),
        scope=bc.Scope(
            product_ids=tuple(item.get("applicable_product_ids") or ()),
            product_tags=tuple(item.get("applicable_product_tags") or ()),
            contract_ids=tuple(item.get("applicable_contract_ids") or ()),
            specifiers=tuple(_specifier_in(s) for s in item.get("specifiers") or ()),
        ),
        metadata=_user_fields(fields),
        idempotency_key=_idempotency_key(item.get("uniqueness_key")),
        id=credit_id(customer_id, str(item["id"])),
        provider=provider,
        status=_status(effective, expires, now),
        balance=balance,
        created_at=parse_time(created) if isinstance(created, str) else None,
        raw=bc.payload_copy(item),
    )
