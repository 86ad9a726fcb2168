"""Hypothesis strategies for neutral grants, optionally limited to what a provider can hold.

``grants(capabilities)`` draws valid ``CreditGrant`` objects that ``capabilities.check`` accepts:
they are *built* to fit (currency, amount precision, priority domain, scope kinds, schedule
segments, time resolution, name length, metadata limits), not filtered after the fact. Without
capabilities they range over everything the neutral model accepts::

    from hypothesis import given
    from billing_credits.testing import strategies as bcst

    @given(bcst.grants(MyProvider.capabilities, time_step=timedelta(hours=1)))
    def test_round_trip(grant): ...

The building blocks are public too: ``money``, ``scopes``, ``priorities``, ``aware_datetimes``.
Datetimes come in assorted UTC offsets (the model normalises them to UTC), always aware.

Needs ``hypothesis`` (``billing-credits[testing]``).
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import billing_credits as bc

__all__ = [
    "DEFAULT_CURRENCIES",
    "IDEMPOTENCY_KEY_ALPHABET",
    "aware_datetimes",
    "grants",
    "money",
    "priorities",
    "scopes",
]

DEFAULT_CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP", "JPY", "KWD", "BHD", "CHF")
"""Currencies drawn when a provider takes any: minor-unit exponents 2, 0 and 3."""

IDEMPOTENCY_KEY_ALPHABET = string.ascii_letters + string.digits + "_-:."
"""Characters of generated idempotency keys (1-128 of them): safe at every vendor."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ANYTHING = bc.Capabilities(custom_units=True, scope_kinds=bc.ALL_SCOPE_KINDS, max_segments=None,
                            metadata=bc.MetadataLimits(), operations=bc.ALL_OPERATIONS)
"""What the strategies draw from when given no capabilities: every neutral field."""
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2090, 1, 1, tzinfo=UTC)
"""Generated times stay well before the far-future "never" sentinels vendors use (2099)."""
_AROUND_NOW = timedelta(days=400)
_MAX_SPAN = timedelta(days=3 * 365)
_MAX_UNITS = 10**12
"""Amounts are at most 10^12 units of their last digit: exact as doubles (< 10^15)."""
_MAX_SCALE = 6
_LABELS = ("trial", "promotional", "paid", "goodwill")
_UNIT_NAMES = ("cloud consumption units", "credits", "tokens", "compute hours")
_COMMON_OFFSETS = (0, 60, 120, 330, 345, 540, 600, 630, -180, -210, -300, -420, -480, 840, -720)
_ID_ALPHABET = string.ascii_letters + string.digits + "_"
_KEY_ALPHABET = string.ascii_letters + string.digits + "_-."


def _timezones() -> st.SearchStrategy[tzinfo]:
    """UTC, common offsets (including half and quarter hours), and any whole-minute offset."""
    minutes = st.one_of(
        st.sampled_from(_COMMON_OFFSETS),
        st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
    )
    return st.one_of(
        st.just(UTC),
        minutes.map(lambda m: timezone(timedelta(minutes=m))),
    )


def aware_datetimes(
    *,
    min_value: datetime = _EARLIEST,
    max_value: datetime = _LATEST,
    time_step: timedelta | None = None,
    timezones: st.SearchStrategy[tzinfo] | None = None,
) -> st.SearchStrategy[datetime]:
    """Timezone-aware datetimes in ``[min_value, max_value]``, whole multiples of ``time_step``
    since the Unix epoch (default: one microsecond), in assorted UTC offsets.

    ``min_value``/``max_value`` must be aware. The instant is what is aligned: the offset a
    datetime is shown in does not change it.
    """
    step = _step(time_step)
    low, high = _aligned_range(_aware(min_value, "min_value"), _aware(max_value, "max_value"), step)
    zones = timezones if timezones is not None else _timezones()
    return st.builds(
        lambda k, zone: (_EPOCH + k * step).astimezone(zone),
        st.integers(min_value=low, max_value=high),
        zones,
    )


def priorities(domain: bc.PriorityDomain) -> st.SearchStrategy[Decimal]:
    """Priorities ``domain`` holds (``domain.contains`` is true for every one).

    ``integer``: whole numbers within its bounds; ``float64``: the exact decimal of any finite
    double within its bounds (``Decimal(repr(f))``); ``decimal``: those, and arbitrary exact
    decimals.
    """
    minimum, maximum = domain.minimum, domain.maximum
    if domain.kind == "integer":
        low = int(minimum.to_integral_value(rounding=ROUND_CEILING)) if minimum is not None \
            else -(10**9)
        high = int(maximum.to_integral_value(rounding=ROUND_FLOOR)) if maximum is not None \
            else 10**9
        if low > high:
            raise InvalidArgument(f"the priority domain {domain.describe()} holds no integer")
        return st.integers(min_value=low, max_value=high).map(Decimal)
    floats = st.floats(
        min_value=float(minimum) if minimum is not None else None,
        max_value=float(maximum) if maximum is not None else None,
        allow_nan=False,
        allow_infinity=False,
    ).map(lambda f: Decimal(repr(f)))
    if domain.kind == "float64":
        return floats.filter(domain.contains)
    decimals = st.decimals(
        min_value=minimum, max_value=maximum, allow_nan=False, allow_infinity=False, places=8
    ).filter(lambda d: abs(d) < 10**15)
    integers = st.integers(min_value=-(10**6), max_value=10**6).map(Decimal)
    return st.one_of(integers, floats, decimals).filter(domain.contains)


def money(
    capabilities: bc.Capabilities | None = None, *, allow_zero: bool = False
) -> st.SearchStrategy[bc.Money]:
    """Exact ``Money`` that ``capabilities`` accepts as an amount (currency or custom unit,
    whole minor units or exact doubles where required). Positive unless ``allow_zero``."""
    caps = capabilities or _ANYTHING
    return st.builds(
        lambda drawn: drawn.money(),
        _amounts(caps, min_units=0 if allow_zero else 1),
    )


def scopes(capabilities: bc.Capabilities | None = None) -> st.SearchStrategy[bc.Scope]:
    """Valid ``Scope`` objects using only ``capabilities.scope_kinds`` (all kinds without
    capabilities), respecting the exclusivity rules and ``max_price_ids``. Includes the empty
    scope (all usage)."""
    caps = capabilities or _ANYTHING
    return _scopes(caps)


def grants(
    capabilities: bc.Capabilities | None = None,
    *,
    read_back: bool = False,
    time_step: timedelta | None = None,
    now: datetime | None = None,
    customer_ids: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[bc.CreditGrant]:
    """Valid neutral grants; with ``capabilities``, only grants ``capabilities.check`` accepts.

    - ``time_step``: every time is a whole multiple of it since the epoch (default:
      ``capabilities.time_resolution``, else one microsecond); it must be a multiple of the
      capabilities' resolution. Providers that floor to the hour pass ``timedelta(hours=1)``.
    - ``now``: draw times within about a year of this instant (default: anywhere in
      2000-2090); with ``read_back``, ``status`` is then what the window implies at ``now``
      (or voided) and ``created_at`` is not after it.
    - ``read_back``: also fill ``id``, ``provider``, ``status``, ``balance`` (same unit, between
      zero and the amount), ``created_at`` and segment ids, as a provider returns them.
    - ``customer_ids``: where customer ids come from (default: short ``cus_…`` ids).
    """
    caps = capabilities or _ANYTHING
    step = _step(time_step if time_step is not None else caps.time_resolution)
    if step % _step(caps.time_resolution):
        raise InvalidArgument(
            f"time_step {step} is not a multiple of the time resolution {caps.time_resolution}"
        )
    if now is not None:
        now = _aware(now, "now")
        low, high = now - _AROUND_NOW, now + _AROUND_NOW
    else:
        low, high = _EARLIEST, _LATEST - 2 * _MAX_SPAN
    customers = customer_ids if customer_ids is not None else _ids("cus_")
    return _grants(
        caps, read_back=read_back, step=step, low=low, high=high, now=now, customers=customers
    )


# -- internals -------------------------------------------------------------------------------


def _step(step: timedelta | None) -> timedelta:
    if step is None:
        return timedelta(microseconds=1)
    if step <= timedelta(0):
        raise InvalidArgument(f"time_step must be positive, not {step}")
    return step


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidArgument(f"{name} must be timezone-aware, not {moment!r}")
    return moment


def _aligned_range(low: datetime, high: datetime, step: timedelta) -> tuple[int, int]:
    """The step counts since the epoch of the first and last aligned instants in range."""
    first = -((_EPOCH - low) // step)  # ceiling division
    last = (high - _EPOCH) // step
    if first > last:
        raise InvalidArgument(f"no multiple of {step} between {low} and {high}")
    return first, last


@dataclass(frozen=True)
class _Amount:
    """An amount as ``units`` of ``10**-scale`` in one unit: split into segments exactly."""

    currency: str | None
    unit: bc.CreditUnit | None
    units: int
    scale: int

    def decimal(self, units: int | None = None) -> Decimal:
        return Decimal(self.units if units is None else units).scaleb(-self.scale, bc.exact_context())

    def money(self, units: int | None = None) -> bc.Money:
        return bc.Money(amount=self.decimal(units), currency=self.currency, unit=self.unit)


def _currencies(caps: bc.Capabilities) -> list[str]:
    codes = sorted(caps.currencies) if caps.currencies is not None else list(DEFAULT_CURRENCIES)
    codes = [c for c in codes if bc.is_iso_currency(c)]
    if caps.minor_units_only:
        codes = [c for c in codes if bc.currency_exponent(c) is not None]
    return codes


def _custom_units() -> st.SearchStrategy[bc.CreditUnit]:
    return st.builds(
        lambda uid, name: bc.CreditUnit(id=str(uid), name=name),
        st.uuids(),
        st.none() | st.sampled_from(_UNIT_NAMES),
    )


@st.composite
def _amounts(
    draw: st.DrawFn, caps: bc.Capabilities, min_units: int = 1
) -> _Amount:
    """A unit the capabilities take and an amount of at least ``min_units`` in it."""
    codes = _currencies(caps)
    choices: list[st.SearchStrategy[tuple[str | None, bc.CreditUnit | None]]] = []
    if codes:
        choices.append(st.sampled_from(codes).map(lambda c: (c, None)))
    if caps.custom_units:
        choices.append(_custom_units().map(lambda u: (None, u)))
    if not choices:
        raise InvalidArgument("these capabilities accept no currency and no custom unit")
    currency, unit = draw(st.one_of(choices))
    exponent = bc.currency_exponent(currency) if currency is not None else None
    if currency is not None and caps.minor_units_only:
        assert exponent is not None
        scale = exponent
    else:
        scale = draw(st.integers(min_value=0, max_value=_MAX_SCALE))
    units = draw(st.integers(min_value=min_units, max_value=_MAX_UNITS))
    return _Amount(currency, unit, units, scale)


def _split(draw: st.DrawFn, total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` positive integers."""
    if parts == 1:
        return [total]
    cuts = sorted(draw(st.lists(
        st.integers(min_value=1, max_value=total - 1),
        min_size=parts - 1, max_size=parts - 1, unique=True,
    )))
    bounds = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(bounds)]


def _ids(prefix: str, max_size: int = 16) -> st.SearchStrategy[str]:
    return st.text(_ID_ALPHABET, min_size=1, max_size=max_size).map(lambda s: prefix + s)


def _words(max_size: int) -> st.SearchStrategy[str]:
    """Printable text of 1..``max_size`` characters (any script), no outer whitespace."""
    if max_size < 1:
        return st.nothing()
    chars = st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"))
    return (
        st.text(chars, min_size=1, max_size=min(max_size, 40))
        .map(str.strip)
        .filter(bool)
    )


def _unique_ids(prefix: str, max_size: int) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(_ids(prefix), min_size=1, max_size=max_size, unique=True).map(tuple)


@st.composite
def _specifiers(draw: st.DrawFn) -> bc.Specifier:
    """A specifier that says something (at least one part set)."""
    groups = st.dictionaries(_ids("", 12), _words(20), min_size=1, max_size=2)
    parts = draw(st.sets(
        st.sampled_from(("product_id", "product_tags", "pricing_group_values",
                         "presentation_group_values")),
        min_size=1,
    ))
    fields: dict[str, Any] = {}
    if "product_id" in parts:
        fields["product_id"] = draw(_ids("prod_"))
    if "product_tags" in parts:
        fields["product_tags"] = draw(_unique_ids("", 3))
    if "pricing_group_values" in parts:
        fields["pricing_group_values"] = draw(groups)
    if "presentation_group_values" in parts:
        fields["presentation_group_values"] = draw(groups)
    return bc.Specifier(**fields)


@st.composite
def _scopes(draw: st.DrawFn, caps: bc.Capabilities) -> bc.Scope:
    kinds = set(caps.scope_kinds)
    if caps.max_price_ids is not None and caps.max_price_ids < 1:
        kinds.discard("price_ids")
    chosen = draw(st.sets(st.sampled_from(sorted(kinds)))) if kinds else set()
    if {"price_ids", "metered_prices_only"} <= chosen:
        chosen.discard(draw(st.sampled_from(("price_ids", "metered_prices_only"))))
    if "specifiers" in chosen and chosen & {"product_ids", "product_tags"}:
        if draw(st.booleans()):
            chosen.discard("specifiers")
        else:
            chosen -= {"product_ids", "product_tags"}
    fields: dict[str, Any] = {}
    if "product_ids" in chosen:
        fields["product_ids"] = draw(_unique_ids("prod_", 4))
    if "product_tags" in chosen:
        fields["product_tags"] = draw(_unique_ids("", 3))
    if "price_ids" in chosen:
        most = min(caps.max_price_ids, 20) if caps.max_price_ids is not None else 5
        fields["price_ids"] = draw(_unique_ids("price_", most))
    if "metered_prices_only" in chosen:
        fields["metered_prices_only"] = True
    if "contract_ids" in chosen:
        fields["contract_ids"] = draw(_unique_ids("contract_", 2))
    if "specifiers" in chosen:
        fields["specifiers"] = tuple(draw(st.lists(_specifiers(), min_size=1, max_size=3)))
    return bc.Scope(**fields)


def _metadata(caps: bc.Capabilities) -> st.SearchStrategy[dict[str, str]]:
    limits = caps.metadata
    room = 5
    if limits.max_keys is not None:
        room = min(room, max(limits.max_keys - len(caps.fields_in_metadata), 0))
    if room == 0:
        return st.just({})
    key_size = min(limits.max_key_length or 40, 40)
    value_size = limits.max_value_length if limits.max_value_length is not None else 60
    alphabet = "".join(c for c in _KEY_ALPHABET if c not in limits.forbidden_key_chars)
    keys = st.text(alphabet, min_size=1, max_size=key_size)
    if limits.reserved_prefix:
        prefix = limits.reserved_prefix
        keys = keys.filter(lambda k: not k.startswith(prefix))
    return st.dictionaries(keys, _words(value_size), max_size=room)


def _schedule_times(
    draw: st.DrawFn, count: int, start: datetime, step: timedelta
) -> list[tuple[datetime, datetime | None]]:
    """``count`` ordered, non-overlapping windows from ``start``; the last may be open."""
    most = max(_MAX_SPAN // step // count, 1)
    windows: list[tuple[datetime, datetime | None]] = []
    begin = start
    for i in range(count):
        end = begin + draw(st.integers(min_value=1, max_value=most)) * step
        if i == count - 1 and draw(st.booleans()):
            windows.append((begin, None))
            break
        windows.append((begin, end))
        begin = end + draw(st.integers(min_value=0, max_value=max(most // 4, 0))) * step
    return windows


def _in_some_zone(draw: st.DrawFn, moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(draw(_timezones()))


@st.composite
def _grants(
    draw: st.DrawFn,
    caps: bc.Capabilities,
    *,
    read_back: bool,
    step: timedelta,
    low: datetime,
    high: datetime,
    now: datetime | None,
    customers: st.SearchStrategy[str],
) -> bc.CreditGrant:
    most_segments = min(caps.max_segments or 4, 4)
    segments = draw(st.integers(min_value=1, max_value=most_segments))
    scheduled = draw(st.booleans())
    amount = draw(_amounts(caps, min_units=segments if scheduled else 1))
    start = draw(
        aware_datetimes(min_value=low, max_value=high, time_step=step, timezones=st.just(UTC))
    )

    fields: dict[str, Any] = {
        "customer_id": draw(customers),
        "amount": amount.money(),
    }
    schedule: list[bc.Segment] = []
    if scheduled:
        windows = _schedule_times(draw, segments, start, step)
        parts = _split(draw, amount.units, len(windows))
        schedule = [
            bc.Segment(
                amount=amount.decimal(units),
                starts_at=_in_some_zone(draw, begin),
                ends_before=_in_some_zone(draw, end),
                id=draw(_ids("seg_")) if read_back and draw(st.booleans()) else None,
            )
            for (begin, end), units in zip(windows, parts, strict=True)
        ]
        fields["schedule"] = tuple(schedule)
        fields["effective_at"] = _in_some_zone(draw, windows[0][0])
        fields["expires_at"] = _in_some_zone(draw, windows[-1][1])
    else:
        if draw(st.booleans()):
            fields["effective_at"] = _in_some_zone(draw, start)
        if draw(st.booleans()):
            length = draw(st.integers(min_value=1, max_value=max(_MAX_SPAN // step, 1)))
            fields["expires_at"] = _in_some_zone(draw, start + length * step)

    optional: dict[str, st.SearchStrategy[Any]] = {
        "name": _words(caps.name_max_length if caps.name_max_length is not None else 100),
        "reason": _words(200),
        "category": st.sampled_from(bc.Category),
        "category_label": st.sampled_from(_LABELS) | _words(30),
        "paid_amount": money(caps, allow_zero=True),
        "priority": priorities(caps.priority),
        "idempotency_key": st.text(IDEMPOTENCY_KEY_ALPHABET, min_size=1, max_size=128),
    }
    for name, values in optional.items():
        if draw(st.booleans()):
            fields[name] = draw(values)
    fields["scope"] = draw(_scopes(caps))
    fields["metadata"] = draw(_metadata(caps))

    if read_back:
        fields.update(_read_back_fields(draw, amount, fields, step=step, now=now))

    grant = bc.CreditGrant(**fields)
    problems = caps.check(grant)
    assert not problems, f"strategies.grants built a grant its capabilities refuse: {problems}"
    return grant


def _read_back_fields(
    draw: st.DrawFn,
    amount: _Amount,
    fields: dict[str, Any],
    *,
    step: timedelta,
    now: datetime | None,
) -> dict[str, Any]:
    total = fields["amount"]
    units = int(total.amount.scaleb(amount.scale, bc.exact_context()))
    if now is not None:
        created = draw(aware_datetimes(min_value=now - _AROUND_NOW, max_value=now, time_step=step))
        window = bc.CreditGrant(customer_id="x", amount=total,
                                effective_at=fields.get("effective_at"),
                                expires_at=fields.get("expires_at"))
        status = draw(st.sampled_from((window.status_at(now), bc.GrantStatus.VOIDED)))
    else:
        created = draw(aware_datetimes(time_step=step))
        status = draw(st.sampled_from(bc.GrantStatus))
    return {
        "id": draw(_ids("grant_", 24)),
        "provider": draw(st.sampled_from(("local", "test", "fake"))),
        "status": status,
        "balance": amount.money(draw(st.integers(min_value=0, max_value=units))),
        "created_at": created,
    }
