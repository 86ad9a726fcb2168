"""``OrbFake``: a stateful fake of Orb's customers, credit blocks and credits ledger.

Built on the core fake kit (``billing_credits.testing``): reach it in process with
``fake.transport(faults)`` (an httpx transport) or over loopback HTTP with
``fake.serve(faults)``; both inject the kit's ``Faults``. Paths are served with or without
the SDK's ``/v1`` prefix (its default base URL is ``https://api.withorb.com/v1``). Every
response has the shape of the ``orb-billing`` SDK's pydantic models (the tests validate each
one with them). What it models, and where each rule comes from:

- ``POST /customers/{id}/credits/ledger_entry`` and ``…/external_customer_id/{id}/…``
  (``orb/resources/customers/credits/ledger.py``, ``create_entry``; parameters from
  ``orb/types/customers/credits/ledger_create_entry_params.py``): ``increment``,
  ``decrement``, ``expiration_change``, ``void``, ``amendment``;
- ``GET /customers/{id}/credits`` (blocks; ``include_all_blocks``; ``currency`` defaulting to
  ``credits``: ``orb/resources/customers/credits/credits.py``), ``GET …/credits/ledger``
  (newest first, ``entry_type``, ``created_at[gte]``…: ``ledger.py``, ``list``);
- ``GET``/``PUT /credit_blocks/{id}`` (``orb/resources/credit_blocks.py``: metadata merged,
  ``null`` removes a key); ``GET``/``POST /customers``, ``GET /customers/{id}``,
  ``GET /customers/external_customer_id/{id}``;
- pagination: ``data`` and ``pagination_metadata`` (``has_more``, ``next_cursor``), ``limit``
  1-100 default 20 (``orb/pagination.py``; "The number of items to fetch. Defaults to 20.");
- errors in Orb's shape (``status``, ``type``, ``title``, ``detail``; the types the SDK maps in
  ``orb/_client.py`` ``_make_status_error``): 400 request validation, 401 without a bearer
  key, 404 resource not found, 409 resource conflict;
- idempotency (https://docs.withorb.com/reference/idempotency): ``Idempotency-Key`` on POST
  only ("Idempotency keys for GET/PUT/DELETE requests will be ignored"), at most 64
  characters; the same key and payload replays the saved answer with
  ``Idempotent-Replayed: true``; the same key with another payload is a 409; every keyed
  answer echoes the key in an ``Idempotency-Key`` header; keys are forgotten 48 hours after
  first use on the fake's clock (``advance``, ``forget_idempotency_keys``). Saved: 2xx and
  4xx other than 409 (409s "will not be replayed because request processing has not
  started"); a 5xx is not saved ("clients can reuse the same idempotency key ... to retry").

Behaviour chosen where Orb documents none (each labelled "fake's model" below and in the
README): a decrement draws only on blocks without item filters; ties after expiry and cost
basis go by block id; an ``expiration_change`` without ``amount`` changes the
whole block in place; dates are held as UTC midnights; a customer without a currency takes
the currency of its first increment in a real-world currency.
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
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from billing_credits import is_iso_currency
from billing_credits.testing import FakeTransport, Faults, LoopbackServer, serve
from billing_credits_orb._translate import KEY_MEMORY, MAX_IDEMPOTENCY_KEY_LENGTH

__all__ = ["OrbFake", "RecordedRequest", "dumps_exact"]

_ERRORS = "https://docs.withorb.com/reference/error-responses#"
_TYPES = {400: "400-request-validation-errors", 401: "401-authentication-error",
          404: "404-resource-not-found", 409: "409-resource-conflict",
          429: "429-too-many-requests", 500: "500-internal-server-error",
          503: "500-internal-server-error"}
_ENTRY_TYPES = ("increment", "decrement", "expiration_change", "void", "amendment")
_KEY_SECONDS = KEY_MEMORY.total_seconds()
_DECIMAL = re.compile(r'"\\u0000D([-0-9.E+e]+)"')
_ID_ALPHABET = string.ascii_letters + string.digits


def dumps_exact(value: Any) -> bytes:
    """JSON with every ``Decimal`` written as the exact JSON number of its text."""

    def mark(item: Any) -> Any:
        if isinstance(item, Decimal):
            return "\u0000D" + (f"{item:f}" if item == item.to_integral_value() and
                                abs(item) < 10**18 else str(item))
        if isinstance(item, Mapping):
            return {k: mark(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [mark(v) for v in item]
        if isinstance(item, datetime):
            return item.astimezone(UTC).isoformat()
        return item

    text = json.dumps(mark(value), separators=(",", ":"))
    return _DECIMAL.sub(lambda m: m.group(1), text).encode()


@dataclass
class RecordedRequest:
    """A request the fake handled: method, path (no ``/v1``), query, JSON body (numbers read
    exactly), headers, and the body's bytes as sent."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    raw: bytes = b""


class _ProblemError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class _Block:
    id: str
    customer: str
    currency: str
    seq: int
    initial: Decimal
    balance: Decimal
    effective: datetime
    expiry: datetime | None
    filters: list[dict[str, Any]]
    metadata: dict[str, str]
    cost_basis: str | None
    status: str = "active"

    def json(self) -> dict[str, Any]:
        """``CreditListResponse`` / ``CreditBlockRetrieveResponse`` (``orb/types/…``)."""
        return {"id": self.id, "balance": self.balance, "credit_block_source": "manual",
                "effective_date": self.effective, "expiry_date": self.expiry,
                "filters": [dict(f) for f in self.filters],
                "maximum_initial_balance": self.initial, "metadata": dict(self.metadata),
                "per_unit_cost_basis": self.cost_basis, "status": self.status}

    def affected(self) -> dict[str, Any]:
        """``AffectedBlock`` (``orb/types/customers/credits/affected_block.py``)."""
        return {"id": self.id, "expiry_date": self.expiry,
                "filters": [dict(f) for f in self.filters],
                "per_unit_cost_basis": self.cost_basis}


@dataclass
class _Customer:
    id: str
    external_id: str | None
    currency: str | None
    created: datetime
    name: str = "Sandbox customer"

    def json(self) -> dict[str, Any]:
        """The required fields of ``orb.types.Customer``, plus currency and external id."""
        return {"id": self.id, "external_customer_id": self.external_id,
                "additional_emails": [], "auto_collection": False, "balance": "0.00",
                "created_at": self.created, "currency": self.currency,
                "email": f"{self.id.lower()}@example.invalid", "email_delivery": False,
                "hierarchy": {"children": [], "parent": None}, "metadata": {},
                "name": self.name, "timezone": "UTC"}

    def minified(self) -> dict[str, Any]:
        return {"id": self.id, "external_customer_id": self.external_id}


@dataclass
class _Saved:
    fingerprint: str
    status: int
    body: bytes
    at: float


@dataclass
class OrbFake:
    """A stateful offline Orb. ``api_key`` is the key it accepts (any, when None); ``clock``
    gives the fake's time in Unix seconds (default: the wall clock), ``seed`` its ids."""

    api_key: str | None = None
    seed: int | None = None
    clock: Callable[[], float] = time.time
    requests: list[RecordedRequest] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._offset = 0.0
        self._seq = itertools.count(1)
        self.customers: dict[str, _Customer] = {}
        self._external: dict[str, str] = {}
        self.blocks: dict[str, _Block] = {}
        self.entries: dict[str, list[dict[str, Any]]] = {}
        self._keys: dict[str, _Saved] = {}
        self.conflicts: list[tuple[str, str, str]] = []
        """Each key reused with another payload: (key, first request, this request)."""

    # -- clock, state --------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock() + self._offset, UTC)

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (idempotency keys age, blocks expire)."""
        self._offset += seconds

    def forget_idempotency_keys(self) -> None:
        """Forget every idempotency key now, as Orb does 48 hours after first use."""
        self._keys.clear()

    def _id(self) -> str:
        return "".join(self._random.choice(_ID_ALPHABET) for _ in range(16))

    def add_customer(self, customer_id: str | None = None, *, external_id: str | None = None,
                     currency: str | None = None, name: str = "Sandbox customer") -> str:
        """Create a customer (as ``POST /customers`` would); return its Orb id."""
        ident = customer_id or self._id()
        self.customers[ident] = _Customer(ident, external_id, currency, self.now(), name)
        if external_id is not None:
            self._external[external_id] = ident
        self.entries.setdefault(ident, [])
        return ident

    # -- serving -------------------------------------------------------------------------

    def transport(self, faults: Faults | None = None) -> FakeTransport:
        return FakeTransport(self, faults)

    @contextmanager
    def serve(self, faults: Faults | None = None) -> Iterator[LoopbackServer]:
        with serve(self, faults) as server:
            yield server

    def error(self, status: int, message: str) -> httpx.Response:
        """An error in Orb's shape (the ``type`` URLs of ``orb/_client.py``)."""
        body: dict[str, Any] = {"status": status, "type": _ERRORS + _TYPES.get(
            status, f"{status}-error"), "title": message, "detail": message}
        if status == 400:
            body["validation_errors"] = [message]
        return httpx.Response(status, content=dumps_exact(body),
                              headers={"content-type": "application/json"})

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = urlsplit(str(request.url))
        path = unquote(url.path)
        if path.startswith("/v1/"):
            path = path[3:]
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        raw = request.content
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) != len(raw):
            # The client went away mid-body (a killed process): a server never dispatches such
            # a request, so nothing is executed and no idempotency key is saved.
            return self.error(400, "the request body ended early")
        try:
            body = json.loads(raw, parse_float=Decimal) if raw else None
        except ValueError:
            return self.error(400, "the body is not JSON")
        self.requests.append(RecordedRequest(request.method, path, query, body,
                                             dict(request.headers), raw))
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or (
                self.api_key is not None and auth != f"Bearer {self.api_key}"):
            return self.error(401, "Authentication failed: give a valid API key")
        key = request.headers.get("idempotency-key") if request.method in ("POST", "PATCH") \
            else None
        if key is not None:
            return self._keyed(key, request.method, path, raw, lambda: self._route(
                request.method, path, query, body))
        return self._route(request.method, path, query, body)

    def _keyed(self, key: str, method: str, path: str, raw: bytes,
               run: Callable[[], httpx.Response]) -> httpx.Response:
        """https://docs.withorb.com/reference/idempotency (see the module docstring)."""
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return self.error(400, f"Idempotency-Key is longer than "
                              f"{MAX_IDEMPOTENCY_KEY_LENGTH} characters")
        now = self.clock() + self._offset
        fingerprint = f"{method} {path} {raw!r}"
        saved = self._keys.get(key)
        if saved is not None and now - saved.at >= _KEY_SECONDS:
            del self._keys[key]  # "Keys will expire after 48 hours"
            saved = None
        if saved is not None:
            if saved.fingerprint != fingerprint:
                self.conflicts.append((key, saved.fingerprint, fingerprint))
                return self.error(409, "Idempotency key reused with a different request payload")
            return httpx.Response(saved.status, content=saved.body, headers={
                "content-type": "application/json", "Idempotency-Key": key,
                "Idempotent-Replayed": "true"})
        response = run()
        content = response.read()
        if response.status_code < 500 and response.status_code != 409:
            self._keys[key] = _Saved(fingerprint, response.status_code, content, now)
        return httpx.Response(response.status_code, content=content, headers={
            **dict(response.headers), "Idempotency-Key": key})

    def _ok(self, body: Any, status: int = 200) -> httpx.Response:
        return httpx.Response(status, content=dumps_exact(body),
                              headers={"content-type": "application/json"})

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> httpx.Response:
        self._expire_due()
        parts = [p for p in path.split("/") if p]
        try:
            if parts and parts[0] == "customers":
                return self._customers(method, parts[1:], query, body)
            if len(parts) == 2 and parts[0] == "credit_blocks":
                return self._credit_block(method, parts[1], body)
        except _ProblemError as problem:
            return self.error(problem.status, problem.detail)
        return self.error(404, f"no route {method} {path}")

    # -- customers ---------------------------------------------------------------------

    def _customer(self, parts: list[str]) -> tuple[_Customer, list[str]]:
        if len(parts) >= 2 and parts[0] == "external_customer_id":
            ident = self._external.get(parts[1])
            rest = parts[2:]
        else:
            ident, rest = parts[0], parts[1:]
        customer = self.customers.get(ident or "")
        if customer is None:
            raise _ProblemError(404, f"customer {parts[:2]} not found")
        return customer, rest

    def _customers(self, method: str, parts: list[str], query: dict[str, str],
                   body: Any) -> httpx.Response:
        if not parts:
            if method == "GET":
                items = sorted(self.customers.values(), key=lambda c: c.created)
                return self._page([c.json() for c in items], query, key=lambda c: c["id"])
            if method == "POST":
                if not isinstance(body, Mapping) or not body.get("name") or not body.get("email"):
                    # CustomerCreateParams: email and name are Required
                    raise _ProblemError(400, "email and name are required")
                ident = self.add_customer(external_id=body.get("external_customer_id"),
                                          currency=body.get("currency"), name=body["name"])
                return self._ok(self.customers[ident].json())
        customer, rest = self._customer(parts)
        if not rest and method == "GET":
            return self._ok(customer.json())
        if rest == ["credits"] and method == "GET":
            return self._list_blocks(customer, query)
        if rest == ["credits", "ledger"] and method == "GET":
            return self._list_entries(customer, query)
        if rest == ["credits", "ledger_entry"] and method == "POST":
            return self._ok(self._create_entry(customer, body))
        return self.error(404, "no such route")

    # -- pages ---------------------------------------------------------------------------

    def _limit(self, query: Mapping[str, str]) -> int:
        text = query.get("limit", "20")  # "The number of items to fetch. Defaults to 20."
        if not text.isdigit() or not 1 <= int(text) <= 100:
            raise _ProblemError(400, f"limit must be 1-100, not {text!r}")
        return int(text)

    def _page(self, items: list[dict[str, Any]], query: Mapping[str, str],
              key: Callable[[dict[str, Any]], str]) -> httpx.Response:
        limit = self._limit(query)
        cursor = query.get("cursor")
        start = 0
        if cursor:
            ids = [key(i) for i in items]
            if cursor not in ids:
                raise _ProblemError(400, "cursor is not valid")
            start = ids.index(cursor) + 1
        page = items[start:start + limit]
        more = start + limit < len(items)
        return self._ok({"data": page, "pagination_metadata": {
            "has_more": more, "next_cursor": key(page[-1]) if more and page else None}})

    def _currency(self, query: Mapping[str, str]) -> str:
        # "Note that `currency` defaults to credits if not specified" (credits.py, list)
        return query.get("currency") or "credits"

    def _list_blocks(self, customer: _Customer, query: Mapping[str, str]) -> httpx.Response:
        currency = self._currency(query)
        every = query.get("include_all_blocks", "false") == "true"
        now = self.now()
        blocks = [b for b in sorted(self.blocks.values(), key=lambda b: b.seq)
                  if b.customer == customer.id and b.currency == currency
                  # "Returns a paginated list of unexpired, non-zero credit blocks"; with
                  # include_all_blocks "all credit blocks (including expired and depleted)"
                  and (every or (b.balance != 0 and (b.expiry is None or b.expiry > now)))]
        return self._page([b.json() for b in blocks], query, key=lambda b: b["id"])

    def _list_entries(self, customer: _Customer, query: Mapping[str, str]) -> httpx.Response:
        currency = self._currency(query)
        kind = query.get("entry_type")
        since = query.get("created_at[gte]")
        low = _parse_time(since, "created_at[gte]") if since else None
        entries = [e for e in reversed(self.entries.get(customer.id, []))  # most recent first
                   if e["currency"] == currency and (kind is None or e["entry_type"] == kind)
                   and (low is None or e["created_at"] >= low)]
        return self._page(entries, query, key=lambda e: e["id"])

    # -- credit blocks -------------------------------------------------------------------

    def _credit_block(self, method: str, block_id: str, body: Any) -> httpx.Response:
        block = self.blocks.get(block_id)
        if block is None:
            raise _ProblemError(404, f"credit block {block_id} not found")
        if method == "GET":
            return self._ok(block.json())
        if method == "PUT":
            # "Keys you pass are added to the block's existing metadata or overwrite the value
            # ..., and setting a key to null removes it. Passing null for metadata clears all"
            # (orb/resources/credit_blocks.py, update)
            if not isinstance(body, Mapping) or "metadata" not in body:
                raise _ProblemError(400, "metadata is required")
            metadata = body["metadata"]
            if metadata is None:
                block.metadata.clear()
            elif isinstance(metadata, Mapping):
                for key, value in metadata.items():
                    if value is None:
                        block.metadata.pop(key, None)
                    elif isinstance(value, str):
                        block.metadata[key] = value
                    else:
                        raise _ProblemError(400, f"metadata.{key} must be a string or null")
            else:
                raise _ProblemError(400, "metadata must be an object or null")
            self._sync_metadata(block)
            return self._ok(block.json())
        return self.error(404, "no such route")

    def _sync_metadata(self, block: _Block) -> None:
        """"The block's increment entry in the credits ledger reports the block's metadata,
        so it shows the update too" (credit_blocks.py, update)."""
        for entry in self.entries.get(block.customer, []):
            if entry["entry_type"] == "increment" and entry["credit_block"]["id"] == block.id:
                entry["metadata"] = dict(block.metadata)

    # -- ledger entries ------------------------------------------------------------------

    def _balance(self, customer: str, currency: str) -> Decimal:
        """The customer's eligible balance: effective, unexpired blocks ("the total eligible
        starting and ending balance for the customer", ledger.py, list)."""
        now = self.now()
        return sum((b.balance for b in self.blocks.values()
                    if b.customer == customer and b.currency == currency
                    and b.effective <= now and (b.expiry is None or b.expiry > now)), Decimal(0))

    def _entry(self, customer: _Customer, kind: str, block: _Block, amount: Decimal,
               before: Decimal, body: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        entry = {
            "id": self._id(), "amount": amount, "created_at": self.now(),
            "credit_block": block.affected(), "currency": block.currency,
            "customer": customer.minified(), "description": body.get("description"),
            "ending_balance": self._balance(customer.id, block.currency),
            "entry_status": "committed", "entry_type": kind,
            "ledger_sequence_number": next(self._seq),
            "metadata": {k: v for k, v in (body.get("metadata") or {}).items() if v is not None},
            "starting_balance": before, **extra,
        }
        self.entries.setdefault(customer.id, []).append(entry)
        return entry

    def _create_entry(self, customer: _Customer, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise _ProblemError(400, "the body must be a JSON object")
        kind = body.get("entry_type")
        if kind not in _ENTRY_TYPES:  # LedgerCreateEntryParams: the five entry types
            raise _ProblemError(400, f"entry_type must be one of {', '.join(_ENTRY_TYPES)}")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, Mapping) or not all(
                isinstance(k, str) and (v is None or isinstance(v, str))
                for k, v in metadata.items())):
            raise _ProblemError(400, "metadata: Dict[str, Optional[str]]")
        if kind != "increment":
            for name in ("per_unit_cost_basis", "invoice_settings", "filters"):
                if body.get(name) is not None:
                    # "Can only be specified when entry_type=increment" (per_unit_cost_basis)
                    raise _ProblemError(400, f"{name} can only be given with entry_type=increment")
        currency = body.get("currency") or "credits"
        if not isinstance(currency, str):
            raise _ProblemError(400, "currency must be a string")
        if kind == "increment":
            return self._increment(customer, body, currency)
        if kind == "decrement":
            return self._decrement(customer, body, currency)
        block = self._target_block(customer, body, currency)
        if kind == "void":
            return self._void(customer, block, body)
        if kind == "amendment":
            return self._amend(customer, block, body)
        return self._expiration_change(customer, block, body)

    def _amount(self, body: Mapping[str, Any], *, required: bool = True) -> Decimal | None:
        value = body.get("amount")
        if value is None and not required:
            return None
        # amount: Required[float] for increment, decrement, void, amendment
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise _ProblemError(400, "amount must be a number")
        amount = Decimal(value)
        if amount <= 0:  # fake's model: Orb documents no sign rule; a non-positive one is refused
            raise _ProblemError(400, "amount must be greater than 0")
        return amount

    def _increment(self, customer: _Customer, body: Mapping[str, Any],
                   currency: str) -> dict[str, Any]:
        amount = self._amount(body)
        assert amount is not None
        if is_iso_currency(currency):
            # "If this is a real-world currency, it must match the customer's invoicing
            # currency" (ledger_create_entry_params.py, currency)
            if customer.currency is None:
                customer.currency = currency  # fake's model
            elif customer.currency != currency:
                raise _ProblemError(400, f"currency {currency} does not match the customer's "
                               f"currency {customer.currency}")
        basis_text = body.get("per_unit_cost_basis")
        basis: Decimal | None = None
        if basis_text is not None:
            if not isinstance(basis_text, str):  # per_unit_cost_basis: Optional[str]
                raise _ProblemError(400, "per_unit_cost_basis must be a string")
            try:
                basis = Decimal(basis_text)
            except InvalidOperation:
                raise _ProblemError(400, "per_unit_cost_basis is not a number") from None
            if not basis.is_finite() or basis < 0:
                raise _ProblemError(400, "per_unit_cost_basis must be 0 or more")
        settings = body.get("invoice_settings")
        if basis is not None and basis > 0 and settings is None:
            # "if per_unit_cost_basis is greater than zero, an invoice will be generated and
            # invoice_settings must be included" (ledger.py, create_entry)
            raise _ProblemError(400, "invoice_settings must be included when per_unit_cost_basis "
                           "is greater than zero")
        invoice = None
        if settings is not None:
            invoice = self._invoice_settings(settings, basis)
        filters = body.get("filters") or []
        if not isinstance(filters, list) or not all(_item_filter(f) for f in filters):
            # AddIncrementCreditLedgerEntryRequestParamsFilter: field "item_id" only,
            # operator includes/excludes, values a list of strings
            raise _ProblemError(400, "filters: each needs field item_id, operator includes or "
                           "excludes, and values")
        now = self.now()
        effective = _date(body.get("effective_date"), "effective_date") or _midnight(now)
        expiry = _date(body.get("expiry_date"), "expiry_date")
        if expiry is not None and expiry <= effective:
            raise _ProblemError(400, "expiry_date must be after effective_date")
        block = _Block(
            id=self._id(), customer=customer.id, currency=currency, seq=next(self._seq),
            initial=amount, balance=Decimal(0), effective=effective, expiry=expiry,
            filters=[{"field": f["field"], "operator": f["operator"],
                      "values": list(f["values"])} for f in filters],
            metadata={k: v for k, v in (body.get("metadata") or {}).items() if v is not None},
            cost_basis=basis_text,
            status="pending_payment" if invoice is not None and invoice["require_payment"]
            else "active")
        before = self._balance(customer.id, currency)
        left = amount
        # "by default, Orb will always first increment any negative balance in existing
        # blocks before adding the remaining amount to the desired credit block"
        # (https://docs.withorb.com/reference/create-ledger-entry-external-id)
        for other in sorted(self.blocks.values(), key=lambda b: b.seq):
            if other.customer == customer.id and other.currency == currency and other.balance < 0:
                taken = min(-other.balance, left)
                other.balance += taken
                left -= taken
        block.balance = left
        self.blocks[block.id] = block
        created: list[dict[str, Any]] | None = None
        if invoice is not None:
            assert basis is not None
            created = [self._make_invoice(customer, block, basis * amount, invoice)]
        return self._entry(customer, "increment", block, amount, before, body,
                           created_invoices=created)

    def _invoice_settings(self, settings: Any, basis: Decimal | None) -> dict[str, Any]:
        if basis is None:
            # "If invoice_settings is passed, you must specify per_unit_cost_basis"
            raise _ProblemError(400, "per_unit_cost_basis is required with invoice_settings")
        if not isinstance(settings, Mapping) or not isinstance(settings.get("auto_collection"),
                                                                bool):
            # auto_collection: Required[bool]
            raise _ProblemError(400, "invoice_settings.auto_collection is required")
        terms, due = settings.get("net_terms"), settings.get("custom_due_date")
        if (terms is None) == (due is None):
            # "You must set either net_terms or custom_due_date, but not both"
            raise _ProblemError(400, "invoice_settings: give net_terms or custom_due_date, not both")
        if terms is not None and (isinstance(terms, bool) or not isinstance(terms, int)
                                  or terms < 0):
            raise _ProblemError(400, "invoice_settings.net_terms must be a whole number ≥ 0")
        for flag in ("mark_as_paid", "require_successful_payment"):
            if settings.get(flag) is not None and not isinstance(settings.get(flag), bool):
                raise _ProblemError(400, f"invoice_settings.{flag} must be a boolean")
        return {"auto_collection": settings["auto_collection"],
                "mark_as_paid": bool(settings.get("mark_as_paid", False)),
                "require_payment": bool(settings.get("require_successful_payment", False))}

    def _make_invoice(self, customer: _Customer, block: _Block, total: Decimal,
                      settings: Mapping[str, Any]) -> dict[str, Any]:
        """The invoice for a paid increment: ``paid`` when ``mark_as_paid`` ("the new credits
        purchase invoice will be marked as paid"), else ``issued`` (to be collected). The
        required fields of ``orb.types.shared.Invoice``; no line items (fake's model)."""
        now = self.now()
        paid = settings["mark_as_paid"]
        text = f"{total:f}"
        invoice = {
            "id": self._id(), "amount_due": "0.00" if paid else text,
            "auto_collection": {"enabled": settings["auto_collection"], "next_attempt_at": None,
                                "num_attempts": None, "previously_attempted_at": None},
            "created_at": now, "credit_notes": [], "currency": block.currency,
            "customer": customer.minified(), "customer_balance_transactions": [],
            "discount": None, "discounts": [], "hidden_line_item_count": 0,
            "invoice_date": now, "invoice_number": f"INV-{len(self.invoices) + 1:05d}",
            "invoice_source": "one_off", "line_items": [], "metadata": {"credit_block": block.id},
            "payment_attempts": [], "status": "paid" if paid else "issued",
            "paid_at": now if paid else None, "subtotal": text, "total": text,
            "will_auto_issue": False,
        }
        self.invoices.append(invoice)
        return invoice

    def _eligible(self, customer: str, currency: str) -> list[_Block]:
        """Blocks a decrement draws on, in Orb's order: "deducts from the soonest expiring
        credit block first ... If there are multiple blocks with the same expiration date, Orb
        will deduct from the block with the lower cost basis first" (ledger.py, list);
        non-expiring blocks last ("ending at the credit block which consists of unexpiring
        credits"). Fake's model: blocks with item filters are not drawn on by a decrement
        (it names no item), and remaining ties go by block id (Orb documents none; the
        consumption engine breaks them the same way and reports each)."""
        now = self.now()
        blocks = [b for b in self.blocks.values()
                  if b.customer == customer and b.currency == currency and not b.filters
                  and b.status == "active" and b.effective <= now
                  and (b.expiry is None or b.expiry > now)]
        return sorted(blocks, key=lambda b: (
            b.expiry is None, b.expiry or now, Decimal(b.cost_basis or 0), b.id))

    def _decrement(self, customer: _Customer, body: Mapping[str, Any],
                   currency: str) -> dict[str, Any]:
        amount = self._amount(body)
        assert amount is not None
        blocks = self._eligible(customer.id, currency)
        if not blocks:
            raise _ProblemError(400, "no credit block to deduct from")  # fake's model
        left = amount
        last: dict[str, Any] | None = None
        for i, block in enumerate(blocks):
            final = i == len(blocks) - 1
            # "the customer's total credit balance in Orb can be negative as a result of a
            # decrement": the last block takes what the others cannot (fake's model of where)
            taken = left if final else min(left, max(block.balance, Decimal(0)))
            if taken <= 0:
                continue
            before = self._balance(customer.id, currency)
            block.balance -= taken
            left -= taken
            # "Each of these deductions will lead to a separate ledger entry, one per credit
            # block that is deducted from" (ledger.py, list)
            last = self._entry(customer, "decrement", block, taken, before, body,
                               event_id=None, invoice_id=None, price_id=None)
            if left == 0:
                break
        assert last is not None
        return last  # "the response from this endpoint will be the final deduction"

    def _target_block(self, customer: _Customer, body: Mapping[str, Any],
                      currency: str) -> _Block:
        block_id = body.get("block_id")
        kind = body["entry_type"]
        if block_id is None and kind in ("void", "amendment"):
            raise _ProblemError(400, "block_id is required")  # block_id: Required[str]
        if block_id is None:
            # expiration_change: "expiry_date identifies the originating block"
            expiry = _date(body.get("expiry_date"), "expiry_date")
            found = [b for b in self.blocks.values() if b.customer == customer.id
                     and b.currency == currency and b.expiry == expiry]
            if len(found) != 1:
                raise _ProblemError(400, "give block_id: expiry_date names no single block")
            return found[0]
        block = self.blocks.get(block_id) if isinstance(block_id, str) else None
        if block is None or block.customer != customer.id:
            raise _ProblemError(404, f"credit block {block_id} not found for this customer")
        if block.currency != currency:
            raise _ProblemError(400, f"block {block.id} is in {block.currency}, not {currency}")
        return block

    def _void(self, customer: _Customer, block: _Block, body: Mapping[str, Any]) -> dict[str, Any]:
        amount = self._amount(body)
        assert amount is not None
        reason = body.get("void_reason")
        if reason not in (None, "refund"):  # void_reason: Optional[Literal["refund"]]
            raise _ProblemError(400, "void_reason must be refund")
        if amount > block.balance:
            # "amount indicates how many credits to void, up to the block's initial balance";
            # fake's model: no more than what is left
            raise _ProblemError(400, f"amount {amount} exceeds the block's balance {block.balance}")
        before = self._balance(customer.id, block.currency)
        block.balance -= amount
        return self._entry(customer, "void", block, amount, before, body,
                           void_amount=amount, void_reason=reason)

    def _amend(self, customer: _Customer, block: _Block, body: Mapping[str, Any]) -> dict[str, Any]:
        amount = self._amount(body)
        assert amount is not None
        if block.balance + amount > block.initial:
            # "how many credits to return to the customer, up to the block's initial balance"
            raise _ProblemError(400, "amendment beyond the block's initial balance")
        before = self._balance(customer.id, block.currency)
        block.balance += amount
        return self._entry(customer, "amendment", block, amount, before, body)

    def _expiration_change(self, customer: _Customer, block: _Block,
                           body: Mapping[str, Any]) -> dict[str, Any]:
        target_text = body.get("target_expiry_date")
        if not isinstance(target_text, str):
            # target_expiry_date: Required[...] "(specified in YYYY-MM-DD format)"
            raise _ProblemError(400, "target_expiry_date is required (YYYY-MM-DD)")
        try:
            target = datetime.combine(date.fromisoformat(target_text), datetime.min.time(), UTC)
        except ValueError:
            raise _ProblemError(400, "target_expiry_date must be YYYY-MM-DD") from None
        if target < block.effective:
            # "This date must be on or after the effective date of the credit block"
            raise _ProblemError(400, "target_expiry_date is before the block's effective date")
        amount = self._amount(body, required=False)
        before = self._balance(customer.id, block.currency)
        if amount is None:  # fake's model: the whole block, in place
            moved = block.balance
            block.expiry = target
            entry = self._entry(customer, "expiration_change", block, moved, before, body,
                                new_block_expiry_date=target)
        else:
            if amount > block.balance:
                # "the balance of the block ... must be at least equal to the desired transfer
                # amount"
                raise _ProblemError(400, "amount exceeds the block's balance")
            block.balance -= amount
            # "A new credit block will be created with expiry date target_expiry_date, with
            # the same cost basis data as the original credit block"
            new = _Block(id=self._id(), customer=customer.id, currency=block.currency,
                         seq=next(self._seq), initial=amount, balance=amount,
                         effective=block.effective, expiry=target, filters=block.filters,
                         metadata={}, cost_basis=block.cost_basis)
            self.blocks[new.id] = new
            entry = self._entry(customer, "expiration_change", block, amount, before, body,
                                new_block_expiry_date=target)
        self._expire_due()
        return entry

    def _expire_due(self) -> None:
        """A block past its expiry loses what is left, in a ``credit_block_expiry`` entry."""
        now = self.now()
        for block in sorted(self.blocks.values(), key=lambda b: b.seq):
            if block.expiry is not None and block.expiry <= now and block.balance > 0:
                customer = self.customers[block.customer]
                left = block.balance
                before = self._balance(customer.id, block.currency) + left
                block.balance = Decimal(0)
                entry = self._entry(customer, "credit_block_expiry", block, left, before,
                                    {"description": "credits expired"})
                entry["created_at"] = max(block.expiry, block.effective)

    # -- usage (what a meter would do) -------------------------------------------------

    def balance(self, customer_id: str, currency: str) -> Decimal:
        """The customer's eligible balance now (for tests)."""
        self._expire_due()
        return self._balance(customer_id, currency)


def _item_filter(item: Any) -> bool:
    return (isinstance(item, Mapping) and item.get("field") == "item_id"
            and item.get("operator") in ("includes", "excludes")
            and isinstance(item.get("values"), list)
            and all(isinstance(v, str) for v in item["values"]))


def _parse_time(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _ProblemError(400, f"{where} is not an ISO 8601 date") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _date(value: Any, where: str) -> datetime | None:
    """An ISO 8601 date or date-time ("An ISO 8601 format date"), held as its UTC day
    (fake's model of Orb's date resolution)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _ProblemError(400, f"{where} must be an ISO 8601 string")
    return _midnight(_parse_time(value, where))



