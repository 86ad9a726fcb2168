"""The Orb provider's flows over the official ``orb-billing`` SDK: each operation written once.

Transport only: every Orb shape is built and read by ``_translate``. Every SDK call goes through
``_call``, which turns it into a ``billing_credits.Call`` (sync and async, from one pair of
SDK method references) and maps every SDK error onto the core hierarchy, so retries and the
rate limit live in one place, the core ``Runtime``; the SDK's own retries are off
(``max_retries=0``). Calls use the SDK's ``with_raw_response`` methods: the SDK builds and
sends the request (its parameter transforms, headers, ``Idempotency-Key``), and the body is
parsed here from its raw text with ``parse_float=Decimal``, so no amount passes through a float.

The SDK and httpx are imported on first use (constructing a provider), not with this module:
the class, its settings and capabilities load without them (``billing-credits providers``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import billing_credits as bc
import billing_credits_orb._translate as tr

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_BASE_URL", "OrbProvider", "map_error"]

DEFAULT_BASE_URL = "https://api.withorb.com/v1"
"""The SDK's default (``orb/_client.py``)."""
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_RATE = 10.0
"""Orb publishes no numeric API rate limit (https://docs.withorb.com/api-reference asks for
notice before an order-of-magnitude change; test-mode ingestion is documented at about 10
requests per second, https://apis.io/rate-limits/orb-billing/orb-billing-rate-limits/): 10/s
is a conservative default; ``rate_limit`` changes it."""
PAGE = 100
USAGE_REFERENCE = "bc_usage_reference"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _now() -> datetime:
    return datetime.now(UTC)


class _Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    return value if isinstance(value, str) else None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def map_error(error: Exception) -> bc.ProviderError:
    """An ``orb`` SDK error as the core error: status, body, Orb's error ``type`` as ``code``,
    the request id; ``retryable`` per Orb's documented rules.

    - 409 "resource conflict": a concurrent request with the same key ("Retrying these
      requests should be safe") or the same key with another payload
      (https://docs.withorb.com/reference/idempotency): retryable, bounded by the runtime;
    - 5xx carrying ``Transient-Error: true`` ("can be safely retried, and clients can reuse the
      same idempotency key within 48 hours", same page), and every other 5xx and 429;
    - a connection failure or timeout: retryable (the create carries its idempotency key).
    """
    import orb

    name = tr.PROVIDER_NAME
    if isinstance(error, orb.APIStatusError):
        response = error.response
        status = error.status_code
        body: Any = error.body
        details = body if isinstance(body, Mapping) else {}
        kind = details.get("type")
        code = kind.rsplit("#", 1)[-1] if isinstance(kind, str) else None
        detail = details.get("detail") or details.get("title") or error.message
        text = f"Orb: {bc.excerpt(str(detail), 300)}"
        request_id = _header(response.headers, "x-request-id") or _header(
            response.headers, "request-id")
        common: dict[str, Any] = {"provider": name, "status": status,
                                  "body": bc.excerpt(body) if not isinstance(body, Mapping)
                                  else body, "request_id": request_id, "code": code}
        if status == 429:
            return bc.RateLimitedError(
                text, retry_after=_retry_after(_header(response.headers, "retry-after")), **common)
        if status == 409:
            return bc.ConflictError(text, retryable=True, **common)
        mapped = bc.error_class_for_status(status)(text, **common)
        if status >= 500:
            mapped.retryable = True
        return mapped
    if isinstance(error, orb.APIConnectionError):
        return bc.UnavailableError(f"Orb could not be reached: {type(error).__name__}",
                                   provider=name, retryable=True)
    return bc.InvalidResponseError(
        f"Orb's answer could not be read: {type(error).__name__}: "
        f"{bc.excerpt(' '.join(str(error).split()), 300)}", provider=name)


class _RedactedLog(logging.Filter):
    """Masks secrets in the orb SDK's own log records (it logs request options and URLs at
    debug level; a vendor or proxy may echo the key)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = bc.redact(record.getMessage())
        record.args = None
        return True


logging.getLogger("orb").addFilter(_RedactedLog())


@dataclass(frozen=True)
class Answer:
    """A 2xx from Orb: the JSON decoded exactly, its request id and ``Idempotent-Replayed``."""

    data: Any
    request_id: str | None
    replayed: bool

    def invalid(self, problem: str) -> bc.InvalidResponseError:
        return bc.InvalidResponseError(
            f"Orb answered with something unusable: {problem}", provider=tr.PROVIDER_NAME,
            status=200, body=bc.excerpt(self.data), request_id=self.request_id)

    def mapping(self) -> Mapping[str, Any]:
        if not isinstance(self.data, Mapping):
            raise self.invalid(f"expected a JSON object, got {type(self.data).__name__}")
        return self.data

    def page(self) -> tuple[list[Any], str | None]:
        """A paginated answer's ``data`` and next cursor (``pagination_metadata``:
        https://docs.withorb.com/api-reference/pagination, ``orb/pagination.py``)."""
        data = self.mapping()
        items = data.get("data")
        meta = data.get("pagination_metadata")
        if not isinstance(items, list) or not isinstance(meta, Mapping):
            raise self.invalid("a page needs data (a list) and pagination_metadata")
        more = meta.get("has_more")
        cursor = meta.get("next_cursor")
        if not isinstance(more, bool) or (more and not (isinstance(cursor, str) and cursor)):
            raise self.invalid(f"pagination_metadata {bc.excerpt(meta, 120)} is not usable")
        return items, cursor if more else None


def _answer(raw: Any) -> Answer:
    """A raw SDK response (``with_raw_response``) read exactly."""
    response = raw.http_response
    headers = response.headers
    content = response.content
    try:
        # a page's items marked as checked text: a grant read from one keeps it as ``raw``
        data = bc.decode_vendor_json(content, parse_float=Decimal) if content else None
    except (ValueError, UnicodeDecodeError):
        raise bc.InvalidResponseError(
            f"Orb answered {response.status_code} with a body that is not JSON: "
            f"{bc.excerpt(content.decode('utf-8', 'replace'))}", provider=tr.PROVIDER_NAME,
            status=response.status_code, request_id=_header(headers, "x-request-id")) from None
    return Answer(data, _header(headers, "x-request-id") or _header(headers, "request-id"),
                  (_header(headers, "idempotent-replayed") or "").lower() == "true")


def _flag(name: str, value: bool | str | None, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower() if isinstance(value, str) else None
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bc.ConfigurationError(f"setting {name} must be on/off (true/false, 1/0), got {value!r}")


def _number(name: str, value: float | int | str | None, default: float, *,
            integer: bool = False) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise bc.ConfigurationError(f"setting {name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise bc.ConfigurationError(f"setting {name} must be a finite number ≥ 0, got {value!r}")
    if integer and number != int(number):
        raise bc.ConfigurationError(f"setting {name} must be a whole number, got {value!r}")
    return number


def _choice(name: str, value: str | None, choices: tuple[str, ...]) -> str:
    chosen = (value or choices[0]).strip().lower()
    if chosen not in choices:
        raise bc.ConfigurationError(f"setting {name} must be one of {', '.join(choices)}, "
                                    f"got {value!r}")
    return chosen


def _usage_key(reference: str) -> str:
    return "bc-usage-" + hashlib.sha256(reference.encode()).hexdigest()[:55]


class OrbProvider(bc.Provider):
    """Orb prepaid credit blocks (credits ledger) through the official ``orb-billing`` SDK."""

    name = tr.PROVIDER_NAME
    capabilities = bc.Capabilities(
        currencies=None,
        custom_units=False,
        amount_float64=True,
        priority=tr.NO_PRIORITY,
        scope_kinds=frozenset({"product_ids"}),
        max_segments=1,
        time_resolution=tr.DAY,
        idempotency_key_memory=tr.KEY_MEMORY,
        metadata=bc.MetadataLimits(reserved_prefix=tr.RESERVED_PREFIX),
        fields_in_metadata=frozenset({"name", "reason", "category", "category_label",
                                      "idempotency_key"}),
        operations=bc.ALL_OPERATIONS,
        invoices_paid_amount=False,
        balance_as_of="now",
        updatable_fields=frozenset({"expires_at", "metadata"}),
        notes=(
            "one grant is one credit block (made by an increment ledger entry); the grant id "
            "is the block id",
            "no priority: Orb deducts from the soonest-expiring block, then the lower cost "
            "basis (priority=record keeps a priority in metadata only, reported)",
            "paid_amount is per_unit_cost_basis × amount; a paid increment's invoice is marked "
            "paid unless invoice=on",
            "dates in whole UTC days, then aligned to the customer's local days (its Orb "
            "timezone) in the safe direction, each move reported; scope: item ids (an item_id "
            "includes filter)",
            "Orb forgets idempotency keys after 48 h: a keyed create first pages the "
            "customer's blocks for one carrying the key (find_existing=off skips it)",
            "listing, balance and ledger read the customer (GET /customers/{id}) for its "
            "currency: one request, cached per provider",
            "void: a void entry for the block's balance, then bc_voided_at metadata; expire and "
            "update(expires_at): an expiration_change of the whole block",
            "consume: a decrement (refused beyond the usable balance, which Orb would let go "
            "negative); usage naming a product is refused (a decrement names no item)",
        ),
    )
    consumption_order = tr.ORB_ORDER
    remaining_source = ("credit block balance (GET /customers/{id}/credits, "
                        "GET /credit_blocks/{id}); zero once voided or expired")
    settings = (
        bc.Setting("api_key", "Orb API key", env="ORB_API_KEY", secret=True),
        bc.Setting("base_url", f"API base URL (default {DEFAULT_BASE_URL})", env="ORB_BASE_URL"),
        bc.Setting("customer_ids", "how customer ids are meant: orb (Orb's customer id, "
                   "default) or external (your external_customer_id)", env="ORB_CUSTOMER_IDS"),
        bc.Setting("priority", "refuse (default: a grant with a priority is refused) or "
                   "record (kept in metadata only, reported as an adjustment)",
                   env="ORB_PRIORITY"),
        bc.Setting("invoice", "on: a paid increment makes an invoice Orb collects; off "
                   "(default): the invoice is marked paid (payment happened elsewhere)"),
        bc.Setting("net_terms", "invoice net terms in days when invoice=on (default 30)"),
        bc.Setting("timeout", f"seconds per request (default {DEFAULT_TIMEOUT:g})"),
        bc.Setting("max_retries", f"retries after the first attempt (default "
                   f"{DEFAULT_MAX_RETRIES})"),
        bc.Setting("rate_limit", f"requests per second (default {DEFAULT_RATE:g})"),
        bc.Setting("find_existing", "before a keyed create, look for a block carrying the key, "
                   "since Orb forgets keys after 48 h (default on)"),
        bc.Setting("http_client", "an httpx.Client to send sync requests through"),
        bc.Setting("async_http_client", "an httpx.AsyncClient to send async requests through"),
    )

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        customer_ids: str | None = None,
        priority: str | None = None,
        invoice: bool | str | None = None,
        net_terms: int | str | None = None,
        timeout: float | str | None = None,
        max_retries: int | str | None = None,
        rate_limit: float | str | None = None,
        find_existing: bool | str | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = _now,
        runtime: bc.Runtime | None = None,
    ) -> None:
        key = api_key or os.environ.get("ORB_API_KEY")
        if not key or not isinstance(key, str):
            raise bc.ConfigurationError(
                "the orb provider needs an API key: pass api_key=... or set ORB_API_KEY")
        bc.register_secret(key)
        retries = int(_number("max_retries", max_retries, DEFAULT_MAX_RETRIES, integer=True))
        rate = _number("rate_limit", rate_limit, DEFAULT_RATE) or None
        super().__init__(runtime=runtime or bc.Runtime(
            retry=bc.RetryPolicy(attempts=retries + 1), rate_limit=bc.RateLimit(rate)))
        self._api_key = _Secret(key)
        self.base_url = bc.check_base_url(
            (base_url or os.environ.get("ORB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            credential=True)
        self.customer_ids = _choice("customer_ids", customer_ids or os.environ.get(
            "ORB_CUSTOMER_IDS"), ("orb", "external"))
        self.priority_policy: tr.PriorityPolicy = _choice(  # type: ignore[assignment]
            "priority", priority or os.environ.get("ORB_PRIORITY"), ("refuse", "record"))
        self.invoice = _flag("invoice", invoice, default=False)
        self.net_terms = int(_number("net_terms", net_terms, 30, integer=True))
        self.timeout = _number("timeout", timeout, DEFAULT_TIMEOUT)
        self.find_existing_before_create = _flag("find_existing", find_existing, default=True)
        self._clock = clock
        self._currencies: dict[str, str | None] = {}
        self._timezones: dict[str, str] = {}
        caps = type(self).capabilities
        if self.priority_policy == "record":
            caps = replace(caps, priority=bc.ANY_DECIMAL,
                           fields_in_metadata=caps.fields_in_metadata | {"priority"})
        if self.invoice:
            caps = replace(caps, invoices_paid_amount=True)
        self.capabilities = caps
        # The SDK and httpx load here, on first use, not when the class is imported.
        import httpx
        import orb

        self._http = http_client
        self._ahttp = async_http_client or httpx.AsyncClient(
            limits=httpx.Limits(max_keepalive_connections=0))
        self._owns_ahttp = async_http_client is None
        self.client = orb.Orb(api_key=key, base_url=self.base_url, max_retries=0,
                              timeout=self.timeout, http_client=http_client)
        self.aclient = orb.AsyncOrb(api_key=key, base_url=self.base_url, max_retries=0,
                                    timeout=self.timeout, http_client=self._ahttp)

    def record_only(self) -> OrbProvider:
        """This provider with ``invoice`` off: a paid increment's invoice is marked paid, so
        credit paid for elsewhere is never billed again (migration creates through it)."""
        if not self.invoice:
            return self
        copy = object.__new__(OrbProvider)
        copy.__dict__.update(self.__dict__)
        copy.invoice = False
        copy.capabilities = replace(self.capabilities, invoices_paid_amount=False)
        return copy

    def preview(self, grant: bc.CreditGrant) -> list[bc.Adjustment]:
        """A recorded priority does not order consumption on Orb: say so before creating."""
        if grant.priority is not None and self.priority_policy == "record":
            return [bc.Adjustment(field="priority", requested=str(grant.priority), stored=None,
                                  reason=tr.PRIORITY_RECORDED)]
        return []

    def identity(self) -> str:
        digest = hashlib.sha256(self._api_key.reveal().encode()).hexdigest()[:12]
        return f"orb:{self.base_url}:{self.customer_ids}:{digest}"

    def __repr__(self) -> str:
        return f"<OrbProvider base_url={self.base_url!r} customer_ids={self.customer_ids}>"

    def close(self) -> None:
        if self._http is None:  # the SDK's own client; a caller's client is the caller's
            self.client.close()

    async def aclose(self) -> None:
        self.close()
        if self._owns_ahttp:
            await self.aclient.close()

    def check(self, grant: bc.CreditGrant) -> None:
        """The declared capabilities, then Orb's own rules (``_translate.problems``)."""
        super().check(grant)
        if found := tr.problems(grant):
            raise bc.NotRepresentableError(self.name, found)
        tr.increment_params(grant, policy=self.priority_policy, invoice=self.invoice,
                            net_terms=self.net_terms)

    # -- calls ---------------------------------------------------------------------------

    def _call(self, label: str, sync: Callable[[Any], Any], async_: Callable[[Any], Any], *,
              retry_safe: bool = True) -> bc.Call[Answer]:
        """One SDK call, given as a function of the sync client and one of the async client
        (each calling the same ``with_raw_response`` method), as a core ``Call``. SDK errors
        become core errors raised outside the ``except`` block."""
        import orb

        client, aclient = self.client, self.aclient

        def run() -> Answer:
            try:
                return _answer(sync(client))
            except bc.ProviderError as error:
                mapped = error.with_traceback(None)
            except orb.OrbError as error:
                mapped = map_error(error)
            raise mapped

        async def arun() -> Answer:
            try:
                return _answer(await async_(aclient))
            except bc.ProviderError as error:
                mapped = error.with_traceback(None)
            except orb.OrbError as error:
                mapped = map_error(error)
            raise mapped

        return bc.Call(run, arun, retry_safe=retry_safe, label=label)

    def _ledger_entry(self, customer_id: str, params: Mapping[str, Any], key: str,
                      label: str) -> bc.Call[Answer]:
        """``POST …/credits/ledger_entry`` (by Orb id or external id) with ``Idempotency-Key``."""
        args = dict(params)
        if self.customer_ids == "external":
            return self._call(
                label,
                lambda c: c.customers.credits.ledger.with_raw_response.create_entry_by_external_id(
                    customer_id, **args, idempotency_key=key),
                lambda c: c.customers.credits.ledger.with_raw_response.create_entry_by_external_id(
                    customer_id, **args, idempotency_key=key))
        return self._call(
            label,
            lambda c: c.customers.credits.ledger.with_raw_response.create_entry(
                customer_id, **args, idempotency_key=key),
            lambda c: c.customers.credits.ledger.with_raw_response.create_entry(
                customer_id, **args, idempotency_key=key))

    def _block(self, block_id: str) -> bc.Call[Answer]:
        _sendable("grant_id", block_id)
        return self._call(
            "credit_blocks.retrieve",
            lambda c: c.credit_blocks.with_raw_response.retrieve(block_id),
            lambda c: c.credit_blocks.with_raw_response.retrieve(block_id))

    def _blocks(self, customer_id: str, currency: str, cursor: str | None,
                limit: int, *, all_blocks: bool) -> bc.Call[Answer]:
        args: dict[str, Any] = {"currency": currency, "limit": limit,
                                "include_all_blocks": all_blocks}
        if cursor is not None:
            args["cursor"] = cursor
        method = "list_by_external_id" if self.customer_ids == "external" else "list"
        return self._call(
            f"customers.credits.{method}",
            lambda c: getattr(c.customers.credits.with_raw_response, method)(customer_id, **args),
            lambda c: getattr(c.customers.credits.with_raw_response, method)(customer_id, **args))

    def _ledger(self, customer_id: str, currency: str, cursor: str | None,
                **filters: Any) -> bc.Call[Answer]:
        args: dict[str, Any] = {"currency": currency, "limit": PAGE, **filters}
        if cursor is not None:
            args["cursor"] = cursor
        method = "list_by_external_id" if self.customer_ids == "external" else "list"
        return self._call(
            f"customers.credits.ledger.{method}",
            lambda c: getattr(c.customers.credits.ledger.with_raw_response, method)(
                customer_id, **args),
            lambda c: getattr(c.customers.credits.ledger.with_raw_response, method)(
                customer_id, **args))

    def _fetch_customer(self, customer_id: str) -> bc.Flow[str | None]:
        """``GET /customers/{id}`` (or by external id, as ``customer_ids`` says): caches the
        customer's timezone and, once it has one, its currency; returns the currency."""
        _sendable("customer_id", customer_id)
        method = "fetch_by_external_id" if self.customer_ids == "external" else "fetch"
        answer = yield self._call(
            f"customers.{method}",
            lambda c: getattr(c.customers.with_raw_response, method)(customer_id),
            lambda c: getattr(c.customers.with_raw_response, method)(customer_id))
        customer = answer.mapping()
        currency = customer.get("currency")
        if currency is not None and not isinstance(currency, str):
            raise answer.invalid(f"customer currency {currency!r:.40} is not text")
        self._remember_timezone(customer_id, customer, answer)
        if currency is not None:
            self._currencies[customer_id] = currency
        return currency

    def _remember_timezone(self, customer_id: str, customer: Mapping[str, Any],
                           answer: Answer) -> None:
        """``Customer.timezone`` ("defaults to your account's timezone",
        ``orb/types/customer.py``): the timezone of the customer's credit dates (``ledger.py``:
        "credit expiry should always happen close to a date boundary in the customer's
        timezone"). Never guessed: a missing or unknown one is an unusable answer."""
        timezone = customer.get("timezone")
        if not isinstance(timezone, str):
            raise answer.invalid(f"customer {customer_id} has no timezone (Customer.timezone)")
        try:
            tr.zone(timezone)
        except ValueError as error:
            raise answer.invalid(str(error)) from None
        self._timezones[customer_id] = timezone

    def _currency(self, customer_id: str) -> bc.Flow[str | None]:
        """The customer's currency (``Customer.currency``, ``orb/types/customer.py``): a
        customer's credit balance is in one currency (https://docs.withorb.com/product-catalog/
        prepurchase, "Structure of the credit balance"). Cached per provider."""
        if customer_id in self._currencies:
            return self._currencies[customer_id]
        return (yield from self._fetch_customer(customer_id))

    def _timezone(self, customer_id: str) -> bc.Flow[str]:
        """The customer's timezone (``Customer.timezone``), read with its currency by one
        ``GET`` and cached per customer per provider."""
        if customer_id not in self._timezones:
            yield from self._fetch_customer(customer_id)
        return self._timezones[customer_id]

    def _read(self, answer: Answer, block: Any, currency: str, timezone: str,
              customer_id: str | None = None) -> bc.CreditGrant:
        if not isinstance(block, Mapping):
            raise answer.invalid("a credit block is not a JSON object")
        try:
            return tr.from_block(block, currency=currency, now=self._clock(),
                                 customer_id=customer_id, timezone=timezone)
        except bc.ProviderError as error:
            problem = error.message
        raise answer.invalid(problem)

    def _grant(self, block_id: str) -> bc.Flow[tuple[bc.CreditGrant, str]]:
        """The block as a grant (dates in its customer's timezone), with its currency."""
        answer = yield self._block(block_id)
        block = answer.mapping()
        metadata = block.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise answer.invalid(f"block {block_id} has metadata that is not an object")
        customer = metadata.get(tr.META_CUSTOMER)
        if not isinstance(customer, str) or not customer:
            raise answer.invalid(f"block {block_id} carries no {tr.META_CUSTOMER} metadata: it "
                                 "was not made through billing-credits; list its customer's "
                                 "grants to read it")
        currency = yield from self._currency(customer)
        if currency is None:
            raise answer.invalid(f"customer {customer} has no currency")
        timezone = yield from self._timezone(customer)
        return self._read(answer, block, currency, timezone), currency

    # -- flows ---------------------------------------------------------------------------

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        timezone = "UTC"
        if grant.effective_at is not None or grant.expires_at is not None:
            timezone = yield from self._timezone(grant.customer_id)
        start, end, moved = tr.align_window(grant.effective_at, grant.expires_at, timezone)
        params = tr.increment_params(grant, policy=self.priority_policy, invoice=self.invoice,
                                     net_terms=self.net_terms, timezone=timezone)
        answer = yield self._ledger_entry(grant.customer_id, params,
                                          tr.header_key(idempotency_key),
                                          "customers.credits.ledger.create_entry")
        entry = answer.mapping()
        block = entry.get("credit_block")
        currency = entry.get("currency")
        if not isinstance(block, Mapping) or not isinstance(block.get("id"), str) \
                or not isinstance(currency, str):
            raise answer.invalid("an increment entry needs credit_block.id and currency")
        if grant.customer_id not in self._currencies and bc.is_iso_currency(currency):
            self._currencies[grant.customer_id] = currency
        read = yield self._block(block["id"])
        stored = self._read(read, read.mapping(), currency, timezone).model_copy(
            update={"replayed": answer.replayed})
        # the local-day alignment is reported as such; drift is measured from the aligned window
        aligned = grant.model_copy(update={"effective_at": start, "expires_at": end})
        drift = [a for a in tr.differences(aligned, stored) if a.field != "effective_at"
                 or grant.effective_at is not None]
        if moved or drift:
            stored = stored.model_copy(
                update={"adjustments": (*stored.adjustments, *moved, *drift)})
        return stored

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        if query.customer_id is None:
            return (yield from self._list_all(query, cursor))
        customer = query.customer_id
        currency = yield from self._currency(customer)
        if currency is None:
            return bc.Page([])
        size = max(1, min(query.page_size or PAGE, PAGE))
        timezone = yield from self._timezone(customer)
        answer = yield self._blocks(customer, currency, cursor, size, all_blocks=True)
        items, next_cursor = answer.page()
        now = self._clock()
        grants, unreadable = bc.read_items(
            self.name, items,
            lambda item: tr.from_block(item, currency=currency, now=now, customer_id=customer,
                                       timezone=timezone),
            lambda item: item.get("id") if isinstance(item, Mapping) else None)
        return bc.Page(grants, next_cursor, unreadable, request_id=answer.request_id)

    def _list_all(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        """Every customer's blocks: one page of ``GET /customers`` and each customer's blocks."""
        args: dict[str, Any] = {"limit": max(1, min(query.page_size or PAGE, PAGE))}
        if cursor is not None:
            args["cursor"] = cursor
        answer = yield self._call(
            "customers.list", lambda c: c.customers.with_raw_response.list(**args),
            lambda c: c.customers.with_raw_response.list(**args))
        customers, next_cursor = answer.page()
        grants: list[bc.CreditGrant] = []
        unreadable: list[bc.UnreadableGrant] = []
        for customer in customers:
            if not isinstance(customer, Mapping):
                raise answer.invalid("a customer is not a JSON object")
            key = "external_customer_id" if self.customer_ids == "external" else "id"
            ident = customer.get(key)
            if not isinstance(ident, str) or not ident:
                # reported, never skipped silently: its blocks cannot be named by this id
                unreadable.append(bc.UnreadableGrant(
                    self.name, customer.get("id") if isinstance(customer.get("id"), str)
                    else None, dict(customer), f"customer has no {key}; list its grants with "
                    "customer_ids=orb"))
                continue
            if isinstance(customer.get("currency"), str):
                self._currencies[ident] = customer["currency"]
            self._remember_timezone(ident, customer, answer)
            inner: str | None = None
            guard = self.listing_guard(f"Orb credits of customer {ident}")
            while True:
                page = yield from self._list_page(bc.ListQuery(ident), inner)
                grants += page.grants
                unreadable += page.unreadable
                inner = guard.page([g.id for g in page.grants]
                                   + [u.vendor_id for u in page.unreadable], page.next_cursor,
                                   request_id=page.request_id,
                                   items=bool(page.grants or page.unreadable))
                if inner is None:
                    break
        return bc.Page(grants, next_cursor, unreadable, request_id=answer.request_id)

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        grant, _ = yield from self._grant(grant_id)
        return grant

    def _mark_voided(self, block_id: str) -> bc.Call[Answer]:
        metadata = {tr.META_VOIDED: self._clock().isoformat()}
        return self._call(
            "credit_blocks.update",
            lambda c: c.credit_blocks.with_raw_response.update(block_id, metadata=metadata),
            lambda c: c.credit_blocks.with_raw_response.update(block_id, metadata=metadata))

    def _void(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        """A ``void`` entry for what is left of the block, then ``bc_voided_at`` metadata
        (Orb's block has no voided state of its own: ``CreditBlockRetrieveResponse.status`` is
        ``active`` or ``pending_payment``)."""
        grant, currency = yield from self._grant(grant_id)
        if grant.status is bc.GrantStatus.VOIDED:
            return grant
        assert grant.raw is not None
        left = tr.block_balance(grant.raw)
        if left > 0:
            yield self._ledger_entry(grant.customer_id, tr.void_params(grant_id, left, currency),
                                     f"bc-void-{uuid.uuid4()}", "customers.credits.ledger.void")
        yield self._mark_voided(grant_id)
        return (yield from self._grant(grant_id))[0]

    def _expire(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        """An ``expiration_change`` of the whole block to today, the customer's local day
        (Orb's dates are days in the customer's timezone): its start is never after now."""
        grant, currency = yield from self._grant(grant_id)
        timezone = yield from self._timezone(grant.customer_id)
        today = tr.local_floor(self._clock().astimezone(UTC), tr.zone(timezone))
        params = tr.expiration_change_params(grant_id, grant.expires_at, today, currency,
                                             timezone)
        yield self._ledger_entry(grant.customer_id, params, f"bc-expire-{uuid.uuid4()}",
                                 "customers.credits.ledger.expiration_change")
        return _moved_in_place((yield from self._grant(grant_id))[0], today)

    # -- balance, ledger, update, consume --------------------------------------------------

    def _live(self, customer_id: str, currency: str) -> bc.Flow[tuple[list[bc.CreditGrant],
                                                                      list[Any]]]:
        """The customer's active, effective blocks with credit left (Orb's default listing:
        "unexpired, non-zero credit blocks", ``orb/resources/customers/credits/credits.py``),
        read as grants, and the raw blocks."""
        now = self._clock()
        timezone = yield from self._timezone(customer_id)
        live: list[bc.CreditGrant] = []
        raw: list[Any] = []
        cursor: str | None = None
        guard = self.listing_guard("Orb credits")
        while True:
            answer = yield self._blocks(customer_id, currency, cursor, PAGE, all_blocks=False)
            items, cursor = answer.page()
            cursor = guard.page(_ids(items), cursor, request_id=answer.request_id,
                                items=bool(items))
            raw += items
            grants, unreadable = bc.read_items(
                self.name, items,
                lambda item: tr.from_block(item, currency=currency, now=now,
                                           customer_id=customer_id, timezone=timezone),
                lambda item: item.get("id") if isinstance(item, Mapping) else None)
            if unreadable:
                raise bc.UnreadableGrantsError(self.name, unreadable)
            live += [g for g in grants if g.status is bc.GrantStatus.ACTIVE
                     and g.balance is not None and g.balance.amount > 0]
            if cursor is None:
                return live, raw

    def _balance(self, customer_id: str, unit: str | None,
                 at: datetime | None) -> bc.Flow[list[bc.Balance]]:
        currency = yield from self._currency(customer_id)
        if currency is None or (unit is not None and unit != currency):
            return []
        now = self._clock()
        live, raw = yield from self._live(customer_id, currency)
        parts = [bc.BalancePart(grant_id=g.id or "", usable=g.balance,
                                expires_at=g.expires_at) for g in live if g.balance is not None]
        usable = bc.exact_sum(p.usable.amount for p in parts)
        money = bc.Money(amount=usable, currency=currency)
        return [bc.Balance(customer_id=customer_id, usable=money, pending=money.with_amount(
            Decimal(0)), parts=tuple(parts), as_of=now, source=(
            "GET /customers/{id}/credits: the balance of each active, effective block "
            "(pending: Orb reports none here)"), raw={"blocks": raw})]

    def _ledger_page(self, customer_id: str, grant_id: str | None, since: datetime | None,
                     cursor: str | None) -> bc.Flow[bc.LedgerPage]:
        currency = yield from self._currency(customer_id)
        if currency is None:
            return bc.LedgerPage([])
        filters: dict[str, Any] = {}
        if since is not None:
            filters["created_at_gte"] = since
        answer = yield self._ledger(customer_id, currency, cursor, **filters)
        items, next_cursor = answer.page()
        entries = []
        for item in items:
            try:
                entry = tr.entry_to_ledger(item, customer_id)
            except bc.ProviderError as error:
                raise answer.invalid(error.message) from None
            if grant_id is None or entry.grant_id == grant_id:
                entries.append(entry)
        return bc.LedgerPage(entries, next_cursor, request_id=answer.request_id)

    def _update(self, grant_id: str, update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
        changes = update.model_fields_set
        if "expires_at" in changes and update.expires_at is None:
            raise bc.NotRepresentableError(self.name, [bc.FieldProblem(
                "expires_at", "Orb's expiration_change needs a target date; a block cannot be "
                "made non-expiring again")])
        grant, currency = yield from self._grant(grant_id)
        target: datetime | None = None
        moved: list[bc.Adjustment] = []
        if "expires_at" in changes:
            assert update.expires_at is not None
            timezone = yield from self._timezone(grant.customer_id)
            # the customer's local day, earlier (the safe direction), reported when it moved
            _, target, moved = tr.align_window(None, update.expires_at, timezone)
            assert target is not None
            params = tr.expiration_change_params(grant_id, grant.expires_at, target, currency,
                                                 timezone)
            yield self._ledger_entry(grant.customer_id, params, f"bc-update-{uuid.uuid4()}",
                                     "customers.credits.ledger.expiration_change")
        if "metadata" in changes:
            new = dict(update.metadata or {})
            metadata: dict[str, str | None] = {k: None for k in grant.metadata if k not in new}
            metadata.update(new)
            yield self._call(
                "credit_blocks.update",
                lambda c: c.credit_blocks.with_raw_response.update(grant_id, metadata=metadata),
                lambda c: c.credit_blocks.with_raw_response.update(grant_id, metadata=metadata))
        updated = (yield from self._grant(grant_id))[0]
        if target is None:
            return updated
        updated = _moved_in_place(updated, target)
        if moved:
            updated = updated.model_copy(update={"adjustments": (*updated.adjustments, *moved)})
        return updated

    def _decrements(self, customer_id: str, currency: str,
                    reference: str) -> bc.Flow[list[bc.LedgerEntry]]:
        """The decrement entries written for usage ``reference`` (their ``bc_usage_reference``
        metadata), paging the customer's decrements: Orb forgets idempotency keys after 48 h."""
        found: list[bc.LedgerEntry] = []
        cursor: str | None = None
        guard = self.listing_guard("Orb credits ledger")
        while True:
            answer = yield self._ledger(customer_id, currency, cursor, entry_type="decrement")
            items, following = answer.page()
            for item in items:
                meta = item.get("metadata") if isinstance(item, Mapping) else None
                if isinstance(meta, Mapping) and meta.get(USAGE_REFERENCE) == reference:
                    try:
                        found.append(tr.entry_to_ledger(item, customer_id))
                    except bc.ProviderError as error:
                        raise answer.invalid(error.message) from None
            cursor = guard.page(_ids(items), following, request_id=answer.request_id,
                                items=bool(items))
            if cursor is None:
                return sorted(found, key=_sequence)  # the order Orb wrote them

    def _consume(self, usage: bc.Usage) -> bc.Flow[list[bc.LedgerEntry]]:
        """A ``decrement`` entry: "Orb matches the algorithm for automatic deductions for
        determining which credit blocks to decrement from" and may write one entry per block
        ("the response from this endpoint will be the final deduction"; ``ledger.py``), so the
        entries are read back from the ledger by the usage's reference. Refused beyond the
        usable balance: Orb would let it go negative ("the customer's total credit balance in
        Orb can be negative as a result of a decrement")."""
        if usage.product_id is not None:
            raise bc.NotRepresentableError(self.name, [bc.FieldProblem(
                "product_id", "an Orb decrement names no item: it draws on blocks for all items")])
        customer = usage.customer_id
        reference = usage.reference or f"bc-{uuid.uuid4()}"
        currency = yield from self._currency(customer)
        if currency is None or usage.amount.currency != currency:
            raise bc.ConflictError(
                f"customer {customer} holds no {usage.amount.unit_key} credit on Orb",
                provider=self.name, retryable=False)
        done = yield from self._decrements(customer, currency, reference)
        if done:
            total = -bc.exact_sum(e.amount.amount for e in done)
            if total != usage.amount.amount:
                raise bc.ConflictError(
                    f"usage reference {reference!r} was applied with {total}, not "
                    f"{usage.amount.amount}", provider=self.name, code="idempotency_error",
                    retryable=False)
            return done
        live, _ = yield from self._live(customer, currency)
        # the blocks for all items only (the decrement names no item, see above)
        usable = bc.exact_sum(g.balance.amount for g in live
                              if g.balance is not None and g.scope.is_all_usage)
        if usable < usage.amount.amount:
            raise bc.ConflictError(
                f"usage of {usage.amount} exceeds the {usable} {currency} credit usable now; "
                "not applied (Orb would take the balance negative)", provider=self.name,
                retryable=False)
        params = {"entry_type": "decrement", "amount": float(usage.amount.amount),
                  "currency": currency, "description": f"usage {reference}"[:200],
                  "metadata": {USAGE_REFERENCE: reference}}
        if not bc.float64_exact(usage.amount.amount):
            raise bc.NotRepresentableError(self.name, [bc.FieldProblem(
                "amount", f"{usage.amount.amount} is not exact as a JSON double")])
        yield self._ledger_entry(customer, params, _usage_key(reference),
                                 "customers.credits.ledger.decrement")
        return (yield from self._decrements(customer, currency, reference))


def _moved_in_place(grant: bc.CreditGrant, target: datetime) -> bc.CreditGrant:
    """``grant`` read back after an ``expiration_change`` of its whole block, checked to expire
    at ``target``. ``ledger.py`` documents that "a new credit block will be created with expiry
    date ``target_expiry_date``"; the provider relies on the change happening to the block in
    place (unverified at Orb, see the README). If Orb moved the credit instead, the grant no
    longer holds it: said, never returned as done."""
    if grant.expires_at != target:
        raise bc.InvalidResponseError(
            f"Orb's expiration_change left block {grant.id} expiring at "
            f"{grant.expires_at.isoformat() if grant.expires_at else 'never'}, not "
            f"{target.isoformat()}: Orb moved its credit to a new block, which this grant "
            "does not name; list the customer's grants to find it", provider=tr.PROVIDER_NAME)
    return grant


def _sequence(entry: bc.LedgerEntry) -> tuple[datetime, int]:
    number = (entry.raw or {}).get("ledger_sequence_number")
    return entry.at, number if isinstance(number, int) and not isinstance(number, bool) else 0


def _sendable(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bc.InvalidGrantError([bc.FieldProblem(field, "give a non-empty string")],
                                   model="Orb request")
    return value


def _ids(items: list[Any]) -> list[str | None]:
    """The Orb ids of a page's raw items (None where an item has none)."""
    return [item.get("id") if isinstance(item, Mapping) and isinstance(item.get("id"), str)
            else None for item in items]
