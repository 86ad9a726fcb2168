"""The Stripe provider's flows over ``stripe.StripeClient``: each operation written once.

Transport only: every Stripe shape is built and read by ``_translate``. Every SDK call goes
through ``_call``, which turns it into a ``billing_credits.Call`` (sync and async) and maps
every SDK error onto the core hierarchy, so retries and the rate limit live in one place, the
core ``Runtime``; the SDK's own retries are off (``max_network_retries=0``).
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import stripe

import billing_credits as bc

from . import _ledger as ledger
from . import _translate as tr

__all__ = ["StripeProvider"]

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.stripe.com"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 4
SANDBOX_RATE = 25.0
LIVE_RATE = 100.0
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _now() -> datetime:
    return datetime.now(UTC)


def default_rate_limit(api_key: str) -> float:
    """Stripe's documented global limit for the key's mode: 25 req/s in a sandbox, 100 live.

    Keys whose mode cannot be told (restricted or unusual prefixes) get the sandbox rate.
    """
    if api_key.startswith(("sk_live_", "rk_live_")):
        return LIVE_RATE
    return SANDBOX_RATE


class _Secret:
    """Holds a credential; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class _HTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client, optionally over caller-supplied ``httpx`` clients.

    Sends the form body as ``content=`` (httpx deprecates ``data=`` for raw text). The async
    client it makes itself keeps no idle connections: a pooled connection belongs to the event
    loop that opened it, and callers may drive async calls from several loops
    (``asyncio.run`` per call). Pass ``async_http_client`` to pool connections.
    """

    def __init__(
        self,
        *,
        timeout: float,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(timeout=timeout, allow_sync_methods=True)
        self._owns_sync = client is None
        self._owns_async = async_client is None
        if client is not None:
            assert self._client is not None
            self._client.close()
            self._client = client
        if async_client is None:
            async_client = httpx.AsyncClient(
                verify=ssl.create_default_context(cafile=stripe.ca_bundle_path),
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        self._client_async = async_client

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        kwargs: dict[str, Any] = {"headers": headers}
        if post_data:
            kwargs["content"] = post_data
        if self._timeout:
            kwargs["timeout"] = self._timeout
        return [(method, url), kwargs]

    def close(self) -> None:
        if self._owns_sync and self._client is not None:
            self._client.close()

    async def close_async(self) -> None:
        if self._owns_async:
            await self._client_async.aclose()


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        for key, item in headers.items():
            if key.lower() == name.lower():
                return item
    return value


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number, or an HTTP date."""
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - _now()).total_seconds(), 0.0)


def map_error(error: stripe.StripeError) -> bc.ProviderError:
    """A stripe SDK error as the core error, with status, body, Stripe type/code/param and
    ``Request-Id``; ``retryable`` per Stripe's rules and its ``Stripe-Should-Retry`` header."""
    headers = error.headers
    request_id = error.request_id or _header(headers, "request-id")
    status = error.http_status
    body: Any = error.json_body if error.json_body is not None else error.http_body
    details: Mapping[str, Any] = {}
    if isinstance(error.json_body, Mapping) and isinstance(error.json_body.get("error"), Mapping):
        details = error.json_body["error"]
    kind = details.get("type")
    code = details.get("code") or error.code
    param = details.get("param")
    message = str(details.get("message") or error.user_message or type(error).__name__)
    context = ", ".join(f"{k}={v}" for k, v in (("type", kind), ("param", param)) if v)
    text = f"Stripe: {message}" + (f" [{context}]" if context else "")
    should_retry = _header(headers, "stripe-should-retry")
    common: dict[str, Any] = {
        "provider": tr.PROVIDER_NAME, "status": status, "body": body,
        "request_id": request_id, "code": code or kind,
    }
    mapped: bc.ProviderError
    if isinstance(error, stripe.APIConnectionError) and status is None:
        mapped = bc.UnavailableError(f"Stripe could not be reached: {message}", **common)
    elif isinstance(error, stripe.IdempotencyError) or kind == "idempotency_error":
        common["code"] = "idempotency_error"
        mapped = bc.ConflictError(text, retryable=False, **common)
    elif isinstance(error, stripe.RateLimitError) or status == 429:
        mapped = bc.RateLimitedError(
            text, retry_after=_retry_after(_header(headers, "retry-after")), **common)
    elif status == 409:
        mapped = bc.ConflictError(text, retryable=True, **common)
    elif status is not None:
        mapped = bc.error_class_for_status(status)(text, **common)
    else:
        mapped = bc.ProviderError(text, **common)
    if should_retry == "false":
        mapped.retryable = False
    elif should_retry == "true" and mapped.code != "idempotency_error":
        mapped.retryable = True
    return mapped


def _flag(value: bool | str | None, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bc.ConfigurationError(f"expected a boolean, got {value!r}")


def _number(name: str, value: float | int | str | None, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bc.ConfigurationError(f"setting {name} must be a number, got {value!r}") from None
    if number < 0:
        raise bc.ConfigurationError(f"setting {name} must not be negative")
    return number


class StripeProvider(bc.Provider):
    """Stripe billing credit grants (``billing.credit_grant``) through the official SDK."""

    name = tr.PROVIDER_NAME
    capabilities = bc.Capabilities(
        custom_units=False,
        minor_units_only=True,
        priority=tr.PRIORITY_DOMAIN,
        scope_kinds=frozenset({"price_ids", "metered_prices_only"}),
        max_price_ids=tr.MAX_PRICES,
        max_segments=1,
        name_max_length=tr.MAX_NAME_LENGTH,
        time_resolution=timedelta(seconds=1),
        metadata=bc.MetadataLimits(
            max_keys=tr.MAX_METADATA_KEYS,
            max_key_length=tr.MAX_METADATA_KEY_LENGTH,
            max_value_length=tr.MAX_METADATA_VALUE_LENGTH,
            forbidden_key_chars="[]",
            reserved_prefix=tr.RESERVED_PREFIX,
        ),
        fields_in_metadata=frozenset({"reason", "paid_amount", "category_label",
                                      "idempotency_key"}),
        operations=bc.ALL_OPERATIONS - {"consume"},
        balance_as_of="now",
        updatable_fields=ledger.UPDATABLE_FIELDS,
        notes=(
            "all usage is stored as price_type=metered: Stripe credits apply to metered "
            "prices only (reported in the grant's adjustments)",
            "amounts in Stripe's minor units (zero-decimal JPY etc., ISK whole kronur, "
            "three-decimal currencies to the ten)",
            "reason, paid_amount, category_label and the idempotency key travel in bc_ "
            "metadata keys, plus bc_flags when defaults were left to Stripe",
            "balance (include_balance) costs one credit balance summary call per grant",
            "get_balance: one credit balance summary per live grant, as of now only",
            "update: expires_at and metadata only (Stripe cannot change the rest)",
            "consume: Stripe applies credits to invoices itself; StripeFake.consume models it",
        ),
    )
    consumption_order = ledger.STRIPE_ORDER
    remaining_source = ("credit_balance_summary per grant (filter[type]=credit_grant): the "
                        "smaller of available_balance and ledger_balance; read with "
                        "include_balance=true")
    settings = (
        bc.Setting("api_key", "Stripe secret or restricted key", env="STRIPE_API_KEY",
                   secret=True),
        bc.Setting("base_url", f"API base URL (default {DEFAULT_BASE_URL}; any Stripe-"
                   "compatible server)", env="STRIPE_BASE_URL"),
        bc.Setting("stripe_account", "connected account id (Stripe-Account header) for Connect",
                   env="STRIPE_ACCOUNT"),
        bc.Setting("timeout", f"seconds per request (default {DEFAULT_TIMEOUT:g})"),
        bc.Setting("max_retries", f"retries after the first attempt (default "
                   f"{DEFAULT_MAX_RETRIES})"),
        bc.Setting("rate_limit", "requests per second (default 25 for sandbox keys, 100 live)"),
        bc.Setting("include_balance", "read each grant's balance: one extra call per grant "
                   "(default off)"),
        bc.Setting("http_client", "an httpx.Client to send sync requests through"),
        bc.Setting("async_http_client", "an httpx.AsyncClient to send async requests through"),
    )

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        stripe_account: str | None = None,
        timeout: float | str | None = None,
        max_retries: int | str | None = None,
        rate_limit: float | str | None = None,
        include_balance: bool | str | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = _now,
        runtime: bc.Runtime | None = None,
    ) -> None:
        key = api_key or os.environ.get("STRIPE_API_KEY")
        if not key:
            raise bc.ConfigurationError(
                "the stripe provider needs an API key: pass api_key=... or set STRIPE_API_KEY")
        retries = int(_number("max_retries", max_retries, DEFAULT_MAX_RETRIES))
        rate = _number("rate_limit", rate_limit, default_rate_limit(key)) or None
        super().__init__(runtime=runtime or bc.Runtime(
            retry=bc.RetryPolicy(attempts=retries + 1), rate_limit=bc.RateLimit(rate)))
        self._api_key = _Secret(key)
        self.mode = "live" if "_live_" in key else "test"
        self.base_url = (base_url or os.environ.get("STRIPE_BASE_URL")
                         or DEFAULT_BASE_URL).rstrip("/")
        self.stripe_account = stripe_account or os.environ.get("STRIPE_ACCOUNT") or None
        self.timeout = _number("timeout", timeout, DEFAULT_TIMEOUT)
        self.include_balance = _flag(include_balance, default=False)
        self._clock = clock
        self._http = _HTTPXClient(
            timeout=self.timeout, client=http_client, async_client=async_http_client)
        self.client = stripe.StripeClient(
            key,
            stripe_account=self.stripe_account,
            stripe_version=tr.STRIPE_API_VERSION,
            base_addresses={"api": self.base_url},
            max_network_retries=0,
            http_client=self._http,
        )


    def preview(self, grant: bc.CreditGrant) -> list[bc.Adjustment]:
        """Stripe narrows "all usage" to its metered prices: say so before creating."""
        if grant.scope.is_all_usage:
            return [bc.Adjustment(field="scope", requested="all usage",
                                  stored="price_type=metered", reason=tr.ALL_USAGE_REASON)]
        return []

    def identity(self) -> str:
        """Base URL, connected account and a digest of the key (never the key)."""
        digest = hashlib.sha256(self._api_key.reveal().encode()).hexdigest()[:12]
        return f"stripe:{self.base_url}:{self.stripe_account or '-'}:{digest}"

    def __repr__(self) -> str:
        account = f" account={self.stripe_account!r}" if self.stripe_account else ""
        return f"<StripeProvider {self.mode} base_url={self.base_url!r}{account}>"

    def close(self) -> None:
        self._http.close()

    async def aclose(self) -> None:
        self._http.close()
        await self._http.close_async()

    def check(self, grant: bc.CreditGrant) -> None:
        """The declared capabilities, then Stripe's own rules (``_translate.problems``)."""
        super().check(grant)
        if found := tr.problems(grant):
            raise bc.NotRepresentableError(self.name, found)

    # -- calls ---------------------------------------------------------------------------

    def _call(
        self,
        sync: Callable[[], T],
        async_: Callable[[], Awaitable[T]],
        *,
        label: str,
        retry_safe: bool = True,
    ) -> bc.Call[T]:
        """An SDK call as a core ``Call``; SDK errors become core errors."""

        def run() -> T:
            try:
                return sync()
            except stripe.StripeError as error:
                raise map_error(error) from None

        async def arun() -> T:
            try:
                return await async_()
            except stripe.StripeError as error:
                raise map_error(error) from None

        return bc.Call(run, arun, retry_safe=retry_safe, label=label)

    @property
    def _grants(self) -> Any:
        return self.client.v1.billing.credit_grants

    def _read(self, obj: stripe.StripeObject) -> bc.Flow[bc.CreditGrant]:
        data = obj.to_dict()
        balance = None
        if self.include_balance:
            balance = yield from self._balance_flow(data)
        return tr.from_stripe(data, now=self._clock(), balance=balance)

    def _balance_flow(self, data: Mapping[str, Any]) -> bc.Flow[bc.Money]:
        probe = tr.from_stripe(data, now=self._clock())
        params = tr.balance_params(probe.customer_id, str(data["id"]))
        summaries = self.client.v1.billing.credit_balance_summary
        summary = yield self._call(
            lambda: summaries.retrieve(params), lambda: summaries.retrieve_async(params),
            label="credit_balance_summary.retrieve")
        assert probe.amount.currency is not None
        return tr.balance_from_summary(summary.to_dict(), probe.amount.currency)

    # -- flows ---------------------------------------------------------------------------

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        params = tr.create_params(grant)
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        grants = self._grants
        obj = yield self._call(
            lambda: grants.create(params, options), lambda: grants.create_async(params, options),
            label="credit_grants.create")
        stored = tr.from_stripe(obj.to_dict(), now=self._clock())
        if drift := tr.differences(grant, stored):
            stored = stored.model_copy(update={"adjustments": (*stored.adjustments, *drift)})
        return stored

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        params = tr.list_params(query.customer_id, limit=query.page_size, starting_after=cursor)
        grants = self._grants
        page = yield self._call(
            lambda: grants.list(params), lambda: grants.list_async(params),
            label="credit_grants.list")
        items = list(page.data)
        read = []
        for item in items:
            grant = yield from self._read(item)
            read.append(grant)
        next_cursor = str(items[-1]["id"]) if page.has_more and items else None
        return bc.Page(read, next_cursor)

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        grants = self._grants
        obj = yield self._call(
            lambda: grants.retrieve(grant_id), lambda: grants.retrieve_async(grant_id),
            label="credit_grants.retrieve")
        return (yield from self._read(obj))

    def _void(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        options: stripe.RequestOptions = {"idempotency_key": f"bc-void-{uuid.uuid4()}"}
        grants = self._grants
        obj = yield self._call(
            lambda: grants.void_grant(grant_id, None, options),
            lambda: grants.void_grant_async(grant_id, None, options),
            label="credit_grants.void_grant")
        return (yield from self._read(obj))

    def _expire(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        options: stripe.RequestOptions = {"idempotency_key": f"bc-expire-{uuid.uuid4()}"}
        grants = self._grants
        obj = yield self._call(
            lambda: grants.expire(grant_id, None, options),
            lambda: grants.expire_async(grant_id, None, options),
            label="credit_grants.expire")
        return (yield from self._read(obj))

    # -- balance -------------------------------------------------------------------------

    def _grant_balance(self, grant_id: str) -> bc.Flow[bc.Money]:
        grants = self._grants
        obj = yield self._call(
            lambda: grants.retrieve(grant_id), lambda: grants.retrieve_async(grant_id),
            label="credit_grants.retrieve")
        return (yield from self._balance_flow(obj.to_dict()))

    def grant_balance(self, grant_id: str) -> bc.Money:
        """A grant's remaining credits, from Stripe's credit balance summary (two calls: the
        grant, for its customer and currency, then the summary)."""
        self._require("balance")
        return self.runtime.run(self._grant_balance(grant_id))

    async def agrant_balance(self, grant_id: str) -> bc.Money:
        self._require("balance")
        return await self.runtime.arun(self._grant_balance(grant_id))

    # -- balances, ledger, updates (issue 11: see _ledger) ---------------------------------

    def _balance(self, customer_id: str, unit: str | None,
                 at: datetime | None) -> bc.Flow[list[bc.Balance]]:
        return ledger.balance_flow(self, customer_id, unit, at)

    def _ledger_page(self, customer_id: str, grant_id: str | None, since: datetime | None,
                     cursor: str | None) -> bc.Flow[bc.LedgerPage]:
        return ledger.ledger_flow(self, customer_id, grant_id, since, cursor)

    def _update(self, grant_id: str, update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
        return ledger.update_flow(self, grant_id, update)
