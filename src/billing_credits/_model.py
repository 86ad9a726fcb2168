"""The neutral credit grant: what every vendor means by a grant of prepaid credits."""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    model_validator,
)
from pydantic_core import TzInfo

from ._base import NAIVE_REFUSED, NeutralModel, RawPayload
from ._errors import FieldProblem, InvalidGrantError
from ._money import BEYOND_DOUBLE, MAX_DIGITS, Money, _digits, exact_json, shared_exact

__all__ = [
    "MIGRATED_KEY",
    "Adjustment",
    "Category",
    "CreditGrant",
    "GrantStatus",
    "Scope",
    "Segment",
    "Specifier",
    "UtcDatetime",
]


EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=2)
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=2)
"""Times the model accepts (UTC): a margin of two days from the calendar's ends, so that no
time zone, hour alignment or a day's arithmetic on a valid time can overflow."""


def _utc_or_none(value: datetime) -> datetime | None:
    """``value`` in UTC when it has a UTC offset and is in range (the common case, without an
    exception); None otherwise (``_time_problem`` says why)."""
    zone = value.tzinfo
    if zone is UTC:
        return value if EARLIEST <= value <= LATEST else None
    if not _has_offset(value):
        return None
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        return None
    return utc if EARLIEST <= utc <= LATEST else None


def _has_offset(value: datetime) -> bool:
    zone = value.tzinfo
    return zone is not None and (type(zone) in _FIXED_ZONES or value.utcoffset() is not None)


def _time_problem(value: datetime) -> str:
    """Why ``_utc_or_none(value)`` is None: naive, or out of range."""
    if not _has_offset(value):
        return NAIVE_REFUSED
    return (f"{value.isoformat()} is out of range: give a time between "
            f"{EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")


def _to_utc(value: datetime) -> datetime:
    utc = _utc_or_none(value)
    if utc is None:
        raise ValueError(_time_problem(value))
    return utc


_FIXED_ZONES = (timezone, TzInfo)
"""Zones whose ``utcoffset`` is never None: the standard library's fixed offsets and
pydantic-core's (what it gives a parsed ``Z`` or ``+01:00``)."""

UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalized to UTC. Naive datetimes are refused, not guessed."""

def _priority_bounds(value: Decimal) -> Decimal:
    text = str(value)
    if len(text) <= MAX_DIGITS and "E" not in text:
        return value  # positional, at most MAX_DIGITS digits, and between 10^-7 and 10^40
    if not math.isfinite(value):  # beyond any double: no vendor's priority
        raise ValueError(BEYOND_DOUBLE)
    if len(value.as_tuple().digits) > MAX_DIGITS:
        raise ValueError(f"has more than {MAX_DIGITS} significant digits")
    if value and abs(value.adjusted()) > _PRIORITY_EXPONENT:
        raise ValueError(f"must be 0 or between 10^-{_PRIORITY_EXPONENT} and 10^{_PRIORITY_EXPONENT} "
                         "in size")
    return value


_PRIORITY_EXPONENT = 400
"""Every finite double (10^-324 to 10^308) fits; nothing beyond is anybody's priority."""

NonEmpty = Annotated[str, Field(min_length=1)]
_Number = Annotated[Decimal, Field(allow_inf_nan=False)]
"""A finite exact number, converted in pydantic's core (floats from their text, no bool, NaN
or infinity; see ``ExactDecimal``); the rest of the checks happen in the model's ``_rules``."""


class Category(enum.StrEnum):
    """Whether the credits were bought or given."""

    PAID = "paid"
    PROMOTIONAL = "promotional"


class GrantStatus(enum.StrEnum):
    """A grant's state when read back, as of the read."""

    SCHEDULED = "scheduled"
    ACTIVE = "active"
    EXPIRED = "expired"
    VOIDED = "voided"


class Segment(NeutralModel):
    """One access window of a scheduled grant: ``amount`` usable in ``[starts_at, ends_before)``.

    ``id`` is the vendor's segment id when read back. ``ends_before=None`` (never) is allowed on
    the last segment only.
    """

    amount: _Number
    starts_at: AwareDatetime
    ends_before: AwareDatetime | None = None
    id: str | None = None

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any
    ) -> Self:
        """As pydantic's, but JSON numbers are read exactly (see ``exact_json``)."""
        return cls.model_validate(exact_json(json_data), *args, **kwargs)

    @model_validator(mode="after")
    def _rules(self) -> Self:
        """Every rule of a segment in one call (see ``CreditGrant._rules``)."""
        fields = self.__dict__
        amount, start, end = fields["amount"], fields["starts_at"], fields["ends_before"]
        found: list[FieldProblem] = []
        text = str(amount)
        if not (amount > 0 and len(text) <= MAX_DIGITS and "E" not in text):  # (the common one)
            checked = _checked("amount", _digits, amount, found)
            if checked is not None and checked <= 0:
                found.append(FieldProblem("amount", "must be greater than zero"))
        # Times already in UTC and range are kept as they are; any other (a parsed "Z" has
        # pydantic-core's own zone) is converted, or its problem added.
        if start.tzinfo is not UTC or not EARLIEST <= start <= LATEST:
            start = _utc_field(fields, "starts_at", found)
        if end is not None and (end.tzinfo is not UTC or not EARLIEST <= end <= LATEST):
            end = _utc_field(fields, "ends_before", found)
        if end is not None and start is not None and end <= start:
            found.append(FieldProblem("ends_before", "must be after starts_at"))
        if found:
            raise InvalidGrantError(found)
        return self


class Specifier(NeutralModel):
    """A usage filter: usage qualifies if it matches every part given here."""

    product_id: str | None = None
    product_tags: tuple[NonEmpty, ...] = ()
    pricing_group_values: dict[str, str] = Field(default_factory=dict)
    presentation_group_values: dict[str, str] = Field(default_factory=dict)


class Scope(NeutralModel):
    """What usage the credits apply to. The empty scope means all usage.

    - ``product_ids``: specific products, **in order** (the order credits apply to line items).
    - ``product_tags``: products carrying any of these tags.
    - ``price_ids``: specific prices.
    - ``metered_prices_only``: every metered price, and nothing else.
    - ``contract_ids``: only usage under these contracts.
    - ``specifiers``: usage matching any one of these filters.

    Rules: ``price_ids`` excludes ``metered_prices_only``; ``specifiers`` exclude ``product_ids``
    and ``product_tags``.
    """

    product_ids: tuple[NonEmpty, ...] = ()
    product_tags: tuple[NonEmpty, ...] = ()
    price_ids: tuple[NonEmpty, ...] = ()
    metered_prices_only: bool = False
    contract_ids: tuple[NonEmpty, ...] = ()
    specifiers: tuple[Specifier, ...] = ()

    @model_validator(mode="after")
    def _exclusive(self) -> Self:
        if self.price_ids and self.metered_prices_only:
            raise ValueError("price_ids and metered_prices_only exclude each other")
        if self.specifiers and (self.product_ids or self.product_tags):
            raise ValueError("specifiers exclude product_ids and product_tags")
        return self

    @property
    def is_all_usage(self) -> bool:
        return self is _ALL_USAGE or not (
            self.product_ids or self.product_tags or self.price_ids or self.metered_prices_only
            or self.contract_ids or self.specifiers)

    def kinds(self) -> frozenset[str]:
        """The scope kinds in use, named as in ``Capabilities.scope_kinds``."""
        used = {
            name
            for name in ("product_ids", "product_tags", "price_ids", "contract_ids", "specifiers")
            if getattr(self, name)
        }
        if self.metered_prices_only:
            used.add("metered_prices_only")
        return frozenset(used)


_ALL_USAGE = Scope()
"""The empty scope (frozen, so one instance serves as every grant's default)."""


class Adjustment(NeutralModel):
    """A change a provider made to what was asked, reported rather than hidden.

    For example a start time floored to the hour, or "all usage" narrowed to metered prices.
    """

    field: str
    requested: str | None
    stored: str | None
    reason: str


MIGRATED_KEY = "migrated_from_key"
"""Metadata key a migration writes on a target grant created under the application's own
idempotency key: a later create with that key is a replay of the migrated grant, whatever
amount the migration moved (see ``CreditGrant.took_over_key``)."""

_READ_BACK = frozenset({"id", "provider", "status", "balance", "created_at", "raw", "adjustments",
                        "replayed"})
_NOT_COMPARED = frozenset({"raw", "adjustments", "replayed"})
_CLEARED: dict[str, Any] = {"id": None, "provider": None, "status": None, "balance": None,
                            "created_at": None, "raw": None, "adjustments": (), "replayed": None}
"""The read-back fields at their defaults (``as_new``)."""
assert _CLEARED.keys() == _READ_BACK
_AS_NEW_SET = frozenset({*_CLEARED, "schedule"})
"""The fields ``as_new`` sets (as ``model_copy(update=...)`` marks them set)."""
_set = object.__setattr__
_new_grant = object.__new__
"""``CreditGrant.__new__`` (pydantic's models define none of their own)."""


class CreditGrant(NeutralModel):
    """A grant of prepaid credits to one customer, in no vendor's shape.

    The common case is one window: ``amount`` usable from ``effective_at`` (``None``: from
    creation) until ``expires_at`` (``None``: never). A grant whose credits arrive in several
    access windows lists them in ``schedule``; then ``amount`` is their sum and the window is
    the span of the segments.

    ``priority`` is an exact number, lower consumed first; ``None`` means the provider's default.
    ``idempotency_key`` (1-128 characters) makes a create safe to repeat: the same key never
    yields two grants.

    The fields from ``id`` on are filled when a grant is read back from a provider. ``balance``
    is what is left to use, now or in windows still to come (consumed, expired and voided
    credits count zero). ``raw`` holds the vendor payload and, with ``adjustments`` and
    ``replayed``, takes no part in equality.
    """

    customer_id: NonEmpty
    amount: Money
    name: str | None = None
    reason: str | None = None
    category: Category | None = None
    category_label: str | None = None
    paid_amount: Money | None = None
    effective_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    schedule: tuple[Segment, ...] | None = None
    priority: _Number | None = None
    scope: Scope = _ALL_USAGE  # frozen, so hashable: pydantic shares it, with no call
    metadata: dict[str, str] = Field(default_factory=dict)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """Makes creates safe to repeat. Without one, each call is a new grant: a retry by the
    caller (not by the library, which keeps its key across its own retries) duplicates it."""

    id: str | None = None
    provider: str | None = None
    status: GrantStatus | None = None
    balance: Money | None = None
    created_at: AwareDatetime | None = None
    raw: RawPayload | None = Field(default=None, repr=False)
    adjustments: tuple[Adjustment, ...] = ()
    replayed: bool | None = None
    """On a create's result: True when the vendor answered with a grant that already existed
    (an idempotency key replayed, found by a lookup), False when it made a new one; None when
    not known or not a create. Takes no part in equality."""

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any
    ) -> Self:
        """As pydantic's, but JSON numbers are read exactly (see ``exact_json``)."""
        return cls.model_validate(exact_json(json_data), *args, **kwargs)

    @model_validator(mode="after")
    def _rules(self) -> Self:
        """Every rule of the grant, in one call once pydantic's core has validated the fields
        (types, text, nested models): one Python call instead of one per rule and field, which
        was most of what validation cost beyond a plain model (issue 17). Every problem found is
        reported at once, under its field's name.

        With a schedule, the window defaults to the span of its segments (``effective_at``
        when not given or None, ``expires_at`` when not given), and must equal it."""
        fields = self.__dict__
        found: list[FieldProblem] = []
        if fields["customer_id"].isspace():  # (not empty: the core checked min_length=1)
            found.append(FieldProblem("customer_id", "must not be blank"))
        key = fields["idempotency_key"]
        if key is not None and key.isspace():  # ``not key.strip()``, without a copy
            found.append(FieldProblem("idempotency_key", "must not be blank"))
        amount: Money = fields["amount"]
        if amount.amount <= 0:
            found.append(FieldProblem("amount", "must be greater than zero"))
        paid = fields["paid_amount"]
        if paid is not None and paid.amount < 0:
            found.append(FieldProblem("paid_amount", "must not be negative"))
        priority = fields["priority"]
        if priority is not None:
            text = str(priority)
            if len(text) > MAX_DIGITS or "E" in text:  # else in bounds (see _priority_bounds)
                _checked("priority", _priority_bounds, priority, found)
        before_times = len(found)
        effective, expires = fields["effective_at"], fields["expires_at"]
        if effective is not None and (effective.tzinfo is not UTC
                                      or not EARLIEST <= effective <= LATEST):
            effective = _utc_field(fields, "effective_at", found)
        if expires is not None and (expires.tzinfo is not UTC
                                    or not EARLIEST <= expires <= LATEST):
            expires = _utc_field(fields, "expires_at", found)
        if fields["created_at"] is not None:
            _utc_field(fields, "created_at", found)
        times_read = len(found) == before_times
        schedule = fields["schedule"]
        if schedule:
            if effective is None and fields["effective_at"] is None:
                effective = fields["effective_at"] = schedule[0].starts_at
                self.__pydantic_fields_set__.add("effective_at")
            if "expires_at" not in self.__pydantic_fields_set__:
                expires = fields["expires_at"] = schedule[-1].ends_before
                self.__pydantic_fields_set__.add("expires_at")
        if expires is not None and effective is not None and expires <= effective:
            found.append(FieldProblem("expires_at", "must be after effective_at"))
        if schedule is not None and times_read:  # compared only with times in range
            problem = _schedule_problem(schedule, amount.amount, fields["effective_at"],
                                        fields["expires_at"])
            if problem is not None:
                found.append(FieldProblem("schedule", problem))
        balance = fields["balance"]
        if balance is not None and (balance.currency != amount.currency or (
                balance.currency is None and balance.unit_key != amount.unit_key)):
            found.append(FieldProblem("", "balance must be in the grant's unit"))
        if found:
            raise InvalidGrantError(found)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CreditGrant):
            return NotImplemented
        return self.comparable() == other.comparable()

    __hash__ = None  # type: ignore[assignment]

    def comparable(self) -> dict[str, Any]:
        """The fields that take part in equality (all but ``raw``, ``adjustments``, ``replayed``)."""
        return {k: v for k, v in self.__dict__.items() if k not in _NOT_COMPARED}

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The access windows: the schedule, or the single window as one segment."""
        if self.schedule is not None:
            return self.schedule
        start = self.effective_at or self.created_at
        if start is None:
            raise InvalidGrantError([FieldProblem(
                "effective_at", "a grant without effective_at has no window until it is created")])
        return (Segment(amount=self.amount.amount, starts_at=start, ends_before=self.expires_at),)

    @staticmethod
    def read_back_fields() -> frozenset[str]:
        """The fields only a provider fills in (``id``, ``status``, ``balance``, …)."""
        return _READ_BACK

    def took_over_key(self, key: str | None) -> bool:
        """Whether this is a migrated grant that took over the application's key ``key``."""
        return key is not None and self.metadata.get(MIGRATED_KEY) == key

    def is_read_back(self) -> bool:
        """Whether any read-back field is set (``id``, ``status``, ``raw``, ``adjustments``…)."""
        fields = self.__dict__  # every one of _READ_BACK, without a loop (bulk import asks)
        return (fields["id"] is not None or fields["provider"] is not None
                or fields["status"] is not None or fields["balance"] is not None
                or fields["created_at"] is not None or fields["raw"] is not None
                or fields["adjustments"] != () or fields["replayed"] is not None)

    def as_new(self, **changes: Any) -> CreditGrant:
        """A copy without the read-back fields (and without vendor segment ids), validated,
        ready to create on this or another provider.

        Without ``changes`` the copy is valid by construction (no rule of the model ties a
        request field to a read-back one but the balance's unit, and the balance goes), so it is
        made without validating again; with them, the grant's fields (nested models as they are,
        already valid) and the changes are validated together."""
        schedule = self.schedule
        if schedule is not None and any(segment.id is not None for segment in schedule):
            schedule = tuple(segment.model_copy(update={"id": None}) for segment in schedule)
        if not changes:
            # pydantic's model_copy(update=...), without its generic steps (three copy.copy
            # calls, the extra="allow" branch): the same instance state, a third of the time.
            copied = _new_grant(CreditGrant) if type(self) is CreditGrant \
                else type(self).__new__(type(self))
            fields = self.__dict__.copy()
            fields.update(_CLEARED)
            fields["schedule"] = schedule
            _set(copied, "__dict__", fields)
            _set(copied, "__pydantic_extra__", None)  # extra="forbid": never any extra
            _set(copied, "__pydantic_fields_set__", self.__pydantic_fields_set__ | _AS_NEW_SET)
            _set(copied, "__pydantic_private__", None)  # no private attributes
            return copied
        data = {name: value for name, value in self.__dict__.items() if name not in _READ_BACK}
        data["schedule"] = schedule
        data.update(changes)
        return CreditGrant.model_validate(data)

    def request_fields(self) -> dict[str, Any]:
        """The fields a caller asks for, as JSON-ready data (no read-back fields)."""
        return self.model_dump(mode="json", exclude=set(_READ_BACK))

    def status_at(self, now: datetime) -> GrantStatus:
        """The status this grant's window implies at ``now`` (ignores voiding)."""
        if self.effective_at is not None and now < self.effective_at:
            return GrantStatus.SCHEDULED
        if self.expires_at is not None and now >= self.expires_at:
            return GrantStatus.EXPIRED
        return GrantStatus.ACTIVE


def _checked(name: str, check: Callable[[Decimal], Decimal], value: Decimal,
             found: list[FieldProblem]) -> Decimal | None:
    """``check(value)``, or None with the problem added under ``name``."""
    try:
        return check(value)
    except ValueError as error:
        found.append(FieldProblem(name, str(error)))
        return None


def _utc_field(fields: dict[str, Any], name: str, found: list[FieldProblem]) -> datetime | None:
    """The field ``name`` (an aware time, or None) normalized to UTC in place; None with the
    problem added when it is out of range (or has no UTC offset)."""
    value = fields[name]
    if value is None:
        return None
    utc = _utc_or_none(value)
    if utc is None:
        found.append(FieldProblem(name, _time_problem(value)))
    elif utc is not value:
        fields[name] = utc
    return utc


def _schedule_problem(schedule: tuple[Segment, ...], amount: Decimal,
                      effective: datetime | None, expires: datetime | None) -> str | None:
    """What is wrong with a grant's schedule against its amount and window, if anything."""
    if not schedule:
        return "give at least one segment, or None for a single window"
    for earlier, later in itertools.pairwise(schedule):
        if later.starts_at < earlier.starts_at:
            return "segments must be ordered by starts_at"
        if earlier.ends_before is None:
            return "only the last segment may have no ends_before"
    add = shared_exact().add
    total = Decimal(0)
    for segment in schedule:  # exact_sum's additions in its context, without entering it
        total = add(total, segment.amount)
    if total != amount:
        return f"segment amounts sum to {total}, not the grant amount {amount}"
    if effective != schedule[0].starts_at:
        return "effective_at must equal the first segment's starts_at"
    if expires != schedule[-1].ends_before:
        return "expires_at must equal the last segment's ends_before"
    return None


READ_BACK_FIELDS = _READ_BACK
