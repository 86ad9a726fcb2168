"""Balances, ledger entries, grant updates and usage: what a backend asks its vendor every day.

Neutral, exact models for the balance / ledger / consumption operations of every provider
(``Provider.get_balance``, ``list_ledger``, ``update_grant``, ``consume``). Amounts are exact
``Money``; a ledger entry's amount is signed (+ granted, − consumed, expired or voided).
``raw`` holds the vendor payload and takes no part in equality.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, field_validator, model_validator

from ._base import NeutralModel, RawPayload, exact_decimal
from ._model import Category, UtcDatetime
from ._money import Money, exact_json

__all__ = [
    "Balance",
    "BalancePart",
    "GrantUpdate",
    "LedgerEntry",
    "LedgerKind",
    "LedgerPage",
    "Usage",
]

_Priority = Annotated[Decimal, Field(allow_inf_nan=False), BeforeValidator(exact_decimal)]
_NonEmpty = Annotated[str, Field(min_length=1)]


class _RawNotCompared(NeutralModel):
    """A model whose ``raw`` vendor payload takes no part in equality."""

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any
    ) -> Self:
        """As pydantic's, but JSON numbers are read exactly (see ``exact_json``)."""
        return cls.model_validate(exact_json(json_data), *args, **kwargs)

    def comparable(self) -> dict[str, Any]:
        """The fields that take part in equality (all but ``raw``)."""
        return {k: v for k, v in self.__dict__.items() if k != "raw"}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _RawNotCompared)
        return self.comparable() == other.comparable()

    __hash__ = None  # type: ignore[assignment]


class BalancePart(NeutralModel):
    """One grant's share of a balance: what it holds usable now and what pending invoices will
    still take from it, as ``Money`` in the balance's unit (like ``Balance.usable``).
    ``pending`` defaults to zero in the unit of ``usable``."""

    grant_id: _NonEmpty
    usable: Money
    pending: Money = Field(default_factory=lambda data: data["usable"].with_amount(Decimal(0)))
    expires_at: UtcDatetime | None = None
    priority: _Priority | None = None

    @model_validator(mode="after")
    def _one_unit(self) -> Self:
        if not self.pending.same_unit(self.usable):
            raise ValueError("pending must be in the unit of usable")
        return self


class Balance(_RawNotCompared):
    """A customer's credit in one unit, as of ``as_of``.

    ``usable`` is what the customer can spend now; ``pending`` what pending, not yet finalized
    invoices will still deduct from it (zero when there are none or the vendor does not say:
    ``source`` names the vendor field or endpoint read, so a reader can tell). ``parts`` splits
    ``usable`` by grant where the vendor reports it.

    ``uninvoiced_usage_deducted`` says whether usage recorded but not yet invoiced has been
    taken off ``usable``: True, False (the vendor's figure does not deduct it: the customer
    may hold less than ``usable``), or None (the vendor does not say). ``notes`` are
    statements, in plain words, about what the figures include or leave out (entries dated
    after ``as_of``, credit expired but not yet posted, ...), so a reader need not know the
    vendor's documentation.
    """

    customer_id: _NonEmpty
    usable: Money
    pending: Money
    parts: tuple[BalancePart, ...] = ()
    as_of: UtcDatetime
    source: str
    uninvoiced_usage_deducted: bool | None = None
    notes: tuple[str, ...] = ()
    raw: RawPayload | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _one_unit(self) -> Self:
        if not self.pending.same_unit(self.usable):
            raise ValueError("pending must be in the unit of usable")
        if any(not part.usable.same_unit(self.usable) for part in self.parts):
            raise ValueError("every part must be in the unit of usable")
        return self

    @property
    def unit_key(self) -> str:
        """The unit of this balance, as ``Money.unit_key`` (``USD``, ``unit:<id>``)."""
        return self.usable.unit_key


class LedgerKind(enum.StrEnum):
    """What moved the credit."""

    GRANTED = "granted"
    CONSUMED = "consumed"
    EXPIRED = "expired"
    VOIDED = "voided"
    ADJUSTED = "adjusted"


_SIGN: dict[LedgerKind, int] = {
    LedgerKind.GRANTED: 1, LedgerKind.CONSUMED: -1, LedgerKind.EXPIRED: -1, LedgerKind.VOIDED: -1}


class LedgerEntry(_RawNotCompared):
    """One movement of credit, signed: + granted; − consumed, expired, voided; ± adjusted.

    ``reference`` is the invoice id or usage reference that consumed it; ``running_balance``
    the balance after it, where the vendor reports one; ``vendor_id`` the vendor's id of the
    entry itself.
    """

    customer_id: _NonEmpty
    grant_id: str | None
    kind: LedgerKind
    amount: Money
    at: UtcDatetime
    running_balance: Money | None = None
    reference: str | None = None
    vendor_id: str | None = None
    raw: RawPayload | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _signed(self) -> Self:
        sign = _SIGN.get(self.kind)
        if sign is not None and self.amount.amount * sign < 0:
            word = "positive" if sign > 0 else "negative"
            raise ValueError(f"a {self.kind.value} entry's amount must be {word} or zero")
        if self.running_balance is not None and not self.running_balance.same_unit(self.amount):
            raise ValueError("running_balance must be in the unit of amount")
        return self


class GrantUpdate(NeutralModel):
    """What to change on an existing grant. Only the fields explicitly given are sent
    (``model_fields_set``): ``GrantUpdate(expires_at=None)`` means "never expire", while
    ``GrantUpdate()`` changes nothing. ``category`` / ``category_label`` as on ``CreditGrant``
    (where the vendor lets them change)."""

    expires_at: UtcDatetime | None = None
    name: str | None = None
    metadata: dict[str, str] | None = None
    category: Category | None = None
    category_label: str | None = None

    def changes(self) -> dict[str, Any]:
        """The fields to change, by name, with their new values."""
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class Usage(NeutralModel):
    """Usage to pay for with credit: ``amount`` (> 0) at ``at``, for ``product_id`` (and
    ``contract_id``, the contract it is billed under) where the grants' scope matters;
    ``reference`` makes recording it idempotent."""

    customer_id: _NonEmpty
    amount: Money
    at: UtcDatetime
    product_id: str | None = None
    reference: str | None = None
    contract_id: str | None = None

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: Money) -> Money:
        if value.amount <= 0:
            raise ValueError("must be greater than zero")
        return value

    @field_validator("reference")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value


@dataclass(frozen=True)
class LedgerPage:
    """One page of a ledger listing; ``next_cursor`` is None on the last page. Paged with the
    same loop guard as grant listings (a cursor seen before, a run of empty pages)."""

    entries: Sequence[LedgerEntry]
    next_cursor: str | None = None
    request_id: str | None = None
