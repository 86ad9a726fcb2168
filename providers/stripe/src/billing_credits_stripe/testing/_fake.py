"""``StripeFake``: a stateful fake of Stripe's billing credit-grant endpoints.

Built on the core fake kit (``billing_credits.testing``): reach it in process with
``FakeTransport(fake)`` or over loopback HTTP with ``serve(fake)``; both inject the kit's
``Faults``. What it models, from Stripe's documentation and SDK types (API version
``2026-10-28.endive``):

- ``POST /v1/billing/credit_grants`` (create), ``GET …/{id}`` (retrieve), ``POST …/{id}``
  (update ``expires_at``/``metadata``), ``GET /v1/billing/credit_grants`` (list, newest first,
  ``limit`` 1-100 default 10, ``starting_after``/``ending_before``, ``has_more``),
  ``POST …/{id}/expire``, ``POST …/{id}/void``, ``GET /v1/billing/credit_balance_summary`` and
  ``GET /v1/billing/credit_balance_transactions`` (list, and ``…/{id}``: see ``_consume``);
- form-encoded bodies with bracket nesting, parameter names, types, enums, ranges and limits
  as the SDK's ``stripe.params.billing`` TypedDicts and the docs state them, answered with 400
  in Stripe's ``{"error": {...}}`` shape; 401 without a key; 404 for unknown ids;
- ``Idempotency-Key`` (≤ 255 characters) on POSTs, as https://docs.stripe.com/idempotency
  and https://docs.stripe.com/api/idempotent_requests describe it: the same key with the same
  parameters replays the saved response (``Idempotent-Replayed: true``); with other
  parameters, 400 ``idempotency_error``. The first result is saved whatever it was once the
  endpoint began executing, **5xx included** (an injected 5xx on a keyed POST stands for a
  failure during execution); validation failures (4xx) and concurrent conflicts are not
  saved. Keys are kept **per account** (the ``Stripe-Account`` header selects a connected
  account) and **forgotten 24 hours after first use** on the fake's own clock ("keys can be
  removed … once they're at least 24 hours old"; a key reused after that is a new request):
  ``advance(seconds)`` moves the clock, ``forget_idempotency_keys()`` prunes every key now;
- Connect: grants belong to the account the request was made for (``Stripe-Account``;
  https://docs.stripe.com/connect/authentication), and are listed, read and changed only
  there;
- currencies: Stripe's presentment currencies only (``STRIPE_CURRENCIES``, from
  https://docs.stripe.com/currencies); ``amount[monetary][value]`` a positive 64-bit integer
  (``MAX_AMOUNT_VALUE``); price ids at most 5,000 characters (Stripe's string limit, the
  OpenAPI ``maxLength: 5000`` of id parameters);
- the credit balance summary counts a grant once it is effective (its ``credits_granted``
  balance transaction is at ``effective_at``): a grant that has not started yet counts 0;
- listing costs O(page size): grants are indexed per account and customer in creation
  order, and a cursor is a position in that index;
- a ``Request-Id`` header on every response.

- the credit balance summary's two figures as Stripe documents them
  (https://docs.stripe.com/api/billing/credit-balance-summary/object): ``ledger_balance``
  "taking into account ledger transactions that have been committed to the ledger", and
  ``available_balance`` "equal to ledger balance less any expired billing credits for which
  expiration ledger transaction entries haven't yet been committed": once a grant expires, its
  remainder leaves ``available_balance`` at once but stays in ``ledger_balance`` (and no
  ``credits_expired`` transaction is listed) until the expiry is committed,
  ``expiry_commit_delay`` seconds later or at ``commit_expirations()``. How long Stripe takes
  is not documented: the delay is 0 unless a test sets it. Neither figure deducts usage not yet
  invoiced ("In future, this will also take into account any usage that hasn't yet been
  invoiced");
- test clocks (``_clocks``): a customer attached to a clock (``attach_test_clock``) has its
  grants carry the clock's id (``test_clock``), and they are evaluated at its ``frozen_time``.

Usage is applied with ``consume`` (in Stripe's order; see ``_consume``). Not modelled
(unverified at Stripe, see the README): draft invoices holding credit, ``expand``.
Behaviour chosen where Stripe's is undocumented: expiring a voided, already expired or not yet
effective grant and voiding a voided grant answer 400.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import string
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx

from billing_credits.testing import FakeTransport, Faults, LoopbackServer, serve
from billing_credits_stripe._translate import (
    KEY_MEMORY,
    MAX_AMOUNT_VALUE,
    MAX_ID_LENGTH,
    STRIPE_API_VERSION,
    STRIPE_CURRENCIES,
)

from ._checks import StripeError, _integer, _invalid, _missing, _string, _unknown
from ._clocks import advance_clock, clock_route, create_clock
from ._consume import consume as _consume
from ._consume import transaction_route as _transaction_route
from ._consume import transactions as _transactions

__all__ = ["RecordedRequest", "StripeFake", "parse_form"]

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_GRANTS = "/v1/billing/credit_grants"
_ONE = re.compile(r"^/v1/billing/credit_grants/([^/]+)$")
_ACTION = re.compile(r"^/v1/billing/credit_grants/([^/]+)/(expire|void)$")
_SUMMARY = "/v1/billing/credit_balance_summary"
_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
_CURRENCIES = frozenset(c.lower() for c in STRIPE_CURRENCIES)
"""The currencies the fake accepts: exactly the provider's table of Stripe's presentment
currencies (https://docs.stripe.com/currencies#presentment-currencies)."""
_KEY_SECONDS = int(KEY_MEMORY.total_seconds())
_ALL = "*"


class FormError(ValueError):
    """A parameter name the bracket grammar cannot parse."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"Invalid parameter name: {key}")


def parse_form(text: str) -> dict[str, Any]:
    """Decode Stripe's form encoding (``a[b][0][c]=v``) into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        base, _, rest = key.partition("[")
        rest = "[" + rest if rest else ""
        parts = _SEGMENT.findall(rest)
        if not base or "".join(f"[{p}]" for p in parts) != rest:
            raise FormError(key)
        node: Any = root
        path = [base, *parts]
        for i, segment in enumerate(path):
            last = i == len(path) - 1
            part = segment
            if segment == "":  # "expand[]" style append
                if not isinstance(node, dict):
                    raise FormError(key)
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                if not isinstance(node, dict) or isinstance(node.get(part), dict):
                    raise FormError(key)
                node[part] = value
            else:
                child = node.get(part) if isinstance(node, dict) else None
                if child is None:
                    child = {}
                    node[part] = child
                if not isinstance(child, dict):
                    raise FormError(key)
                node = child
    return _listify(root)  # type: ignore[no-any-return]


_HASHES = frozenset({"metadata"})
"""Parameters that are always hashes: ``metadata[0]=x`` is the key "0", not an index."""


def _listify(node: Any, name: str = "") -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if name not in _HASHES and converted and all(k.isdigit() for k in converted):
        indices = sorted(int(k) for k in converted)
        if indices == list(range(len(indices))):
            return [converted[str(i)] for i in indices]
    return converted


@dataclass
class RecordedRequest:
    """One request the fake handled: method, path, decoded parameters and key headers."""

    method: str
    path: str
    params: dict[str, Any]
    raw_params: list[tuple[str, str]]
    idempotency_key: str | None
    stripe_version: str | None
    stripe_account: str | None
    status: int = 0


@dataclass
class _Saved:
    fingerprint: str
    status: int
    body: bytes
    first_used: int


@dataclass
class StripeFake:
    """A stateful fake of Stripe's credit-grant endpoints (see the module docstring).

    ``clock`` returns Unix seconds (inject a fixed clock for repeatable cassettes; after
    construction ``clock()`` also counts what ``advance`` added); ``seed``
    makes ids and request ids repeatable. ``requests`` logs every request handled;
    ``inject`` queues Stripe errors to answer the next requests with (e.g. a 409 lock
    conflict), before any state changes.
    """

    clock: Callable[[], int] = field(default=lambda: int(time.time()))
    seed: int | None = None
    grants: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    consumed: dict[str, int] = field(default_factory=dict)
    injected: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    test_clocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    customer_clocks: dict[str, str] = field(default_factory=dict)
    expiry_commit_delay: int = 0
    """Seconds between a grant's expiry and Stripe committing its ``credits_expired`` entry
    (see the module docstring: Stripe documents the lag, not its length)."""

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._saved: dict[tuple[str, str], _Saved] = {}
        self._order = itertools.count()
        self._seq: dict[str, int] = {}
        self._offset = 0
        base = self.clock
        # ``clock`` itself moves with ``advance``, so every reader of the fake's time agrees.
        self.clock = lambda: base() + self._offset
        self._account = ""
        self._committed: set[str] = set()
        self._owner: dict[str, str] = {}
        self._index: dict[tuple[str, str, str], list[str]] = {}
        self._position: dict[tuple[tuple[str, str, str], str], int] = {}
        for grant in list(self.grants.values()):
            self._add(grant, "")

    # -- the fake's own clock and key memory ---------------------------------------------

    def now(self) -> int:
        """The fake's time in Unix seconds: the given clock plus what ``advance`` added."""
        return int(self.clock())

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (idempotency keys older than 24 h are forgotten)."""
        self._offset += int(seconds)

    # -- test clocks and the expiry lag --------------------------------------------------

    def create_test_clock(self, frozen_time: int, name: str | None = None) -> str:
        """A new test clock frozen at ``frozen_time``; its id."""
        return str(create_clock(self, frozen_time, name)["id"])

    def advance_test_clock(self, clock_id: str, frozen_time: int) -> None:
        """Advance ``clock_id`` to ``frozen_time`` (after its current frozen time)."""
        advance_clock(self, clock_id, frozen_time)

    def attach_test_clock(self, customer: str, clock_id: str) -> None:
        """Put ``customer`` on ``clock_id`` (Stripe attaches a clock when the customer is
        created; the fake has no customer endpoint). Grants created for it carry the clock."""
        if clock_id not in self.test_clocks:
            raise KeyError(clock_id)
        self.customer_clocks[customer] = clock_id

    def grant_now(self, grant: Mapping[str, Any]) -> int:
        """The time ``grant`` lives on: its test clock's ``frozen_time``, else the fake's."""
        clock_id = grant.get("test_clock")
        if clock_id is not None and clock_id in self.test_clocks:
            return int(self.test_clocks[clock_id]["frozen_time"])
        return self.now()

    def customer_now(self, customer: str | None) -> int:
        """The time ``customer`` lives on (its test clock's ``frozen_time``, else the fake's)."""
        clock_id = self.customer_clocks.get(customer or "")
        if clock_id is not None and clock_id in self.test_clocks:
            return int(self.test_clocks[clock_id]["frozen_time"])
        return self.now()

    def commit_expirations(self) -> None:
        """Commit every expiry due so far (its ``credits_expired`` entry is posted)."""
        for grant in self.grants.values():
            expires = grant["expires_at"]
            if expires is not None and expires <= self.grant_now(grant):
                self._committed.add(grant["id"])

    def expiry_committed(self, grant: Mapping[str, Any]) -> bool:
        """Whether ``grant``'s expiry has reached the ledger (see ``expiry_commit_delay``)."""
        expires = grant["expires_at"]
        if expires is None or expires > self.grant_now(grant):
            return False
        return (grant["id"] in self._committed
                or expires + self.expiry_commit_delay <= self.grant_now(grant))

    def forget_idempotency_keys(self) -> None:
        """Forget every saved idempotency key now, as Stripe may once they are 24 h old."""
        self._saved.clear()

    # -- the index behind O(page size) listings ------------------------------------------

    @staticmethod
    def _index_keys(grant: Mapping[str, Any], account: str) -> list[tuple[str, str, str]]:
        keys = [(account, _ALL, "")]
        if grant.get("customer") is not None:
            keys.append((account, "customer", str(grant["customer"])))
        if grant.get("customer_account") is not None:
            keys.append((account, "customer_account", str(grant["customer_account"])))
        return keys

    def _add(self, grant: dict[str, Any], account: str) -> None:
        grant_id = grant["id"]
        self.grants[grant_id] = grant
        self._seq[grant_id] = next(self._order)
        self._owner[grant_id] = account
        for key in self._index_keys(grant, account):
            ids = self._index.setdefault(key, [])
            self._position[(key, grant_id)] = len(ids)
            ids.append(grant_id)

    # -- the kit's FakeApp protocol ------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request (the kit calls this under its lock)."""
        record = RecordedRequest(
            method=request.method, path=request.url.path, params={}, raw_params=[],
            idempotency_key=request.headers.get("idempotency-key"),
            stripe_version=request.headers.get("stripe-version"),
            stripe_account=request.headers.get("stripe-account"),
        )
        self.requests.append(record)
        response = self._respond(request, record)
        record.status = response.status_code
        return response

    def error(self, status: int, message: str) -> httpx.Response:
        """A Stripe-shaped error (used by the kit for injected faults)."""
        if status == 429:
            return self._error(StripeError(429, message, code="rate_limit"))
        kind = "api_error" if status >= 500 else "invalid_request_error"
        return self._error(StripeError(status, message, type_=kind))

    # -- helpers for tests ---------------------------------------------------------------

    def transport(self, faults: Faults | None = None) -> FakeTransport:
        """An in-process httpx transport to this fake."""
        return FakeTransport(self, faults)

    @contextmanager
    def serve(self, faults: Faults | None = None) -> Iterator[LoopbackServer]:
        """Serve this fake on 127.0.0.1 for the ``with`` block."""
        with serve(self, faults) as server:
            yield server

    def reset(self) -> None:
        """Forget every grant, saved idempotent response, request and injected error."""
        self.grants.clear()
        self.requests.clear()
        self.consumed.clear()
        self.applied.clear()
        self.injected.clear()
        self._saved.clear()
        self._seq.clear()
        self._owner.clear()
        self._index.clear()
        self._position.clear()
        self._committed.clear()
        self.test_clocks.clear()
        self.customer_clocks.clear()

    consume = _consume
    transactions = _transactions

    def inject_error(self, status: int, *, type_: str = "api_error", code: str | None = None,
                     message: str = "Injected error", headers: Mapping[str, str] | None = None
                     ) -> None:
        """Answer the next request with this Stripe error (before touching any state)."""
        body = {"type": type_, "message": message}
        if code:
            body["code"] = code
        self.injected.append((status, body, dict(headers or {})))

    # -- routing -------------------------------------------------------------------------

    def _respond(self, request: httpx.Request, record: RecordedRequest) -> httpx.Response:
        try:
            key = self._authenticate(request)
            self._account = request.headers.get("stripe-account") or ""
            text = (request.content.decode() if request.method == "POST"
                    else request.url.query.decode())
            record.raw_params = parse_qsl(text, keep_blank_values=True)
            try:
                params = parse_form(text)
            except FormError as error:
                if self.injected:
                    return self._pop_injected()
                raise _invalid(error.key, str(error), "parameter_unknown") from None
            record.params = params
            if request.method == "POST" and request.headers.get("idempotency-key") is not None:
                return self._idempotent(request, key, params)
            if self.injected:
                return self._pop_injected()
            return self._dispatch(request.method, request.url.path, params, key)
        except StripeError as error:
            return self._error(error)

    def _pop_injected(self) -> httpx.Response:
        status, body, headers = self.injected.pop(0)
        response = self._json(status, {"error": body})
        response.headers.update(headers)
        return response

    def _authenticate(self, request: httpx.Request) -> str:
        header = request.headers.get("authorization", "")
        key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if not key.startswith(_KEY_PREFIXES):
            raise StripeError(401, "Invalid API Key provided." if key else
                              "You did not provide an API key.")
        return key

    def _idempotent(self, request: httpx.Request, api_key: str,
                    params: dict[str, Any]) -> httpx.Response:
        idem = request.headers["idempotency-key"]
        if len(idem) > 255:
            raise _invalid("Idempotency-Key", "Idempotency keys can be at most 255 characters.")
        fingerprint = json.dumps([request.url.path, params], sort_keys=True)
        slot = (self._account, idem)
        now = self.now()
        saved = self._saved.get(slot)
        if saved is not None and now - saved.first_used >= _KEY_SECONDS:
            del self._saved[slot]  # pruned: "a new request" from now on
            saved = None
        if saved is not None:
            if saved.fingerprint != fingerprint:
                raise StripeError(
                    400, "Keys for idempotent requests can only be used with the same "
                    "parameters they were first used with. Try using a key other than "
                    f"'{idem}' if you meant to execute a different request.",
                    type_="idempotency_error")
            response = httpx.Response(saved.status, content=saved.body,
                                      headers=self._headers())
            response.headers["Idempotent-Replayed"] = "true"
            response.headers["Idempotency-Key"] = idem
            return response
        if self.injected:
            response = self._pop_injected()
        else:
            response = self._dispatch("POST", request.url.path, params, api_key)
        if 200 <= response.status_code < 300 or response.status_code >= 500:
            self._saved[slot] = _Saved(fingerprint, response.status_code, response.content, now)
        response.headers["Idempotency-Key"] = idem
        return response

    def _dispatch(self, method: str, path: str, params: dict[str, Any],
                  api_key: str) -> httpx.Response:
        live = "_live_" in api_key
        if path == _GRANTS and method == "POST":
            return self._json(200, self._create(params, live))
        if path == _GRANTS and method == "GET":
            return self._json(200, self._list(params))
        if path == _SUMMARY and method == "GET":
            return self._json(200, self._summary(params, live))
        if (transactions := _transaction_route(self, method, path, params)) is not None:
            return self._json(200, transactions)
        if (clock := clock_route(self, method, path, params)) is not None:
            return self._json(200, clock)
        if match := _ACTION.match(path):
            if method != "POST":
                raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")
            _unknown(params, {"expand"})
            return self._json(200, self._act(match.group(1), match.group(2)))
        if match := _ONE.match(path):
            grant = self._find(match.group(1))
            if method == "GET":
                _unknown(params, {"expand"})
                return self._json(200, grant)
            if method == "POST":
                return self._json(200, self._update(grant, params))
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    # -- endpoints -----------------------------------------------------------------------

    def _create(self, params: dict[str, Any], live: bool) -> dict[str, Any]:
        _unknown(params, {"amount", "applicability_config", "category", "customer",
                          "customer_account", "effective_at", "expand", "expires_at",
                          "metadata", "name", "priority"})
        amount = self._amount(params)
        scope = self._scope(params.get("applicability_config"), "applicability_config")
        customer = _string(params, "customer", max_length=5000)
        account = _string(params, "customer_account", max_length=5000)
        if customer is None and account is None:
            raise _missing("customer")
        if customer is not None and account is not None:
            raise _invalid("customer", "You may only specify one of these parameters: "
                           "customer, customer_account.")
        category = _string(params, "category")
        if category is not None and category not in ("paid", "promotional"):
            raise _invalid("category", f"Invalid category: must be one of paid or promotional "
                           f"(got {category!r})")
        clock_id = self.customer_clocks.get(customer or account or "")
        # A test-clock customer's grant starts at the clock's frozen time by default
        # (effective_at "defaults to the current timestamp", the current time being the
        # clock's for objects that belong to it: stripe/test_helpers/_test_clock.py).
        now = self.customer_now(customer or account)
        effective = _integer(params, "effective_at")
        expires = _integer(params, "expires_at")
        if expires is not None and expires <= (effective if effective is not None else now):
            raise _invalid("expires_at", "expires_at must be after effective_at.")
        name = _string(params, "name", max_length=100)
        priority = _integer(params, "priority", minimum=0, maximum=100)
        metadata = self._metadata(params.get("metadata"), {})
        grant_id = self._id("credgr_test_" if not live else "credgr_")
        grant = {
            "id": grant_id,
            "object": "billing.credit_grant",
            "amount": amount,
            "applicability_config": {"scope": scope},
            "category": category or "paid",
            "created": self.now(),
            "customer": customer,
            "customer_account": account,
            "effective_at": effective if effective is not None else now,
            "expires_at": expires,
            "livemode": live,
            "metadata": metadata,
            "name": name or None,
            "priority": priority if priority is not None else 50,
            "test_clock": clock_id,
            "updated": self.now(),
            "voided_at": None,
        }
        self._add(grant, self._account)
        return grant

    def _amount(self, params: Mapping[str, Any]) -> dict[str, Any]:
        amount = params.get("amount")
        if amount is None:
            raise _missing("amount")
        if not isinstance(amount, dict):
            raise _invalid("amount", "Invalid object")
        _unknown(amount, {"type", "monetary"}, "amount")
        kind = amount.get("type")
        if kind is None:
            raise _missing("amount[type]")
        if kind != "monetary":
            raise _invalid("amount[type]", "Invalid amount[type]: must be one of monetary")
        monetary = amount.get("monetary")
        if not isinstance(monetary, dict):
            raise _missing("amount[monetary]")
        _unknown(monetary, {"currency", "value"}, "amount[monetary]")
        currency = monetary.get("currency")
        if currency is None:
            raise _missing("amount[monetary][currency]")
        if currency not in _CURRENCIES:
            raise _invalid("amount[monetary][currency]",
                           f"Invalid currency: {currency}. Stripe currently supports these "
                           "currencies in lowercase ISO format.")
        value = _integer(monetary, "value", minimum=1, maximum=MAX_AMOUNT_VALUE,
                         where="amount[monetary][value]")
        if value is None:
            raise _missing("amount[monetary][value]")
        return {"monetary": {"currency": currency, "value": value}, "type": "monetary"}

    def _scope(self, config: Any, where: str) -> dict[str, Any]:
        if config is None:
            raise _missing(where)
        if not isinstance(config, dict):
            raise _invalid(where, "Invalid object")
        if where == "applicability_config":
            _unknown(config, {"scope"}, where)
            config = config.get("scope")
            where = f"{where}[scope]"
            if not isinstance(config, dict):
                raise _missing(where)
        _unknown(config, {"price_type", "prices"}, where)
        price_type = config.get("price_type")
        prices = config.get("prices")
        if price_type is not None and prices is not None:
            raise _invalid(where, "You may only specify one of these parameters: price_type, "
                           "prices.")
        if price_type is not None:
            if price_type != "metered":
                raise _invalid(f"{where}[price_type]",
                               "Invalid price_type: must be one of metered")
            return {"price_type": "metered"}
        if prices is None:
            raise _invalid(where, "You must specify one of these parameters: price_type, "
                           "prices.")
        if not isinstance(prices, list) or not prices:
            raise _invalid(f"{where}[prices]", "Invalid array")
        if len(prices) > 20:
            raise _invalid(f"{where}[prices]", "You can specify at most 20 prices.")
        out = []
        for i, price in enumerate(prices):
            if not isinstance(price, dict):
                raise _invalid(f"{where}[prices][{i}]", "Invalid object")
            _unknown(price, {"id"}, f"{where}[prices][{i}]")
            price_id = _string(price, "id", max_length=MAX_ID_LENGTH)
            if not price_id:
                raise _missing(f"{where}[prices][{i}][id]")
            out.append({"id": price_id})
        return {"prices": out}

    def _metadata(self, metadata: Any, current: dict[str, str]) -> dict[str, str]:
        if metadata is None:
            return dict(current)
        if metadata == "":
            return {}
        if not isinstance(metadata, dict):
            raise _invalid("metadata", "Invalid object")
        merged = dict(current)
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise _invalid(f"metadata[{key}]", "Invalid metadata: nested objects are not "
                               "allowed; metadata keys may not contain '[' or ']'.")
            if len(key) > 40:
                raise _invalid(f"metadata[{key}]", "Metadata keys can have up to 40 "
                               "characters.", "parameter_invalid_string")
            if len(value) > 500:
                raise _invalid(f"metadata[{key}]", "Metadata values can have up to 500 "
                               "characters.", "parameter_invalid_string")
            if value == "":
                merged.pop(key, None)
            else:
                merged[key] = value
        if len(merged) > 50:
            raise _invalid("metadata", "You can have at most 50 metadata keys.")
        return merged

    def _ids(self, customer: str | None, account: str | None) -> list[str]:
        """This account's grant ids (of one customer, when given) in creation order."""
        if customer is not None and account is not None:
            return []
        if customer is not None:
            return self._index.get((self._account, "customer", customer), [])
        if account is not None:
            return self._index.get((self._account, "customer_account", account), [])
        return self._index.get((self._account, _ALL, ""), [])

    def _list(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown(params, {"customer", "customer_account", "ending_before", "expand", "limit",
                          "starting_after"})
        limit = _integer(params, "limit", minimum=1, maximum=100)
        limit = 10 if limit is None else limit
        customer = _string(params, "customer")
        account = _string(params, "customer_account")
        key = (self._account, "customer", customer) if customer is not None else (
            (self._account, "customer_account", account) if account is not None
            else (self._account, _ALL, ""))
        ids = self._ids(customer, account)
        after = _string(params, "starting_after")
        before = _string(params, "ending_before")
        if after is not None and before is not None:
            raise _invalid("starting_after", "You may only specify one of these parameters: "
                           "starting_after, ending_before.")
        # ids are oldest first; Stripe lists newest first.
        if after is not None:
            at = self._cursor(key, after, "starting_after")
            chosen = ids[max(0, at - limit):at]
            more = at - limit > 0
        elif before is not None:
            at = self._cursor(key, before, "ending_before")
            chosen = ids[at + 1:at + 1 + limit]
            more = at + 1 + limit < len(ids)
        else:
            chosen = ids[max(0, len(ids) - limit):]
            more = len(ids) > limit
        page = [self.grants[grant_id] for grant_id in reversed(chosen)]
        return {"object": "list", "data": page, "has_more": more, "url": _GRANTS}

    def _cursor(self, key: tuple[str, str, str], grant_id: str, param: str) -> int:
        at = self._position.get((key, grant_id))
        if at is None:
            raise StripeError(400 if grant_id in self._owner else 404,
                              f"No such credit grant: '{grant_id}'", code="resource_missing",
                              param=param)
        return at

    def _find(self, grant_id: str) -> dict[str, Any]:
        grant = self.grants.get(grant_id) if self._owner.get(grant_id) == self._account else None
        if grant is None:
            raise StripeError(404, f"No such credit grant: '{grant_id}'",
                              code="resource_missing", param="id")
        return grant

    def _update(self, grant: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        _unknown(params, {"expand", "expires_at", "metadata"})
        if "expires_at" in params:
            if params["expires_at"] == "":
                grant["expires_at"] = None
            else:
                expires = _integer(params, "expires_at")
                if expires is not None and grant["effective_at"] is not None and (
                        expires <= grant["effective_at"]):
                    raise _invalid("expires_at", "expires_at must be after effective_at.")
                grant["expires_at"] = expires
        grant["metadata"] = self._metadata(params.get("metadata"), grant["metadata"])
        grant["updated"] = self.now()
        return grant

    def _act(self, grant_id: str, action: str) -> dict[str, Any]:
        grant = self._find(grant_id)
        now = self.grant_now(grant)
        if grant["voided_at"] is not None:
            raise _invalid("id", f"The credit grant {grant_id} has been voided.",
                           "credit_grant_voided")
        if action == "expire":
            if grant["expires_at"] is not None and grant["expires_at"] <= now:
                raise _invalid("id", f"The credit grant {grant_id} has already expired.",
                               "credit_grant_expired")
            if grant["effective_at"] is not None and grant["effective_at"] > now:
                raise _invalid("id", f"The credit grant {grant_id} is not effective yet; "
                               "void it instead.", "credit_grant_not_effective")
            grant["expires_at"] = now
        else:
            grant["voided_at"] = now
        grant["updated"] = now
        return grant

    def _remaining(self, grant: dict[str, Any], now: int) -> int:
        if grant["voided_at"] is not None:
            return 0
        if grant["expires_at"] is not None and grant["expires_at"] <= now:
            return 0
        if grant["effective_at"] is not None and grant["effective_at"] > now:
            return 0
        value = int(grant["amount"]["monetary"]["value"])
        return max(value - self.consumed.get(grant["id"], 0), 0)

    def _unposted_expiry(self, grant: dict[str, Any], now: int) -> int:
        """What an expired grant still holds in ``ledger_balance`` before its expiry is
        committed (0 once committed, or for a voided or unexpired grant)."""
        if grant["voided_at"] is not None or grant["expires_at"] is None:
            return 0
        if grant["expires_at"] > now or self.expiry_committed(grant):
            return 0
        value = int(grant["amount"]["monetary"]["value"])
        return max(value - self.consumed.get(grant["id"], 0), 0)

    def _summary(self, params: dict[str, Any], live: bool) -> dict[str, Any]:
        _unknown(params, {"customer", "customer_account", "expand", "filter"})
        customer = _string(params, "customer")
        account = _string(params, "customer_account")
        if customer is None and account is None:
            raise _missing("customer")
        filt = params.get("filter")
        if not isinstance(filt, dict):
            raise _missing("filter")
        _unknown(filt, {"type", "credit_grant", "applicability_scope"}, "filter")
        kind = filt.get("type")
        if kind is None:
            raise _missing("filter[type]")
        if kind == "credit_grant":
            grant_id = _string(filt, "credit_grant")
            if grant_id is None:
                raise _missing("filter[credit_grant]")
            found = self.grants.get(grant_id)
            chosen = [found] if (
                found is not None and self._owner.get(grant_id) == self._account
                and (customer is None or found["customer"] == customer)
                and (account is None or found["customer_account"] == account)) else []
            if not chosen:
                raise StripeError(404, f"No such credit grant: '{grant_id}'",
                                  code="resource_missing", param="filter[credit_grant]")
        elif kind == "applicability_scope":
            scope = self._scope(filt.get("applicability_scope"), "filter[applicability_scope]")
            chosen = [self.grants[i] for i in self._ids(customer, account)
                      if self.grants[i]["applicability_config"]["scope"] == scope]
        else:
            raise _invalid("filter[type]", "Invalid filter[type]: must be one of credit_grant or "
                           "applicability_scope")
        totals: dict[str, list[int]] = {}
        for grant in chosen:
            currency = grant["amount"]["monetary"]["currency"]
            now = self.grant_now(grant)
            available = self._remaining(grant, now)
            # ledger_balance keeps an expired remainder until its expiry is committed;
            # available_balance never counts it (credit-balance-summary/object, see above).
            ledger = available + self._unposted_expiry(grant, now)
            pair = totals.setdefault(currency, [0, 0])
            pair[0] += available
            pair[1] += ledger
        balances = [
            {"available_balance": {"monetary": {"currency": c, "value": a}, "type": "monetary"},
             "ledger_balance": {"monetary": {"currency": c, "value": lg}, "type": "monetary"}}
            for c, (a, lg) in sorted(totals.items())
        ]
        return {"object": "billing.credit_balance_summary", "balances": balances,
                "customer": customer, "customer_account": account, "livemode": live}

    # -- responses -----------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        alphabet = string.ascii_letters + string.digits
        return prefix + "".join(self._random.choice(alphabet) for _ in range(24))

    def _headers(self) -> dict[str, str]:
        return {"Request-Id": self._id("req_"), "Stripe-Version": STRIPE_API_VERSION,
                "Content-Type": "application/json"}

    def _json(self, status: int, body: Mapping[str, Any]) -> httpx.Response:
        return httpx.Response(status, content=json.dumps(body).encode(), headers=self._headers())

    def _error(self, error: StripeError) -> httpx.Response:
        body: dict[str, Any] = {"type": error.type, "message": error.message}
        if error.code:
            body["code"] = error.code
            body["doc_url"] = f"https://stripe.com/docs/error-codes/{error.code.replace('_', '-')}"
        if error.param:
            body["param"] = error.param
        return self._json(error.status, {"error": body})
