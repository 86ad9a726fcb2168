"""The fake's records and its refusal, shared by the fake (``_fake``) and its usage routes
(``_consume``), and ``FakeState``: what the usage routes need of ``MetronomeFake``, so they
never import the fake."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol


class _RefusedError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        self.status = status
        self.message = message
        self.code = code
        super().__init__(message)

def _bad(message: str) -> _RefusedError:
    return _RefusedError(400, message)

@dataclass
class _Grant:
    item: dict[str, Any]
    amount: Decimal
    voided: bool = False
    deductions: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)

@dataclass
class _Credit:
    customer_id: str
    item: dict[str, Any]
    segments: list[dict[str, Any]]
    deducted: Decimal = Decimal(0)
    archived: bool = False


class FakeState(Protocol):
    """What the usage routes (``_consume``) read and change on ``MetronomeFake``."""

    clock: Callable[[], datetime]
    credit_types: dict[str, str]
    grants: dict[str, _Grant]
    credits: dict[str, _Credit]
    credit_ledgers: dict[str, list[dict[str, Any]]]
    grant_draws: list[dict[str, Any]]

    @staticmethod
    def _fields(body: Mapping[str, Any], allowed: frozenset[str],
                required: Iterable[str] = (), where: str = "") -> None: ...

    def _uuid(self, value: Any, name: str) -> str: ...

    def _time(self, value: Any, name: str, *, hour: bool = True) -> datetime: ...

    @staticmethod
    def _strings(value: Any, name: str) -> list[str]: ...

    @staticmethod
    def _limit(value: Any, maximum: int, default: int) -> int: ...

    @staticmethod
    def _offset(cursor: Any) -> int: ...

    def _period_end(self) -> str: ...

    def _credit_view(self, credit: _Credit, *, balance: bool, ledgers: bool) -> dict[str, Any]: ...
