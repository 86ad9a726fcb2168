"""Exact amounts: ``Money`` in an ISO 4217 currency or in a vendor's custom credit unit."""

from __future__ import annotations

import decimal
import json
import math
from collections.abc import Iterable
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Self

from pydantic import AfterValidator, Field, model_validator

from ._base import NeutralModel
from ._errors import FieldProblem, InvalidGrantError

__all__ = [
    "MAX_DIGITS",
    "CreditUnit",
    "ExactDecimal",
    "Money",
    "currency_exponent",
    "exact",
    "exact_json",
    "exact_sum",
    "is_iso_currency",
]

MAX_DIGITS = 40
"""Most significant digits an amount may have (18 decimals of a custom unit fit easily)."""

_PRECISION = 4 * MAX_DIGITS


def exact() -> decimal.Context:
    """A decimal context in which sums and quantizing of amounts are exact or raise.

    The default context rounds to 28 digits silently; this one has room for any sum of
    amounts, and traps ``Inexact`` so that a rounding can never pass unnoticed.
    """
    return _EXACT.copy()


_EXACT = decimal.Context(prec=_PRECISION, traps=[decimal.Inexact, decimal.InvalidOperation,
                                                 decimal.Overflow])
"""The template of ``exact()``: never handed out itself (a context's flags are mutable)."""

_SHARED_EXACT = _EXACT.copy()


def shared_exact() -> decimal.Context:
    """One ``exact()`` context kept for single operations (``ctx.add(a, b)``,
    ``value.scaleb(n, ctx)``, ``value.normalize(ctx)``) on hot paths, where copying a context
    per call costs more than the operation (``bc.shared_exact_context``, the one the core and
    the providers use): never installed as a thread's context (``decimal.localcontext`` takes
    ``exact()``), never given to code that reads its flags (a trap raises for the operation
    that hits it whatever earlier ones left, so sharing it is safe)."""
    return _SHARED_EXACT


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of ``values`` (never rounded to the default 28 digits).

    ``values`` is consumed inside the exact context, so the arithmetic of a generator passed
    here (``a - b for …``) is exact too."""
    with decimal.localcontext(exact()):
        return sum(values, Decimal(0))


def _digits(value: Decimal) -> Decimal:
    """At most ``MAX_DIGITS`` significant digits, below 10^MAX_DIGITS, and no finer than
    10^-MAX_DIGITS: every amount is then a whole number of 10^-40 below 10^40 (80 digits), so
    any sum of them is exact in the ``exact()`` context (160 digits)."""
    text = str(value)
    if len(text) <= MAX_DIGITS and "E" not in text:
        # Positional notation of at most MAX_DIGITS characters: fewer digits than that, below
        # 10^MAX_DIGITS, and fewer decimal places (the common case, without ``as_tuple``).
        return value
    if not math.isfinite(value):
        raise ValueError(BEYOND_DOUBLE)
    parts = value.as_tuple()
    if len(parts.digits) > MAX_DIGITS:
        raise ValueError(f"has more than {MAX_DIGITS} significant digits")
    if value and value.adjusted() >= MAX_DIGITS:
        raise ValueError(f"must be less than 10^{MAX_DIGITS} in size")
    if isinstance(parts.exponent, int) and parts.exponent < -MAX_DIGITS:
        raise ValueError(f"has more than {MAX_DIGITS} decimal places")
    return value


BEYOND_DOUBLE = "Input should be a finite number"
"""Said of a number beyond any double (1E+400), as pydantic says it of NaN and infinities."""


ExactDecimal = Annotated[Decimal, Field(allow_inf_nan=False), AfterValidator(_digits)]
"""A finite ``Decimal`` of at most ``MAX_DIGITS`` digits; floats are taken from their decimal
text, never their binary value, and booleans are refused.

pydantic-core does all three itself, in one pass: it builds the ``Decimal`` of a float from
the float's shortest text (``0.1`` -> ``Decimal("0.1")``, as ``exact_decimal`` does), refuses
a bool (``decimal_type``, worded by ``problems_from``) and, with ``allow_inf_nan=False`` placed
before any Python validator, NaN and infinities. ``tests/test_money.py`` guards each."""


def exact_json(json_data: str | bytes | bytearray) -> Any:
    """Parse JSON taking every fractional number as the ``Decimal`` of its text.

    pydantic's JSON parser reads numbers into doubles first, so ``0.10000000000000000001``
    would silently become ``0.1``. Models holding amounts validate JSON through this instead.
    """
    try:
        return json.loads(json_data, parse_float=Decimal)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError of bytes
        raise InvalidGrantError([FieldProblem("", f"invalid JSON: {error}")]) from None
    except RecursionError:
        raise InvalidGrantError([FieldProblem("", "invalid JSON: nested too deeply")]) from None
    except ArithmeticError:  # decimal.InvalidOperation: an exponent no Decimal holds
        raise InvalidGrantError([FieldProblem("", "invalid JSON: a number out of range")]) \
            from None
    except TypeError as error:
        raise InvalidGrantError([FieldProblem("", f"invalid JSON input: {error}")]) from None


_NOT_MONEY = frozenset({"XXX", "XTS"})


@cache
def _iso_table() -> dict[str, int | None]:
    from iso4217 import Currency

    return {c.code: c.exponent for c in Currency}


def _money_codes() -> dict[str, str]:
    """Every ISO 4217 code usable as money, upper and lower case, to its upper-case form
    (made at first use: ``iso4217`` loads only then)."""
    if not _CODES:
        codes = {code: code for code in _iso_table() if code not in _NOT_MONEY}
        _CODES.update(codes | {code.lower(): code for code in codes})
    return _CODES


_CODES: dict[str, str] = {}


def _currency(value: str) -> tuple[str, str | None]:
    """A currency code not found as given: its upper-case form, and why it is refused."""
    if not is_iso_currency(value):
        return value, f"{value!r} is not an ISO 4217 currency code"
    if value.upper() in _NOT_MONEY:
        return value, f"{value.upper()} is reserved for testing or 'no currency'"
    return value.upper(), None


def is_iso_currency(code: str) -> bool:
    """Whether ``code`` (any case) is an active ISO 4217 currency code."""
    return code.upper() in _iso_table()


def currency_exponent(code: str) -> int | None:
    """ISO 4217 minor-unit exponent (USD 2, JPY 0, KWD 3); None for units without one (XAU)."""
    return _iso_table()[code.upper()]


class CreditUnit(NeutralModel):
    """A vendor's custom credit unit (a Metronome pricing unit such as "cloud consumption units").

    ``id`` is the vendor's identifier for the unit; ``name`` its display name, kept when known.
    """

    id: Annotated[str, Field(min_length=1, max_length=256)]
    name: str | None = None


class Money(NeutralModel):
    """An exact amount in major units of an ISO 4217 currency, or in a custom ``CreditUnit``.

    ``Money("10.00", "USD")`` (or ``Money(amount=Decimal("10.00"), currency="USD")``) is ten
    dollars. Exactly one of
    ``currency`` and ``unit`` is set. Floats are converted from their decimal text, never their
    binary value; NaN and infinities are refused. The sign is checked where the amount is used
    (a grant amount must be positive, a paid amount may be zero).
    """

    amount: Annotated[Decimal, Field(allow_inf_nan=False)]  # an ExactDecimal: see _rules
    currency: str | None = None
    unit: CreditUnit | None = None

    def __init__(self, amount: Decimal | str | int | None = None, currency: str | None = None,
                 /, **fields: Any) -> None:
        """``Money("12.34", "USD")``, or by name: ``Money(amount=..., currency=...)`` /
        ``Money(amount=..., unit=CreditUnit(id=...))``. The amount may be a ``Decimal``, its
        text or an ``int`` (a float is read from its decimal text)."""
        for name, value in (("amount", amount), ("currency", currency)):
            if value is not None:
                if name in fields:
                    raise InvalidGrantError([FieldProblem(name, "given twice (by position and "
                                                                "by name)")], model="Money")
                fields[name] = value
        super().__init__(**fields)

    # Marked as pydantic's own (as ``NeutralModel.__init__`` is): it only maps positions to
    # names, so nested validation (a grant's amounts, segments) may build a Money in the core
    # without calling it; a "custom" __init__ would send every nested Money back through
    # Python (issue 17: that alone put model_validate at 2.4x a plain model).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any
    ) -> Self:
        """As pydantic's, but JSON numbers are read exactly (see ``exact_json``)."""
        return cls.model_validate(exact_json(json_data), *args, **kwargs)

    @model_validator(mode="after")
    def _rules(self) -> Self:
        """The amount's digits, the currency (an ISO 4217 code, stored upper case) and exactly
        one unit: one Python call for the whole amount, after pydantic's core (issue 17)."""
        fields = self.__dict__
        currency = fields["currency"]
        if currency is not None and fields["unit"] is None:  # the common case, in a few steps
            text = str(fields["amount"])
            code = (_CODES or _money_codes()).get(currency)
            if code is not None and len(text) <= MAX_DIGITS and "E" not in text:
                if code != currency:
                    fields["currency"] = code
                return self
        found: list[FieldProblem] = []
        try:
            _digits(fields["amount"])
        except ValueError as error:
            found.append(FieldProblem("amount", str(error)))
        if currency is not None:
            code, problem = _currency(currency)
            if problem is not None:
                found.append(FieldProblem("currency", problem))
            elif code != currency:
                fields["currency"] = code
        if (currency is None) == (fields["unit"] is None):
            found.append(FieldProblem(
                "", "give exactly one of currency (ISO 4217) or unit (custom credit unit)"))
        if found:
            raise InvalidGrantError(found)
        return self

    @property
    def unit_key(self) -> str:
        """A stable key for the unit: the currency code, or ``unit:<id>``."""
        return self.currency if self.currency is not None else f"unit:{self.unit.id}"  # type: ignore[union-attr]

    def same_unit(self, other: Money) -> bool:
        return self.unit_key == other.unit_key

    def with_amount(self, amount: Decimal) -> Money:
        """The same unit with another amount (validated)."""
        return Money(amount=amount, currency=self.currency, unit=self.unit)

    def __str__(self) -> str:
        if self.currency is not None:
            return f"{self.amount:f} {self.currency}"
        assert self.unit is not None
        return f"{self.amount:f} {self.unit.name or self.unit.id}"
