"""Numbers and times as they travel on Metronome's wire (pure; no I/O).

Split from ``_translate`` (by concept): exact JSON numbers, vendor numbers read as exact
``Decimal``, RFC 3339 times with millisecond precision, and the UTC-hour alignment policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import billing_credits as bc

__all__ = [
    "Alignment",
    "align",
    "ceil_hour",
    "exact_total",
    "floor_hour",
    "format_time",
    "json_number",
    "parse_time",
    "time_problem",
    "to_decimal",
]

Alignment = Literal["hour", "strict", "none"]
"""Time policy: ``hour`` floors starts and ceils ends to the UTC hour and reports each change in
``adjustments``; ``strict`` refuses times off the hour; ``none`` sends times as given
(millisecond precision)."""

_HOUR = timedelta(hours=1)
_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

def json_number(value: Decimal) -> int | float:
    """The JSON number for ``value``, saying exactly that decimal; ``ValueError`` otherwise."""
    if not bc.float64_exact(value):
        raise ValueError(f"{value} is not exactly representable as a JSON double")
    if value == value.to_integral_value() and abs(value) < 2**53:
        return int(value)
    return float(value)


def to_decimal(value: Any) -> Decimal:
    """A vendor number (int, Decimal from ``parse_float=Decimal``, or float) as an exact Decimal."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        return Decimal(value)
    raise TypeError(f"not a number: {value!r}")


def format_time(moment: datetime) -> str:
    """UTC RFC 3339 with milliseconds and ``Z``; naive datetimes are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime refused")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp (``Z`` or offset) as an aware UTC datetime."""
    try:  # Python 3.11 reads a trailing "Z" itself (ten times faster than replacing it)
        moment = datetime.fromisoformat(text)
    except ValueError:  # a lowercase "z", or not a time at all
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    zone = moment.tzinfo
    if zone is UTC:  # a trailing "Z" (Python 3.11 reads it as UTC): already as wanted
        return moment
    if zone is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return moment.astimezone(UTC)


def floor_hour(moment: datetime) -> datetime:
    return moment - ((moment - _EPOCH) % _HOUR)


def ceil_hour(moment: datetime) -> datetime:
    rest = (moment - _EPOCH) % _HOUR
    return moment if not rest else moment + (_HOUR - rest)


def time_problem(name: str, moment: datetime | None, alignment: Alignment) -> bc.FieldProblem | None:
    if moment is None:
        return None
    if alignment == "strict" and (moment - _EPOCH) % _HOUR:
        return bc.FieldProblem(name, f"{moment.isoformat()} is not on an hour boundary "
                               "(time alignment 'strict')")
    if alignment == "none" and (moment - _EPOCH) % _MS:
        return bc.FieldProblem(name, f"{moment.isoformat()} is finer than Metronome's "
                               "millisecond resolution")
    return None


def align(
    name: str, moment: datetime, *, end: bool, alignment: Alignment, adjustments: list[bc.Adjustment]
) -> datetime:
    if alignment != "hour":
        return moment
    aligned = ceil_hour(moment) if end else floor_hour(moment)
    if aligned != moment:
        adjustments.append(bc.Adjustment(
            field=name, requested=format_time(moment), stored=format_time(aligned),
            reason=("end ceiled" if end else "start floored")
            + " to the UTC hour (Metronome aligns credit times to hours; no granted time is lost)",
        ))
    return aligned


def exact_total(values: Iterable[Decimal]) -> Decimal:
    """``bc.exact_sum`` of values already computed: the same additions from ``Decimal(0)``,
    in the same exact context, so the same result (or the same ``Inexact``): the shared one
    (``bc.shared_exact_context``; ``bc.exact_sum`` copies a context and enters it on every
    call, about 3 µs, more than the rest of reading a small item)."""
    add = bc.shared_exact_context().add
    total = Decimal(0)
    for value in values:
        total = add(total, value)
    return total
