"""Pure translation between neutral grants and Stripe's ``billing.credit_grant``: no I/O.

Everything here is a typed function of its arguments, so it is unit- and property-tested
without a network, a fake or the SDK's HTTP layer. The provider (``_provider.py``) only moves
the dictionaries these functions build and read.

Neutral → Stripe is exact or refused (``NotRepresentableError`` naming the field); Stripe →
neutral is exact, and reports in ``CreditGrant.adjustments`` whatever Stripe stored differently
from what was asked (for example "all usage" narrowed to metered prices).

Neutral fields Stripe has no place for travel in metadata keys under ``RESERVED_PREFIX``:

- ``bc_reason``, ``bc_category_label``, ``bc_idempotency_key``: the field's text;
- ``bc_paid_amount``: ``"<decimal amount> <ISO code>"``, e.g. ``"12.50 USD"``;
- ``bc_flags``: comma-separated markers that make the round trip lossless where Stripe fills
  in a default: ``unset:category``, ``unset:priority``, ``unset:effective_at`` (the caller left
  the field to Stripe), ``scope:all`` (all usage, which Stripe narrows to metered prices) and
  ``schedule:1`` (a one-segment schedule rather than a plain window).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import billing_credits as bc

if TYPE_CHECKING:
    from stripe.params.billing import (
        CreditBalanceSummaryRetrieveParams,
        CreditGrantCreateParams,
        CreditGrantListParams,
    )

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_PAGE_SIZE",
    "META_CATEGORY_LABEL",
    "META_FLAGS",
    "META_IDEMPOTENCY_KEY",
    "META_PAID_AMOUNT",
    "META_REASON",
    "PRIORITY_DOMAIN",
    "PROVIDER_NAME",
    "RESERVED_PREFIX",
    "STRIPE_API_VERSION",
    "THREE_DECIMAL_CURRENCIES",
    "ZERO_DECIMAL_CURRENCIES",
    "balance_from_summary",
    "balance_params",
    "create_params",
    "differences",
    "from_minor_units",
    "from_stripe",
    "from_timestamp",
    "list_params",
    "problems",
    "status_of",
    "stripe_exponent",
    "to_minor_units",
    "to_timestamp",
]

PROVIDER_NAME = "stripe"
STRIPE_API_VERSION = "2026-10-28.endive"
"""The Stripe API version this adapter was written against; sent on every request."""

RESERVED_PREFIX = "bc_"
META_REASON = "bc_reason"
META_PAID_AMOUNT = "bc_paid_amount"
META_CATEGORY_LABEL = "bc_category_label"
META_IDEMPOTENCY_KEY = "bc_idempotency_key"
META_FLAGS = "bc_flags"

GRANTS_PATH = "/v1/billing/credit_grants"
SUMMARY_PATH = "/v1/billing/credit_balance_summary"
KEY_MEMORY = timedelta(hours=24)
"""Stripe removes idempotency keys once they are at least 24 hours old; a key reused after
that is a new request (https://docs.stripe.com/api/idempotent_requests)."""

MAX_PAGE_SIZE = 100
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
MAX_NAME_LENGTH = 100
MAX_PRICES = 20
MAX_ID_LENGTH = 5000
"""Stripe's limit on string parameters such as ids (``maxLength: 5000`` in Stripe's OpenAPI
spec; https://hexdocs.pm/tiger_stripe/Stripe.Params.Billing.CreditGrantCreateParams.html)."""
MAX_AMOUNT_VALUE = 2**63 - 1
"""The largest ``amount[monetary][value]`` Stripe can hold: Stripe's API integers are 64-bit
(the OpenAPI spec's ``format: int64``; the SDKs generated from it type the credit grant's
``value`` as ``i64``, https://docs.rs/crate/async-stripe-shared/latest/source/src/billing_credit_grants_resource_monetary_amount.rs).
Stripe documents no lower maximum for credit grants (payments cap at eight digits,
https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts); a larger value is
refused here, before any request, rather than sent and cut."""
MAX_IDEMPOTENCY_KEY_LENGTH = 255
"""https://docs.stripe.com/api/idempotent_requests: keys are up to 255 characters."""

STRIPE_CURRENCIES = frozenset({
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHF", "CLP", "CNY", "COP", "CRC", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ETB",
    "EUR", "FJD", "FKP", "GBP", "GEL", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG",
    "HUF", "IDR", "ILS", "INR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK",
    "MNT", "MOP", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR",
    "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB",
    "RWF", "SAR", "SBD", "SCR", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SZL", "THB", "TJS",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VND", "VUV",
    "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW",
})
"""Stripe's presentment currencies (https://docs.stripe.com/currencies#presentment-currencies,
with the three-decimal currencies of https://docs.stripe.com/currencies#three-decimal): the
only ISO codes a Stripe amount can be in. Not every ISO 4217 code is one (no XAU, no KPW…)."""

DEFAULT_PRIORITY = 50
DEFAULT_CATEGORY = "paid"
"""The value of ``bc.Category.PAID``, Stripe's default category (text, so that importing the
provider builds no model)."""
PRIORITY_DOMAIN = bc.PriorityDomain(
    "integer", Decimal(0), Decimal(100), default=Decimal(DEFAULT_PRIORITY)
)
_MAX_PRIORITY = 100
assert PRIORITY_DOMAIN.minimum == 0 and PRIORITY_DOMAIN.maximum == _MAX_PRIORITY  # noqa: PT018

ZERO_DECIMAL_CURRENCIES = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
})
"""Stripe's zero-decimal currencies (https://docs.stripe.com/currencies#zero-decimal).

MGA differs from ISO 4217 (which gives it two decimals): Stripe counts whole ariary.
"""

TWO_DECIMAL_WHOLE_UNITS = frozenset({"ISK"})
"""Stripe's special case: ISK is zero-decimal in ISO 4217 but two-decimal in the API, and every
amount must be a multiple of 100 (https://docs.stripe.com/currencies#special-cases)."""

THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
"""Stripe requires the last of the three decimals to be 0 (amounts rounded to ten); we refuse
rather than round (https://docs.stripe.com/currencies#three-decimal)."""

_FLAG_UNSET = "unset:"
_FLAG_SCOPE_ALL = "scope:all"
_FLAG_SCHEDULE = "schedule:1"
_UNSETTABLE = ("category", "effective_at", "priority")
_UNSET_CATEGORY, _UNSET_EFFECTIVE_AT, _UNSET_PRIORITY = (
    f"{_FLAG_UNSET}{name}" for name in _UNSETTABLE)
ALL_USAGE_REASON = (
    "Stripe billing credits apply only to metered prices; all usage is stored as "
    "price_type=metered"
)


# -- money ---------------------------------------------------------------------------------


@lru_cache(maxsize=512)  # vendor payloads name currencies: bounded
def stripe_exponent(currency: str) -> int | None:
    """The number of decimals of ``currency``'s minor unit in Stripe's API (None: not a Stripe
    currency).

    Stripe's zero-decimal list and its ISK special case override ISO 4217; every other Stripe
    currency uses its ISO exponent.
    """
    code = currency.upper()
    if code not in STRIPE_CURRENCIES:
        return None
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in TWO_DECIMAL_WHOLE_UNITS:
        return 2
    if not bc.is_iso_currency(code):
        return None
    return bc.currency_exponent(code)


_WHOLE_OR_TENS = frozenset(TWO_DECIMAL_WHOLE_UNITS) | frozenset(THREE_DECIMAL_CURRENCIES)
"""The currencies whose minor units Stripe restricts further (one membership test for all)."""
_NEUTRAL_EXPONENTS: dict[str, int | None] = {}
"""``stripe_exponent`` of the neutral currencies seen (ISO 4217 codes, upper case, as a
``Money`` holds them: a bounded set), read with one dict lookup."""


def _money_problem(where: str, money: bc.Money) -> str | None:
    found = _minor_units(money)
    return found if isinstance(found, str) else None


def _minor_units(money: bc.Money) -> int | str:
    """``money`` in Stripe's integer minor units, or the reason it cannot be."""
    currency = money.currency
    if currency is None:
        return "custom credit units are not supported: Stripe grants are monetary only"
    exponent = _NEUTRAL_EXPONENTS.get(currency, -1)
    if exponent == -1:
        exponent = _NEUTRAL_EXPONENTS[currency] = stripe_exponent(currency)
    if exponent is None:
        return (f"{currency} is not a currency Stripe supports "
                "(https://docs.stripe.com/currencies)")
    amount = money.amount
    # Exactly, in integers from the amount's ratio: no decimal context can round it (the
    # default 28-digit one would round ``1234567890123456789012345678.91`` silently).
    numerator, denominator = amount.as_integer_ratio()
    scaled: int = numerator * 10**exponent
    if scaled % denominator:
        return (f"{amount} {currency} is not a whole number of Stripe's minor units "
                f"(10^-{exponent})")
    value = scaled // denominator
    if currency in _WHOLE_OR_TENS:
        if currency in TWO_DECIMAL_WHOLE_UNITS and value % 100:
            return f"{amount} {currency}: Stripe accepts whole units of this currency only"
        if currency in THREE_DECIMAL_CURRENCIES and value % 10:
            return (f"{amount} {currency}: Stripe requires the last of three decimals "
                    "to be 0")
    if value > MAX_AMOUNT_VALUE:
        return (f"{amount} {currency} is {value} minor units; Stripe amounts are "
                f"64-bit integers of at most {MAX_AMOUNT_VALUE}")
    return value


def to_minor_units(money: bc.Money, *, where: str = "amount") -> tuple[str, int]:
    """``money`` as Stripe's (lowercase currency, integer minor units), exactly, or refused."""
    value = _minor_units(money)
    if isinstance(value, str):
        raise bc.NotRepresentableError(PROVIDER_NAME, [bc.FieldProblem(where, value)])
    assert money.currency is not None
    return money.currency.lower(), value


def from_minor_units(currency: str, value: int) -> bc.Money:
    """Stripe's (currency, integer minor units) as neutral ``Money`` in major units."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Stripe amounts are integers, got {value!r}")
    if not isinstance(currency, str):
        raise TypeError(f"Stripe currencies are strings, got {currency!r}")
    exponent = stripe_exponent(currency)
    if exponent is None:
        raise ValueError(f"unknown Stripe currency {currency!r}")
    return bc.Money(amount=Decimal(value).scaleb(-exponent, context=bc.shared_exact_context()),
                    currency=currency.upper())


def _format_money(money: bc.Money) -> str:
    return f"{money.amount} {money.currency}"


def _parse_money(text: str) -> bc.Money | None:
    parts = text.split(" ")
    if len(parts) != 2:
        return None
    try:
        return bc.Money(amount=Decimal(parts[0]), currency=parts[1])
    except (InvalidOperation, bc.InvalidGrantError):
        return None


# -- time ----------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(moment: datetime) -> int:
    """A UTC-aware datetime as Unix seconds (refuses sub-second precision)."""
    if moment.tzinfo is not UTC:  # (the neutral model holds every time in UTC)
        if moment.tzinfo is None:
            raise ValueError("naive datetime")
        since = moment - _EPOCH  # exact (a timedelta), whatever the zone
        if since.microseconds:
            raise ValueError(f"{moment.isoformat()} has sub-second precision")
        return since.days * 86_400 + since.seconds
    if moment.microsecond:
        raise ValueError(f"{moment.isoformat()} has sub-second precision")
    # exact: whole seconds of years 1-9999 are integers far below 2^53, which a double holds
    return int(moment.timestamp())


def from_timestamp(value: int | None) -> datetime | None:
    """Unix seconds (or None) as a UTC datetime. Stripe timestamps are integers: anything else
    (a boolean, a float, a string) is refused with ``TypeError`` rather than read as a time."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Stripe timestamps are integers (Unix seconds), got {value!r}")
    return datetime.fromtimestamp(value, UTC)


# -- checks --------------------------------------------------------------------------------


def problems(grant: bc.CreditGrant) -> list[bc.FieldProblem]:
    """What of ``grant`` Stripe cannot hold beyond the declared capabilities.

    The capabilities (checked by the core first) cover units, priority, scope kinds, the price
    limit, segments, name length, time resolution and the user's metadata; this adds Stripe's
    own currency exponents, the metadata keys the provider itself needs, and values Stripe
    would drop on the way (empty strings).
    """
    return _problems(grant, _reserved_metadata(grant))


def _problems(grant: bc.CreditGrant, reserved: Mapping[str, str],
              amount_minor: int | str | None = None) -> list[bc.FieldProblem]:
    # Every string of a CreditGrant is valid Unicode (pydantic's core refuses a lone surrogate,
    # see ``NeutralModel``), and ``Provider.prepare`` validates again whatever it is given, so
    # the text needs no check of its own here.
    found: list[bc.FieldProblem] = []
    fields = grant.__dict__  # the attributes' values, read without a lookup each
    amount, paid = fields["amount"], fields["paid_amount"]
    if amount.currency is not None:
        minor = amount_minor if amount_minor is not None else _minor_units(amount)
        if type(minor) is str:
            found.append(bc.FieldProblem("amount", minor))
    if paid is not None and paid.currency is not None:
        minor = _minor_units(paid)
        if type(minor) is str:
            found.append(bc.FieldProblem("paid_amount", minor))
    if len(fields["customer_id"]) > MAX_ID_LENGTH:
        found.append(bc.FieldProblem("customer_id", f"longer than {MAX_ID_LENGTH} characters"))
    price_ids = fields["scope"].price_ids
    if price_ids:
        for i, price in enumerate(price_ids):
            if len(price) > MAX_ID_LENGTH:
                found.append(bc.FieldProblem(
                    f"scope.price_ids.{i}", f"{len(price)} characters; Stripe ids hold at "
                    f"most {MAX_ID_LENGTH}"))
    key = fields["idempotency_key"]
    if key is not None and not _header_safe(key):
        found.append(bc.FieldProblem(
            "idempotency_key", "travels in the Idempotency-Key header: printable ASCII only "
            "(no control characters, no line breaks, no non-ASCII)"))
    if fields["name"] == "":
        found.append(bc.FieldProblem("name", "Stripe stores an empty name as none; give None"))
    reason, label = fields["reason"], fields["category_label"]
    most = MAX_METADATA_VALUE_LENGTH
    if (reason is not None and not 0 < len(reason) <= most) or (
            label is not None and not 0 < len(label) <= most) or (
            key is not None and not 0 < len(key) <= most):
        for field, text in (("reason", reason), ("category_label", label),
                            ("idempotency_key", key)):
            if text is None:
                continue
            if text == "":
                found.append(bc.FieldProblem(field, "Stripe metadata cannot hold an empty string"))
            elif len(text) > MAX_METADATA_VALUE_LENGTH:
                found.append(bc.FieldProblem(
                    field, f"{len(text)} characters; Stripe metadata values hold at most "
                    f"{MAX_METADATA_VALUE_LENGTH} (it travels in metadata)"))
    metadata = fields["metadata"]
    if metadata and ("" in metadata or "" in metadata.values()):
        for key, value in metadata.items():
            if key == "":
                found.append(bc.FieldProblem("metadata", "Stripe metadata keys cannot be empty"))
            if value == "":
                found.append(bc.FieldProblem(
                    f"metadata.{key}", "Stripe deletes a key whose value is empty"))
    if fields["schedule"] is not None:
        for i, segment in enumerate(fields["schedule"]):
            if segment.id is not None:
                found.append(bc.FieldProblem(
                    f"schedule.{i}.id", "Stripe grants have no segment ids"))
    total = len(metadata) + len(reserved)
    if total > MAX_METADATA_KEYS:
        found.append(bc.FieldProblem(
            "metadata", f"{len(metadata)} keys plus {total - len(metadata)} the "
            f"provider needs for fields Stripe lacks; at most {MAX_METADATA_KEYS} fit"))
    return found


def _header_safe(text: str) -> bool:
    """Printable ASCII only (space to ``~``): what an HTTP header value may carry."""
    return text.isascii() and text.isprintable()


# -- neutral → Stripe ----------------------------------------------------------------------


def _flags(fields: Mapping[str, Any]) -> list[str]:
    """The ``bc_flags`` of a grant's fields (its ``__dict__``)."""
    flags = []
    if fields["category"] is None:
        flags.append(_UNSET_CATEGORY)
    if fields["effective_at"] is None:
        flags.append(_UNSET_EFFECTIVE_AT)
    if fields["priority"] is None:
        flags.append(_UNSET_PRIORITY)
    if fields["scope"].is_all_usage:
        flags.append(_FLAG_SCOPE_ALL)
    if fields["schedule"] is not None:
        flags.append(_FLAG_SCHEDULE)
    return flags


def _reserved_metadata(grant: bc.CreditGrant) -> dict[str, str]:
    reserved: dict[str, str] = {}
    fields = grant.__dict__  # the same values as the attributes, read without a lookup each
    if fields["reason"] is not None:
        reserved[META_REASON] = fields["reason"]
    if fields["paid_amount"] is not None:
        reserved[META_PAID_AMOUNT] = _format_money(fields["paid_amount"])
    if fields["category_label"] is not None:
        reserved[META_CATEGORY_LABEL] = fields["category_label"]
    if fields["idempotency_key"] is not None:
        reserved[META_IDEMPOTENCY_KEY] = fields["idempotency_key"]
    flags = _flags(fields)
    if flags:
        reserved[META_FLAGS] = ",".join(flags)
    return reserved


def _customer_params(customer_id: str) -> dict[str, str]:
    """Accounts v2 ids (``acct_…``) go in ``customer_account``, all others in ``customer``."""
    if customer_id.startswith("acct_"):
        return {"customer_account": customer_id}
    return {"customer": customer_id}


def create_params(grant: bc.CreditGrant) -> CreditGrantCreateParams:
    """The ``POST /v1/billing/credit_grants`` parameters for ``grant`` (checked first).

    Raises ``NotRepresentableError`` naming every field Stripe cannot hold.
    """
    reserved = _reserved_metadata(grant)
    fields = grant.__dict__  # the attributes' values, read without a lookup each
    amount = fields["amount"]
    minor = _minor_units(amount)
    if found := _problems(grant, reserved, minor):
        raise bc.NotRepresentableError(PROVIDER_NAME, found)
    if type(minor) is str:  # a custom unit (the capabilities refuse it first)
        raise bc.NotRepresentableError(PROVIDER_NAME, [bc.FieldProblem("amount", minor)])
    customer = fields["customer_id"]
    params: dict[str, Any] = {
        "amount": {"type": "monetary",
                   "monetary": {"currency": amount.currency.lower(), "value": minor}},
        # as _customer_params: Accounts v2 ids in customer_account
        "customer_account" if customer.startswith("acct_") else "customer": customer,
    }
    grant_scope = fields["scope"]
    price_ids = grant_scope.price_ids
    if price_ids:
        if len(price_ids) > MAX_PRICES:
            raise bc.NotRepresentableError(PROVIDER_NAME, [bc.FieldProblem(
                "scope.price_ids", f"at most {MAX_PRICES} prices fit")])
        scope: dict[str, Any] = {"prices": [{"id": price} for price in price_ids]}
    else:
        unsupported = () if grant_scope.is_all_usage else \
            grant_scope.kinds() - {"metered_prices_only"}
        if unsupported:
            raise bc.NotRepresentableError(PROVIDER_NAME, [
                bc.FieldProblem(f"scope.{kind}", "not supported by Stripe")
                for kind in sorted(unsupported)])
        scope = {"price_type": "metered"}
    params["applicability_config"] = {"scope": scope}
    category, effective, expires = fields["category"], fields["effective_at"], fields["expires_at"]
    if category is not None:
        params["category"] = category._value_  # .value, without the enum's property
    try:
        if effective is not None:
            params["effective_at"] = to_timestamp(effective)
        if expires is not None:
            params["expires_at"] = to_timestamp(expires)
    except ValueError as error:
        raise bc.NotRepresentableError(PROVIDER_NAME, [
            bc.FieldProblem("effective_at/expires_at", str(error))]) from None
    if fields["name"] is not None:
        params["name"] = fields["name"]
    priority = fields["priority"]
    if priority is not None:
        whole = int(priority)  # the common case: a whole number in 0-100, as it is
        params["priority"] = whole if whole == priority and 0 <= whole <= _MAX_PRIORITY \
            else PRIORITY_DOMAIN.to_vendor(priority, provider=PROVIDER_NAME)
    metadata = {**fields["metadata"], **reserved}
    if metadata:
        params["metadata"] = metadata
    return params  # type: ignore[return-value]


def sendable_id(field: str, value: object) -> str:
    """An id the caller gave, refused before any request if Stripe could not be asked for it:
    not a non-empty string, over 5,000 characters, or not encodable (a lone surrogate)."""
    problem = None
    if not isinstance(value, str) or not value.strip():
        problem = "give a non-empty string"
    elif len(value) > MAX_ID_LENGTH:
        problem = f"{len(value)} characters; Stripe ids hold at most {MAX_ID_LENGTH}"
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problem = "holds characters that are not valid Unicode (a lone surrogate)"
    if problem is not None:
        raise bc.InvalidGrantError([bc.FieldProblem(field, problem)], model="Stripe request")
    assert isinstance(value, str)
    return value


def grant_path(grant_id: str, action: str | None = None) -> str:
    """``/v1/billing/credit_grants/{id}[/action]``, the id escaped as one path segment."""
    path = f"{GRANTS_PATH}/{quote(sendable_id('grant_id', grant_id), safe='')}"
    return f"{path}/{action}" if action else path


def vendor_id(item: Any) -> str | None:
    """The Stripe id of a listing item, if it has one (for unreadable items)."""
    found = item.get("id") if isinstance(item, Mapping) else None
    return found if isinstance(found, str) else None


def list_params(
    customer_id: str | None, *, limit: int | None = None, starting_after: str | None = None
) -> CreditGrantListParams:
    """``GET /v1/billing/credit_grants`` parameters: one page of up to 100, after a cursor."""
    size = MAX_PAGE_SIZE if limit is None else max(1, min(limit, MAX_PAGE_SIZE))
    params: dict[str, Any] = {"limit": size}
    if customer_id is not None:
        sendable_id("customer_id", customer_id)
        params.update(_customer_params(customer_id))
    if starting_after is not None:
        params["starting_after"] = starting_after
    return params  # type: ignore[return-value]


def balance_params(customer_id: str, grant_id: str) -> CreditBalanceSummaryRetrieveParams:
    """``GET /v1/billing/credit_balance_summary`` parameters for one grant's balance."""
    params: dict[str, Any] = {
        **_customer_params(customer_id),
        "filter": {"type": "credit_grant", "credit_grant": grant_id},
    }
    return params  # type: ignore[return-value]


TEST_CLOCKS_PATH = "/v1/test_helpers/test_clocks"
"""``GET /v1/test_helpers/test_clocks/{test_clock}`` retrieves a clock
(``stripe/test_helpers/_test_clock_service.py`` ``retrieve``)."""


def test_clock_path(clock_id: str) -> str:
    """``/v1/test_helpers/test_clocks/{id}``, the id escaped as one path segment."""
    return f"{TEST_CLOCKS_PATH}/{quote(sendable_id('test_clock', clock_id), safe='')}"


def test_clock_of(obj: Any) -> str | None:
    """The id of the test clock a grant or transaction belongs to (``test_clock``, a string or
    an expanded object), or None."""
    ref = obj.get("test_clock") if isinstance(obj, Mapping) else None
    if isinstance(ref, Mapping):
        ref = ref.get("id")
    return ref if isinstance(ref, str) and ref else None


@bc.reads_vendor_payload(PROVIDER_NAME, "test clock")
def frozen_time_of(clock: Mapping[str, Any]) -> datetime:
    """A test clock's ``frozen_time``: "Time at which all objects belonging to this clock are
    frozen" (``stripe/test_helpers/_test_clock.py``)."""
    value = clock.get("frozen_time")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"frozen_time is {value!r}, not a Unix timestamp")
    moment = from_timestamp(value)
    assert moment is not None
    return moment


# -- Stripe → neutral ----------------------------------------------------------------------


@bc.reads_vendor_payload(PROVIDER_NAME, "credit grant")
def status_of(obj: Mapping[str, Any], now: datetime) -> bc.GrantStatus:
    """A Stripe grant's status at ``now``, from ``voided_at``, ``expires_at``, ``effective_at``."""
    if obj.get("voided_at") is not None:
        return bc.GrantStatus.VOIDED
    expires = from_timestamp(obj.get("expires_at"))
    if expires is not None and now >= expires:
        return bc.GrantStatus.EXPIRED
    effective = from_timestamp(obj.get("effective_at"))
    if effective is not None and now < effective:
        return bc.GrantStatus.SCHEDULED
    return bc.GrantStatus.ACTIVE


def _customer_of(obj: Mapping[str, Any]) -> str:
    customer = obj.get("customer")
    if isinstance(customer, Mapping):
        customer = customer.get("id")
    account = obj.get("customer_account")
    for field, value in (("customer", customer), ("customer_account", account)):
        if value is not None and not isinstance(value, str):
            raise _bad(obj, f"has a {field} that is not an id ({value!r})")
    if customer:
        return str(customer)
    if account:
        return str(account)
    raise _bad(obj, "has neither customer nor customer_account")


def _bad(obj: Mapping[str, Any], problem: str) -> bc.InvalidResponseError:
    return bc.InvalidResponseError(
        f"Stripe credit grant {obj.get('id')!r} {problem}; it cannot be read as a neutral grant",
        provider=PROVIDER_NAME, body=bc.excerpt(obj))


def _metadata_of(
    raw: Mapping[str, str], adjustments: list[bc.Adjustment]
) -> tuple[dict[str, str], bc.Money | None]:
    """The caller's metadata and the paid amount; unknown or unreadable ``bc_`` keys are kept
    in the metadata rather than dropped."""
    metadata = {k: v for k, v in raw.items() if not k.startswith(RESERVED_PREFIX)}
    paid_amount = None
    if (paid_text := raw.get(META_PAID_AMOUNT)) is not None:
        paid_amount = _parse_money(paid_text)
        if paid_amount is None:
            metadata[META_PAID_AMOUNT] = paid_text
            adjustments.append(bc.Adjustment(
                field="paid_amount", requested=None, stored=paid_text,
                reason=f"metadata {META_PAID_AMOUNT} is not '<amount> <currency>'; kept as is"))
    known = {META_REASON, META_PAID_AMOUNT, META_CATEGORY_LABEL, META_IDEMPOTENCY_KEY, META_FLAGS}
    for key in raw:
        if key.startswith(RESERVED_PREFIX) and key not in known:
            metadata[key] = raw[key]
    return metadata, paid_amount


def _scope_of(
    obj: Mapping[str, Any], flags: set[str], adjustments: list[bc.Adjustment]
) -> bc.Scope:
    scope_obj = (obj.get("applicability_config") or {}).get("scope") or {}
    prices = scope_obj.get("prices") or []
    if prices:
        ids = [p.get("id") if isinstance(p, Mapping) else p for p in prices]
        if not isinstance(prices, list) or not all(isinstance(i, str) and i for i in ids):
            raise _bad(obj, f"has an applicability price that is not an id ({prices!r})")
        return bc.Scope(price_ids=tuple(ids))
    if scope_obj.get("price_type") != "metered":
        raise _bad(obj, f"has an applicability scope this adapter does not know ({scope_obj!r})")
    if _FLAG_SCOPE_ALL not in flags:
        return bc.Scope(metered_prices_only=True)
    adjustments.append(bc.Adjustment(
        field="scope", requested="all usage", stored="price_type=metered",
        reason=ALL_USAGE_REASON))
    return bc.Scope()


def _category_of(
    obj: Mapping[str, Any], flags: set[str], adjustments: list[bc.Adjustment]
) -> bc.Category | None:
    raw = obj.get("category")
    category: bc.Category | None = None
    if raw is not None:
        try:
            category = bc.Category(raw)
        except ValueError:
            raise _bad(obj, f"has an unknown category {raw!r}") from None
    if f"{_FLAG_UNSET}category" in flags and category in (None, bc.Category(DEFAULT_CATEGORY)):
        if category is not None:
            adjustments.append(bc.Adjustment(
                field="category", requested=None, stored=category.value,
                reason="Stripe applies category 'paid' when none is given"))
        return None
    return category


def _priority_of(
    obj: Mapping[str, Any], flags: set[str], adjustments: list[bc.Adjustment]
) -> Decimal | None:
    priority = PRIORITY_DOMAIN.from_vendor(obj.get("priority"))
    if f"{_FLAG_UNSET}priority" in flags and priority == PRIORITY_DOMAIN.default:
        adjustments.append(bc.Adjustment(
            field="priority", requested=None, stored=str(priority),
            reason="Stripe applies priority 50 when none is given"))
        return None
    return priority


def _window_of(
    obj: Mapping[str, Any], flags: set[str], adjustments: list[bc.Adjustment]
) -> tuple[datetime | None, datetime | None]:
    effective_at = from_timestamp(obj.get("effective_at"))
    expires_at = from_timestamp(obj.get("expires_at"))
    if f"{_FLAG_UNSET}effective_at" in flags and effective_at is not None:
        adjustments.append(bc.Adjustment(
            field="effective_at", requested=None, stored=effective_at.isoformat(),
            reason="Stripe makes a grant effective at creation when no time is given"))
        effective_at = None
    if effective_at is not None and expires_at is not None and expires_at <= effective_at:
        adjustments.append(bc.Adjustment(
            field="effective_at", requested=None, stored=effective_at.isoformat(),
            reason="Stripe expired the grant before it became effective; it never had credits "
                   "available"))
        effective_at = None
    return effective_at, expires_at


@bc.reads_vendor_payload(PROVIDER_NAME, "credit grant")
def from_stripe(
    obj: Mapping[str, Any], *, now: datetime, balance: bc.Money | None = None
) -> bc.CreditGrant:
    """A Stripe ``billing.credit_grant`` (as decoded JSON) as a read-back neutral grant.

    Fields carried in ``bc_`` metadata come back out; ``priority: null`` reads as 50; what
    Stripe stored differently from the neutral meaning is listed in ``adjustments``. A grant
    of the wrong shape is ``InvalidResponseError`` (``bc.reads_vendor_payload``), never any
    other exception.
    """
    amount_obj = obj.get("amount") or {}
    monetary = amount_obj.get("monetary")
    if amount_obj.get("type") != "monetary" or not monetary:
        raise _bad(obj, f"has a non-monetary amount ({amount_obj.get('type')!r})")
    amount = from_minor_units(monetary["currency"], monetary["value"])
    adjustments: list[bc.Adjustment] = []
    raw_metadata: Mapping[str, str] = obj.get("metadata") or {}
    flags = set(filter(None, (raw_metadata.get(META_FLAGS) or "").split(",")))
    metadata, paid_amount = _metadata_of(raw_metadata, adjustments)
    scope = _scope_of(obj, flags, adjustments)
    category = _category_of(obj, flags, adjustments)
    priority = _priority_of(obj, flags, adjustments)
    effective_at, expires_at = _window_of(obj, flags, adjustments)
    data: dict[str, Any] = {
        "customer_id": _customer_of(obj),
        "amount": amount,
        "name": obj.get("name"),
        "reason": raw_metadata.get(META_REASON),
        "category": category,
        "category_label": raw_metadata.get(META_CATEGORY_LABEL),
        "paid_amount": paid_amount,
        "effective_at": effective_at,
        "expires_at": expires_at,
        "priority": priority,
        "scope": scope,
        "metadata": metadata,
        "idempotency_key": raw_metadata.get(META_IDEMPOTENCY_KEY),
        "id": obj.get("id"),
        "provider": PROVIDER_NAME,
        "status": status_of(obj, now),
        "balance": balance,
        "created_at": from_timestamp(obj.get("created")),
        "raw": dict(obj),
        "adjustments": tuple(adjustments),
    }
    if _FLAG_SCHEDULE in flags and effective_at is not None:
        data["schedule"] = (bc.Segment(amount=amount.amount, starts_at=effective_at,
                                       ends_before=expires_at),)
    return bc.CreditGrant.model_validate(data)


@bc.reads_vendor_payload(PROVIDER_NAME, "credit balance summary")
def balance_from_summary(summary: Mapping[str, Any], currency: str) -> bc.Money:
    """A grant's remaining balance from a credit balance summary filtered to that grant.

    The conservative figure: the smaller of ``available_balance`` and ``ledger_balance`` in the
    grant's currency (zero when Stripe lists no balance in it).
    """
    values: list[int] = []
    for entry in summary.get("balances") or []:
        for kind in ("available_balance", "ledger_balance"):
            monetary = (entry.get(kind) or {}).get("monetary") or {}
            if str(monetary.get("currency", "")).upper() == currency.upper():
                value = monetary["value"]
                # "A positive integer representing the amount" (_credit_balance_summary.py)
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise TypeError(f"{kind} value is {value!r}, not a non-negative integer")
                values.append(value)
    return from_minor_units(currency, min(values) if values else 0)


def differences(requested: bc.CreditGrant, stored: bc.CreditGrant) -> list[bc.Adjustment]:
    """Fields Stripe stored differently from what was requested (empty: stored exactly).

    Compared by value (``Decimal("10")`` equals ``Decimal("10.00")``), read-back fields aside.
    """
    asked = requested.as_new().comparable()
    got = stored.as_new().comparable()
    return [
        bc.Adjustment(field=name, requested=_text(asked[name]), stored=_text(got.get(name)),
                      reason="Stripe stored a different value than requested")
        for name in sorted(asked)
        if asked[name] != got.get(name)
    ]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def metadata_keys(params: Mapping[str, Any]) -> Sequence[str]:
    """The metadata keys a create request carries (for tests and diagnostics)."""
    return list((params.get("metadata") or {}).keys())
