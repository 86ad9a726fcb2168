"""What a provider can hold, as declarative data, checked before any I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from ._errors import FieldProblem, NotRepresentableError
from ._priority import ANY_DECIMAL, PriorityDomain, float64_exact

if TYPE_CHECKING:  # the models load only when a grant is checked: listing providers stays light
    from ._model import CreditGrant
    from ._money import Money

__all__ = [
    "ALL_OPERATIONS",
    "ALL_SCOPE_KINDS",
    "BASIC_OPERATIONS",
    "CONSERVATIVE_METADATA",
    "Capabilities",
    "MetadataLimits",
    "Operation",
    "ScopeKind",
]

Operation = Literal[
    "create", "list", "get", "void", "expire", "balance", "ledger", "update", "consume"
]
ScopeKind = Literal[
    "product_ids", "product_tags", "price_ids", "metered_prices_only", "contract_ids", "specifiers"
]
ALL_OPERATIONS: frozenset[Operation] = frozenset(
    {"create", "list", "get", "void", "expire", "balance", "ledger", "update", "consume"}
)
ALL_SCOPE_KINDS: frozenset[ScopeKind] = frozenset(
    {"product_ids", "product_tags", "price_ids", "metered_prices_only", "contract_ids", "specifiers"}
)
BASIC_OPERATIONS: frozenset[Operation] = frozenset({"create", "list", "get"})


@dataclass(frozen=True)
class MetadataLimits:
    """Limits on ``metadata``: key count, key and value lengths, characters keys may not hold.

    ``reserved`` is the number of keys the provider itself needs (for fields it carries in
    metadata); they count against ``max_keys``.
    """

    max_keys: int | None = None
    max_key_length: int | None = None
    max_value_length: int | None = None
    forbidden_key_chars: str = ""
    reserved_prefix: str | None = None

    @cached_property
    def unlimited(self) -> bool:
        """Whether these limits refuse nothing (no limit, no forbidden character or prefix)."""
        return self == _NO_LIMITS

    def problems(self, metadata: dict[str, str], *, reserved: int = 0) -> list[FieldProblem]:
        if self.unlimited:  # nothing to check (``local``): no loop over the keys
            return []
        found = []
        if self.max_keys is not None and len(metadata) + reserved > self.max_keys:
            extra = f" (plus {reserved} the provider needs)" if reserved else ""
            found.append(FieldProblem(
                "metadata", f"{len(metadata)} keys{extra}; at most {self.max_keys} fit"))
        for key, value in metadata.items():
            if self.max_key_length is not None and len(key) > self.max_key_length:
                found.append(FieldProblem(
                    f"metadata.{key}",
                    f"key is {len(key)} characters; at most {self.max_key_length} fit"))
            if self.forbidden_key_chars and (
                    bad := sorted({c for c in key if c in self.forbidden_key_chars})):
                found.append(FieldProblem(
                    f"metadata.{key}", f"key may not contain {' '.join(bad)}"))
            if self.max_value_length is not None and len(value) > self.max_value_length:
                found.append(FieldProblem(
                    f"metadata.{key}",
                    f"value is {len(value)} characters; at most {self.max_value_length} fit"))
            if self.reserved_prefix and key.startswith(self.reserved_prefix):
                found.append(FieldProblem(
                    f"metadata.{key}", f"keys starting {self.reserved_prefix!r} are reserved"))
        return found


_NO_LIMITS = MetadataLimits()

CONSERVATIVE_METADATA = MetadataLimits(max_keys=20, max_key_length=40, max_value_length=500)
"""The metadata ``Capabilities()`` assumes when a provider declares none."""


@dataclass(frozen=True)
class Capabilities:
    """Declarative description of what a provider can represent and do.

    The core checks every grant against these before any request (``check`` / ``ensure``), so a
    refusal never costs a round trip, and the CLI prints them (``describe``).

    - ``currencies``: ISO codes it takes (None: any); ``custom_units``: vendor credit units.
    - ``minor_units_only``: amounts must be whole minor units of their currency (cents).
    - ``amount_float64``: amounts travel as JSON numbers and must be exact as doubles.
    - ``priority``: the ``PriorityDomain`` it holds.
    - ``scope_kinds``: which ``Scope`` parts it understands; ``max_price_ids`` caps price lists.
    - ``max_segments``: how many access windows one grant may have (1: single window).
    - ``expiry_required``: the vendor needs an end date (the provider maps "never" itself).
    - ``name_max_length``: longest name accepted.
    - ``time_resolution``: the finest time step it stores (Unix seconds: one second); times
      that are not whole multiples are refused rather than truncated.
    - ``fields_in_metadata``: neutral fields carried in namespaced metadata keys, not natively.
    - ``operations``: what it can do beyond the model.
    - ``invoices_paid_amount``: this instance, by its settings, bills the customer for a grant's
      ``paid_amount`` when creating it (see ``Provider.record_only``).
    - ``idempotency_key_memory``: how long the vendor remembers an idempotency key (None: for
      ever). When set, a keyed create first looks for a grant already carrying the key
      (``Provider._find_by_key``), so a key never yields two grants however late it is
      repeated (the provider setting ``find_existing`` turns the lookup off).
    - ``balance_as_of``: the moments ``get_balance(at=...)`` can answer for: ``"now"`` only, or
      ``"any"`` moment (past or future).
    - ``updatable_fields``: which ``GrantUpdate`` fields ``update_grant`` can change
      (``expires_at``, ``name``, ``metadata``).
    - ``notes``: anything else people should know, shown by ``billing-credits providers``.

    The defaults are conservative: ``Capabilities()`` claims nothing a provider must write code
    for. It holds ISO currencies only (no custom units), one access window, the "all usage"
    scope only, at most 20 metadata keys of 40 characters with values of 500, and the
    operations create, list and get. A provider opts in to more, field by field, so one that
    declares nothing never advertises what it has not implemented (and the conformance suite
    tests what it does declare).
    """

    currencies: frozenset[str] | None = None
    custom_units: bool = False
    minor_units_only: bool = False
    amount_float64: bool = False
    priority: PriorityDomain = ANY_DECIMAL
    scope_kinds: frozenset[ScopeKind] = frozenset()
    max_price_ids: int | None = None
    max_segments: int | None = 1
    expiry_required: bool = False
    name_max_length: int | None = None
    time_resolution: timedelta = timedelta(microseconds=1)
    metadata: MetadataLimits = field(default_factory=lambda: CONSERVATIVE_METADATA)
    fields_in_metadata: frozenset[str] = frozenset()
    operations: frozenset[Operation] = BASIC_OPERATIONS
    invoices_paid_amount: bool = False
    balance_as_of: Literal["now", "any"] = "now"
    updatable_fields: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()
    idempotency_key_memory: timedelta | None = None

    def supports(self, operation: Operation) -> bool:
        return operation in self.operations

    @cached_property
    def holds_every_amount(self) -> bool:
        """Whether any amount in any unit fits: no currency list, custom units, no minor-unit
        or double-precision limit (then no amount needs checking)."""
        return (self.currencies is None and self.custom_units and not self.minor_units_only
                and not self.amount_float64)

    @cached_property
    def holds_every_grant(self) -> bool:
        """Whether ``check`` can find nothing in any valid grant: any amount in any unit, every
        scope kind, any number of prices and segments, any name, time, priority and metadata
        (``local``). Then ``check`` returns at once (a bulk import checks every grant)."""
        return (self.holds_every_amount and self.scope_kinds >= ALL_SCOPE_KINDS
                and self.max_price_ids is None and self.max_segments is None
                and self.name_max_length is None
                and self.time_resolution <= timedelta(microseconds=1)
                and not self.fields_in_metadata and self.metadata.unlimited
                and self.priority == ANY_DECIMAL)

    def check(self, grant: CreditGrant) -> list[FieldProblem]:
        """Every field of ``grant`` this provider cannot represent (empty: all fine)."""
        if self.holds_every_grant:
            return []
        found: list[FieldProblem] = []
        if not self.holds_every_amount:
            found += self._money_problems("amount", grant.amount, [grant.amount.amount])
            if grant.schedule is not None:
                found += self._money_problems(
                    "schedule.amount", grant.amount, [s.amount for s in grant.schedule],
                    check_unit=False,
                )
            if grant.paid_amount is not None:
                paid = grant.paid_amount
                found += self._money_problems("paid_amount", paid, [paid.amount])
        if grant.priority is not None and (reason := self.priority.problem(grant.priority)):
            found.append(FieldProblem(
                "priority", f"{grant.priority} {reason} ({self.priority.describe()})"))
        kinds = frozenset() if grant.scope.is_all_usage else grant.scope.kinds()
        for kind in sorted(kinds - self.scope_kinds):
            found.append(FieldProblem(f"scope.{kind}", "not supported by this provider"))
        if self.max_price_ids is not None and len(grant.scope.price_ids) > self.max_price_ids:
            found.append(FieldProblem(
                "scope.price_ids",
                f"{len(grant.scope.price_ids)} prices; at most {self.max_price_ids} fit"))
        segments = len(grant.schedule) if grant.schedule is not None else 1
        if self.max_segments is not None and segments > self.max_segments:
            found.append(FieldProblem(
                "schedule", f"{segments} segments; at most {self.max_segments} fit"))
        if self.name_max_length is not None and grant.name and len(grant.name) > self.name_max_length:
            found.append(FieldProblem(
                "name", f"{len(grant.name)} characters; at most {self.name_max_length} fit"))
        found += self._time_problems(grant)
        reserved = len([f for f in self.fields_in_metadata if _present(grant, f)]) \
            if self.fields_in_metadata else 0
        found += self.metadata.problems(grant.metadata, reserved=reserved)
        return found

    def ensure(self, grant: CreditGrant, provider: str) -> None:
        """Raise ``NotRepresentableError`` naming every field ``check`` finds."""
        if problems := self.check(grant):
            raise NotRepresentableError(provider, problems)

    def _money_problems(
        self, where: str, money: Money, amounts: Iterable[Decimal], *, check_unit: bool = True
    ) -> list[FieldProblem]:
        from ._money import currency_exponent, exact

        found = []
        if check_unit and money.unit is not None and not self.custom_units:
            found.append(FieldProblem(where, "custom credit units are not supported"))
        if (
            check_unit
            and money.currency is not None
            and self.currencies is not None
            and money.currency not in self.currencies
        ):
            found.append(FieldProblem(where, f"currency {money.currency} is not supported"))
        exponent = currency_exponent(money.currency) if money.currency is not None else None
        for amount in amounts:
            if self.minor_units_only and money.currency is not None:
                if exponent is None:
                    found.append(FieldProblem(where, f"{money.currency} has no minor unit"))
                elif int(amount.normalize(exact()).as_tuple().exponent) < -exponent:
                    found.append(FieldProblem(
                        where, f"{amount} {money.currency} is not a whole number of minor units"))
            if self.amount_float64 and not float64_exact(amount):
                found.append(FieldProblem(
                    where, f"{amount} has more digits than a JSON double carries exactly"))
        return found

    def _time_problems(self, grant: CreditGrant) -> list[FieldProblem]:
        step = self.time_resolution
        if step <= timedelta(microseconds=1):
            return []
        epoch = _EPOCH
        moments: list[tuple[str, datetime | None]] = [
            ("effective_at", grant.effective_at), ("expires_at", grant.expires_at)]
        for i, segment in enumerate(grant.schedule or ()):
            moments += [(f"schedule.{i}.starts_at", segment.starts_at),
                        (f"schedule.{i}.ends_before", segment.ends_before)]
        return [
            FieldProblem(name, f"{moment.isoformat()} is finer than this provider's "
                         f"{step.total_seconds():g} s resolution")
            for name, moment in moments
            if moment is not None and (moment - epoch) % step
        ]

    def describe(self) -> list[tuple[str, str]]:
        """Rows of (capability, value) for people."""
        rows = [
            ("currencies", "any ISO 4217" if self.currencies is None
             else ", ".join(sorted(self.currencies))),
            ("custom credit units", _yes(self.custom_units)),
            ("amount precision", "whole minor units" if self.minor_units_only
             else "exact double" if self.amount_float64 else "exact decimal"),
            ("priority", self.priority.describe()),
            ("scope", ", ".join(sorted(self.scope_kinds)) or "all usage only"),
            ("max price ids", _num(self.max_price_ids)),
            ("schedule segments", _num(self.max_segments)),
            ("expiry", "required (never → far future)" if self.expiry_required else "optional"),
            ("name max length", _num(self.name_max_length)),
            ("time resolution", _duration(self.time_resolution)),
            ("metadata", _limits(self.metadata)),
            ("carried in metadata", ", ".join(sorted(self.fields_in_metadata)) or "-"),
            ("operations", ", ".join(sorted(self.operations))),
            ("paid amount", "invoiced on create" if self.invoices_paid_amount
             else "recorded only"),
            ("idempotency keys", "kept for ever" if self.idempotency_key_memory is None
             else f"forgotten after {self.idempotency_key_memory.total_seconds() / 3600:g} h; a keyed create "
             "first looks for a grant with the key"),
            ("balance as of", "any moment" if self.balance_as_of == "any" else "now only"),
            ("updatable fields", ", ".join(sorted(self.updatable_fields)) or "-"),
        ]
        rows += [("note", note) for note in self.notes]
        return rows


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _present(grant: CreditGrant, name: str) -> bool:
    value = getattr(grant, name, None)
    return value not in (None, (), {}, "")


def _duration(step: timedelta) -> str:
    if step < timedelta(seconds=1):
        return f"{step // timedelta(microseconds=1)} µs"
    return f"{step.total_seconds():g} s"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _num(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _limits(limits: MetadataLimits) -> str:
    parts = []
    if limits.max_keys is not None:
        parts.append(f"{limits.max_keys} keys")
    if limits.max_key_length is not None:
        parts.append(f"key ≤ {limits.max_key_length}")
    if limits.max_value_length is not None:
        parts.append(f"value ≤ {limits.max_value_length}")
    if limits.forbidden_key_chars:
        parts.append(f"no {' '.join(limits.forbidden_key_chars)} in keys")
    return ", ".join(parts) or "unlimited"
