"""Checks against the ``metronome-sdk`` types: params TypedDicts and response models.

``check_params(Params, body)``: every key of ``body`` (recursively) is declared by the SDK's
params TypedDict, every required key is present, and values have the declared types.
``check_response(Model, item)``: the SDK model parses ``item`` and every key of ``item``
(recursively) is a declared field, so the fake answers nothing the SDK does not know.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin, get_type_hints

import httpx
import pydantic
from billing_credits_metronome._transport import loads
from billing_credits_metronome.testing import MetronomeFake
from metronome.types.shared import Credit
from metronome.types.v1 import (
    CreditGrantCreateResponse,
    CreditGrantEditResponse,
    CreditGrantListEntriesResponse,
    CreditGrantListResponse,
    CreditGrantVoidResponse,
    contract_list_balances_params,
    credit_grant_create_params,
    credit_grant_edit_params,
    credit_grant_list_entries_params,
    credit_grant_list_params,
    credit_grant_void_params,
)
from metronome.types.v1.customers import (
    CreditCreateResponse,
    CreditUpdateEndDateResponse,
    credit_create_params,
    credit_list_params,
    credit_update_end_date_params,
)
from typing_extensions import is_typeddict

_WRAPPERS = {typing.Annotated, Required, NotRequired, typing.Required, typing.NotRequired}


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) in _WRAPPERS:
        tp = get_args(tp)[0]
    return tp


def _matches(tp: Any, value: Any, path: str) -> str | None:
    """None when ``value`` fits ``tp``, else why not."""
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if tp is Any:
        return None
    if origin in (Union, types.UnionType):
        reasons = [_matches(arg, value, path) for arg in get_args(tp)]
        return None if any(r is None for r in reasons) else f"{path}: {reasons}"
    if origin is Literal:
        return None if value in get_args(tp) else f"{path}: {value!r} not in {get_args(tp)}"
    if is_typeddict(tp):
        if not isinstance(value, Mapping):
            return f"{path}: expected an object"
        return _typeddict(tp, value, path)
    if tp is float:
        ok = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
        return None if ok else f"{path}: expected a number, got {value!r}"
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{path}: expected an integer"
    if tp is str:
        return None if isinstance(value, str) else f"{path}: expected a string"
    if tp is bool:
        return None if isinstance(value, bool) else f"{path}: expected a boolean"
    if tp is datetime:
        return None if isinstance(value, str) else f"{path}: expected a timestamp string"
    if origin in (dict, Mapping, typing.Dict):  # noqa: UP006
        if not isinstance(value, Mapping):
            return f"{path}: expected an object"
        value_type = get_args(tp)[1]
        for key, item in value.items():
            if (why := _matches(value_type, item, f"{path}.{key}")) is not None:
                return why
        return None
    if origin is not None and len(get_args(tp)) == 1:
        if not isinstance(value, list):
            return f"{path}: expected a list"
        for i, item in enumerate(value):
            if (why := _matches(get_args(tp)[0], item, f"{path}.{i}")) is not None:
                return why
        return None
    return f"{path}: unchecked type {tp!r}"


def _typeddict(td: Any, value: Mapping[str, Any], path: str) -> str | None:
    hints = get_type_hints(td, include_extras=True)
    for key in value:
        if key not in hints:
            return f"{path}{key}: not declared by {td.__name__}"
    for key in td.__required_keys__:
        if key not in value:
            return f"{path}{key}: required by {td.__name__}"
    for key, item in value.items():
        if (why := _matches(hints[key], item, f"{path}{key}")) is not None:
            return why
    return None


def check_params(td: Any, body: Mapping[str, Any]) -> None:
    why = _typeddict(td, body, "")
    assert why is None, why


def _model_keys(model: type[pydantic.BaseModel], value: Any, path: str) -> list[str]:
    problems = []
    if not isinstance(value, Mapping):
        return problems
    for key, item in value.items():
        field = model.model_fields.get(key)
        if field is None:
            problems.append(f"{path}{key}: not a field of {model.__name__}")
            continue
        problems += _nested(field.annotation, item, f"{path}{key}.")
    return problems


def _nested(tp: Any, value: Any, path: str) -> list[str]:
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        candidates = [a for a in get_args(tp) if a is not type(None)]
        results = [_nested(a, value, path) for a in candidates]
        return [] if any(not r for r in results) else results[0]
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return _model_keys(tp, value, path)
    if origin in (list, typing.List) and isinstance(value, list):  # noqa: UP006
        return [p for i, v in enumerate(value) for p in _nested(get_args(tp)[0], v, f"{path}{i}.")]
    return []


def check_response(model: type[pydantic.BaseModel], item: Mapping[str, Any]) -> None:
    model.model_validate(item)
    problems = _model_keys(model, item, "")
    assert not problems, problems


PARAMS: dict[str, Any] = {
    "/v1/credits/createGrant": credit_grant_create_params.CreditGrantCreateParams,
    "/v1/credits/listGrants": credit_grant_list_params.CreditGrantListParams,
    "/v1/credits/editGrant": credit_grant_edit_params.CreditGrantEditParams,
    "/v1/credits/voidGrant": credit_grant_void_params.CreditGrantVoidParams,
    "/v1/contracts/customerCredits/create": credit_create_params.CreditCreateParams,
    "/v1/contracts/customerCredits/list": credit_list_params.CreditListParams,
    "/v1/contracts/customerCredits/updateEndDate":
        credit_update_end_date_params.CreditUpdateEndDateParams,
    "/v1/credits/listEntries": credit_grant_list_entries_params.CreditGrantListEntriesParams,
    "/v1/contracts/customerBalances/list":
        contract_list_balances_params.ContractListBalancesParams,
}
RESPONSES: dict[str, Any] = {
    "/v1/credits/createGrant": CreditGrantCreateResponse,
    "/v1/credits/editGrant": CreditGrantEditResponse,
    "/v1/credits/voidGrant": CreditGrantVoidResponse,
    "/v1/contracts/customerCredits/create": CreditCreateResponse,
    "/v1/contracts/customerCredits/updateEndDate": CreditUpdateEndDateResponse,
}
ITEMS: dict[str, Any] = {
    "/v1/credits/listGrants": CreditGrantListResponse,
    "/v1/contracts/customerCredits/list": Credit,
    "/v1/credits/listEntries": CreditGrantListEntriesResponse,
    "/v1/contracts/customerBalances/list": Credit,  # ContractListBalancesResponse: Credit | Commit
}


class Recorder:
    """A FakeApp around the fake that keeps every (request, response)."""

    def __init__(self, fake: MetronomeFake) -> None:
        self.fake = fake
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        response = self.fake.handle(request)
        self.exchanges.append((request, response))
        return response

    def error(self, status: int, message: str) -> httpx.Response:
        return self.fake.error(status, message)


def check_exchange(request: httpx.Request, response: httpx.Response) -> None:
    """The request validates against the SDK params; a 2xx response parses with its models."""
    path = request.url.path
    body = loads(request.content)
    query = {k: (int(v) if k == "limit" else v) for k, v in request.url.params.items()}
    check_params(PARAMS[path], {**body, **query})
    if path == "/v1/credits/listGrants":
        assert set(query) <= {"limit", "next_page"}, "listGrants pages in the query"
        assert not {"limit", "next_page"} & set(body)
    if path == "/v1/credits/listEntries":
        assert set(query) <= {"next_page", "sort"}, "listEntries pages in the query"
    if path in ("/v1/contracts/customerCredits/list", "/v1/contracts/customerBalances/list"):
        assert not query, f"{path} pages in the body"
    if response.status_code >= 400:
        assert set(loads(response.content)) == {"message"}
        return
    data = loads(response.content)
    if path in RESPONSES:
        check_response(RESPONSES[path], data)
    else:
        assert set(data) == {"data", "next_page"}
        for item in data["data"]:
            check_response(ITEMS[path], item)
