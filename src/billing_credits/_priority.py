"""Priority normalization between providers.

Every provider consumes lower priorities first. What differs is which numbers it can hold: any
decimal (``local``), any IEEE 754 double (a JSON number), or integers within bounds. The
neutral priority is an exact ``Decimal``; ``None`` means "the provider's default".

Three guarantees, each property-tested:

1. A provider's own values round-trip exactly: ``domain.to_vendor(domain.from_vendor(v)) == v``.
2. A value the target cannot hold is an error naming the grant and the value
   (``PriorityNotRepresentableError``); nothing is rounded silently.
3. ``preserve_order`` maps a set of priorities (one customer's) onto a domain so that order and
   ties are kept exactly, reports every value it changed, and fails when the domain has fewer
   distinct values than the set needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from ._errors import FieldProblem, InvalidGrantError, NotRepresentableError

__all__ = [
    "ANY_DECIMAL",
    "FLOAT64",
    "PriorityDomain",
    "PriorityMapping",
    "PriorityNotRepresentableError",
    "float64_exact",
    "preserve_order",
]


class PriorityNotRepresentableError(NotRepresentableError):
    """A priority that the target provider cannot hold, with no policy chosen to map it."""


def float64_exact(value: Decimal) -> bool:
    """Whether ``value`` survives a trip through an IEEE 754 double as the same decimal.

    A JSON number such as ``0.1`` is parsed into the double nearest 0.1 and printed back as
    ``0.1``: it says exactly the decimal meant. ``0.10000000000000000001`` does not.
    """
    if not value.is_finite():
        return False
    as_float = float(value)
    return as_float not in (float("inf"), float("-inf")) and Decimal(repr(as_float)) == value


@dataclass(frozen=True)
class PriorityDomain:
    """The priorities a provider can hold; lower is consumed first in every domain.

    ``kind``: ``decimal`` (any exact number), ``float64`` (what a double carries exactly, see
    ``float64_exact``) or ``integer``. ``minimum``/``maximum`` bound it; ``default`` is what
    the provider applies when none is given, and what it reports for "no priority".
    """

    kind: Literal["decimal", "float64", "integer"]
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    default: Decimal | None = None

    def problem(self, value: Decimal) -> str | None:
        """Why ``value`` cannot be held here, or None when it can."""
        if not value.is_finite():
            return "must be a finite number"
        if self.kind == "integer" and value != value.to_integral_value():
            return "must be a whole number"
        if self.kind == "float64" and not float64_exact(value):
            return "has more digits than a double carries exactly"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}"
        return None

    def contains(self, value: Decimal) -> bool:
        return self.problem(value) is None

    @property
    def capacity(self) -> int | None:
        """How many distinct priorities fit, when that is finite."""
        if self.kind == "integer" and self.minimum is not None and self.maximum is not None:
            return int(self.maximum - self.minimum) + 1
        return None

    def describe(self) -> str:
        bounds = ""
        if self.minimum is not None or self.maximum is not None:
            bounds = f" {self.minimum if self.minimum is not None else '-inf'}"
            bounds += f"..{self.maximum if self.maximum is not None else 'inf'}"
        default = f", default {self.default}" if self.default is not None else ""
        return f"{self.kind}{bounds}{default}"

    def to_vendor(
        self, value: Decimal | None, *, provider: str = "", grant: str = ""
    ) -> int | float | Decimal | None:
        """The vendor's value for ``value``: exact, or ``PriorityNotRepresentableError``.

        ``None`` becomes the domain's default (itself None where the vendor has none).
        """
        if value is None:
            value = self.default
            if value is None:
                return None
        reason = self.problem(value)
        if reason is not None:
            where = f" of grant {grant}" if grant else ""
            raise PriorityNotRepresentableError(
                provider or self.kind,
                [FieldProblem("priority", f"{value}{where} {reason}; choose an explicit "
                              "priority or the order-preserving policy")],
            )
        if self.kind == "integer":
            return int(value)
        if self.kind == "float64":
            return float(value)
        return value

    def from_vendor(self, value: int | float | Decimal | str | None) -> Decimal | None:
        """The neutral priority for a vendor value; a vendor's "no priority" is its default."""
        if value is None:
            return self.default
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
            raise InvalidGrantError([FieldProblem("priority", f"{value!r:.80} is not a number")])
        try:
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except ArithmeticError:
            number = None
        if number is None or not number.is_finite():
            raise InvalidGrantError([FieldProblem("priority", f"{value!r:.80} is not a finite number")])
        return number

    def nearest(self, value: Decimal) -> Decimal:
        """The closest value this domain holds (ties to even), clamped to its bounds."""
        if self.kind == "integer":
            value = value.to_integral_value(rounding=ROUND_HALF_EVEN)
        elif self.kind == "float64":
            value = Decimal(repr(float(value)))
        if self.minimum is not None:
            value = max(value, self.minimum)
        if self.maximum is not None:
            value = min(value, self.maximum)
        return value


ANY_DECIMAL = PriorityDomain("decimal")
FLOAT64 = PriorityDomain("float64")


@dataclass(frozen=True)
class PriorityMapping:
    """The result of ``preserve_order``: each source priority's target, and what changed."""

    targets: Mapping[Decimal, Decimal]
    method: Literal["identity", "nearest", "spread"]
    changes: tuple[tuple[Decimal, Decimal], ...] = field(default=())

    def __call__(self, value: Decimal) -> Decimal:
        return self.targets[value]


def preserve_order(
    values: Iterable[Decimal], domain: PriorityDomain, *, provider: str = "", group: str = ""
) -> PriorityMapping:
    """Map a set of priorities (one customer's) onto ``domain``, keeping order and ties exactly.

    Tries, in order: every value unchanged (``identity``); every value moved to the nearest
    value the domain holds, when that keeps all of them distinct (``nearest``); the distinct
    values spread evenly across the domain's bounds by rank (``spread``). Raises
    ``PriorityNotRepresentableError`` when the domain holds fewer distinct values than needed.
    """
    distinct = sorted(set(values))
    if all(domain.contains(v) for v in distinct):
        return PriorityMapping({v: v for v in distinct}, "identity")
    nearest = [domain.nearest(v) for v in distinct]
    if all(a < b for a, b in itertools.pairwise(nearest)):
        return _mapping(distinct, nearest, "nearest")
    capacity = domain.capacity
    if capacity is None or domain.minimum is None or domain.maximum is None:
        raise PriorityNotRepresentableError(
            provider or domain.kind,
            [FieldProblem("priority", f"{len(distinct)} distinct priorities{_of(group)} do not "
                          f"stay distinct in {domain.describe()}")],
        )
    if len(distinct) > capacity:
        raise PriorityNotRepresentableError(
            provider or domain.kind,
            [FieldProblem("priority", f"{len(distinct)} distinct priorities{_of(group)} cannot "
                          f"keep their order in {capacity} values ({domain.describe()})")],
        )
    span = domain.maximum - domain.minimum
    steps = max(len(distinct) - 1, 1)
    spread = [domain.minimum + (span * i // steps) for i in range(len(distinct))]
    return _mapping(distinct, spread, "spread")


def _of(group: str) -> str:
    return f" of {group}" if group else ""


def _mapping(
    sources: list[Decimal], targets: list[Decimal], method: Literal["nearest", "spread"]
) -> PriorityMapping:
    pairs = dict(zip(sources, targets, strict=True))
    changes = tuple((s, t) for s, t in pairs.items() if s != t)
    return PriorityMapping(pairs, method, changes)
