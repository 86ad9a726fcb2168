"""Check requests against the stripe SDK's own parameter TypedDicts (``stripe.params``)."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import stripe
import typing_extensions
from stripe.params.billing import (
    CreditBalanceSummaryRetrieveParams,
    CreditBalanceTransactionListParams,
    CreditBalanceTransactionRetrieveParams,
    CreditGrantCreateParams,
    CreditGrantExpireParams,
    CreditGrantListParams,
    CreditGrantRetrieveParams,
    CreditGrantUpdateParams,
    CreditGrantVoidGrantParams,
)
from stripe.params.test_helpers import (
    TestClockAdvanceParams,
    TestClockCreateParams,
    TestClockRetrieveParams,
)

__all__ = ["ENDPOINT_PARAMS", "declared_paths", "endpoint_of", "undeclared_params"]

ENDPOINT_PARAMS: Mapping[str, Any] = {
    "create": CreditGrantCreateParams,
    "list": CreditGrantListParams,
    "retrieve": CreditGrantRetrieveParams,
    "update": CreditGrantUpdateParams,
    "expire": CreditGrantExpireParams,
    "void": CreditGrantVoidGrantParams,
    "summary": CreditBalanceSummaryRetrieveParams,
    "transactions": CreditBalanceTransactionListParams,
    "transaction": CreditBalanceTransactionRetrieveParams,
    "test_clock_create": TestClockCreateParams,
    "test_clock_retrieve": TestClockRetrieveParams,
    "test_clock_advance": TestClockAdvanceParams,
}
"""The SDK TypedDict declaring each credit-grant endpoint's parameters."""


def _hints(typed: Any) -> dict[str, Any]:
    """Resolved annotations; the SDK imports some names under ``TYPE_CHECKING`` only."""
    return typing.get_type_hints(
        typed, localns={"StripeContext": object, "Mapping": typing.Mapping})


_OPTIONS = frozenset(_hints(stripe.RequestOptions))
"""Keys of ``RequestOptions`` (api_key, idempotency_key…): client options, not API params."""


def _paths(hint: Any, path: str) -> set[str]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_paths(arg, path) for arg in args))
    if origin is list:
        return _paths(args[0], f"{path}[i]")
    if origin is dict or (isinstance(hint, type) and issubclass(hint, stripe.StripeObject)):
        return {f"{path}[*]"}
    if typing_extensions.is_typeddict(hint):
        return _declared(hint, path)
    return {path}


def _declared(typed: Any, prefix: str) -> set[str]:
    found: set[str] = set()
    for name, hint in _hints(typed).items():
        if not prefix and name in _OPTIONS:
            continue
        found |= _paths(hint, f"{prefix}[{name}]" if prefix else name)
    return found


@cache
def declared_paths(typed: Any) -> frozenset[str]:
    """Every form path a params TypedDict allows: ``a[b]``, lists as ``[i]``, maps as ``[*]``."""
    return frozenset(_declared(typed, ""))


def endpoint_of(method: str, path: str) -> str:
    """Which credit-grant endpoint a request is for (a key of ``ENDPOINT_PARAMS``)."""
    if path.startswith("/v1/test_helpers/test_clocks"):
        if path.endswith("/advance"):
            return "test_clock_advance"
        return "test_clock_retrieve" if method == "GET" else "test_clock_create"
    if path.endswith("/credit_balance_summary"):
        return "summary"
    if path.endswith("/credit_balance_transactions"):
        return "transactions"
    if "/credit_balance_transactions/" in path:
        return "transaction"
    if path.endswith("/expire"):
        return "expire"
    if path.endswith("/void"):
        return "void"
    if path.endswith("/credit_grants"):
        return "create" if method == "POST" else "list"
    return "update" if method == "POST" else "retrieve"


def _normalise(key: str) -> str:
    parts = key.replace("]", "").split("[")
    out = parts[0]
    for part in parts[1:]:
        if part.isdigit() or part == "":
            out += "[i]"
        elif out in ("metadata", "expand"):
            return f"{out}[*]"
        else:
            out += f"[{part}]"
    return out


def undeclared_params(method: str, path: str, pairs: Iterable[tuple[str, str]]) -> list[str]:
    """The form keys of a request its endpoint's SDK TypedDict does not declare."""
    allowed = declared_paths(ENDPOINT_PARAMS[endpoint_of(method, path)])
    return [key for key, _ in pairs if _normalise(key) not in allowed]
