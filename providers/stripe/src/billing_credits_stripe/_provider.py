"""The Stripe provider's flows over ``stripe.StripeClient``: each operation written once.

Transport only: every Stripe shape is built and read by ``_translate``. Every SDK call goes
through ``_call``, which turns it into a ``billing_credits.Call`` (sync and async) and maps
every SDK error onto the core hierarchy, so retries and the rate limit live in one place, the
core ``Runtime``; the SDK's own retries are off (``max_network_retries=0``).

The stripe SDK and httpx are imported on first use (constructing a provider, mapping an SDK
error), not with this module: the provider class, its settings and capabilities load without
them, so ``billing-credits providers`` stays fast. The SDK's HTTP client subclass lives in
``_http``, imported by ``StripeProvider.__init__``.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import math
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import billing_credits as bc
import billing_credits_stripe._ledger as ledger
import billing_credits_stripe._translate as tr
from billing_credits._secrets import check_base_url, redact, register_secret

from ._answer import Answer, _header

if TYPE_CHECKING:
    import httpx
    import stripe

__all__ = ["StripeProvider"]

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.stripe.com"
DEFAULT_TIMEOUT = 30.0
ERROR_BODY_LIMIT = 65_536
"""An error body longer than this (characters) is kept as a bounded excerpt."""
MESSAGE_LIMIT = 300
"""At most this much of Stripe's error message goes into the error's own message."""
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


class ReplayedServerError(bc.UnavailableError):
    """Stripe replayed a 5xx it saved for this idempotency key (``Idempotent-Replayed: true``).

    Stripe saves the first result of a keyed request, 500s included, and replays it for as long
    as it keeps the key (https://docs.stripe.com/idempotency), so sending the same key again
    cannot succeed: never retried with that key."""

    retryable = False


def map_error(error: stripe.StripeError) -> bc.ProviderError:
    """A stripe SDK error as the core error, with status, body, Stripe type/code/param and
    ``Request-Id``; ``retryable`` per Stripe's rules and its ``Stripe-Should-Retry`` header.

    A 2xx the SDK could not decode is an ``InvalidResponseError`` carrying a bounded excerpt of
    the body; a replayed 5xx is a ``ReplayedServerError`` (never retried with the same key).
    """
    import stripe

    headers = error.headers
    request_id = error.request_id or _header(headers, "request-id")
    status = error.http_status
    body: Any = error.json_body if error.json_body is not None else error.http_body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if len(error.http_body or "") > ERROR_BODY_LIMIT:  # a proxy's page, a runaway answer
        body = bc.excerpt(body)
    if status is not None and 200 <= status < 300:
        # The SDK raises this for a 2xx it cannot decode, passing the response headers where
        # the JSON body belongs (stripe/_api_requestor.py, _interpret_response).
        raw = error.http_body
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if request_id is None and isinstance(error.json_body, Mapping):
            request_id = _header(error.json_body, "request-id")
        return bc.InvalidResponseError(
            f"Stripe answered {status} with a body that is not JSON: {bc.excerpt(raw)}",
            provider=tr.PROVIDER_NAME, status=status, body=bc.excerpt(raw),
            request_id=request_id)
    replayed = (_header(headers, "idempotent-replayed") or "").lower() == "true"
    details: Mapping[str, Any] = {}
    if isinstance(error.json_body, Mapping) and isinstance(error.json_body.get("error"), Mapping):
        details = error.json_body["error"]
    kind = details.get("type")
    code = details.get("code") or error.code
    param = details.get("param")
    message = bc.excerpt(str(details.get("message") or error.user_message or type(error).__name__),
                         MESSAGE_LIMIT)
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
    elif replayed and status is not None and status >= 500:
        mapped = ReplayedServerError(
            f"{text} (replayed: Stripe saved this result for the idempotency key)", **common)
    elif status is not None:
        mapped = bc.error_class_for_status(status)(text, **common)
    else:
        mapped = bc.ProviderError(text, **common)
    if should_retry == "false" or isinstance(mapped, ReplayedServerError):
        mapped.retryable = False
    elif should_retry == "true" and mapped.code != "idempotency_error":
        mapped.retryable = True
    return mapped


def _unreadable_answer(error: Exception) -> bc.InvalidResponseError:
    """An exception other than the SDK's own while it handled Stripe's answer (for example a
    body that is not UTF-8, which its debug logging cannot even format)."""
    detail = " ".join(str(error).split())
    return bc.InvalidResponseError(
        f"Stripe's answer could not be read: {type(error).__name__}: {detail}",
        provider=tr.PROVIDER_NAME)


class _RedactedLog(logging.Filter):
    """Masks secrets in the stripe SDK's own log records (it logs response bodies at debug
    level, and a vendor or proxy may echo the key in one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


logging.getLogger("stripe").addFilter(_RedactedLog())


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
    raise bc.ConfigurationError(
        f"setting {name} must be a boolean (on/off, true/false, 1/0), got {value!r}")


def _number(name: str, value: float | int | str | None, default: float, *,
            integer: bool = False) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number) or isinstance(value, bool):
        raise bc.ConfigurationError(f"setting {name} must be a finite number, got {value!r}")
    if number < 0:
        raise bc.ConfigurationError(f"setting {name} must not be negative, got {value!r}")
    if integer and number != int(number):
        raise bc.ConfigurationError(f"setting {name} must be a whole number, got {value!r}")
    return number


class StripeProvider(bc.Provider):
    """Stripe billing credit grants (``billing.credit_grant``) through the official SDK."""

    name = tr.PROVIDER_NAME
    capabilities = bc.Capabilities(
        currencies=tr.STRIPE_CURRENCIES,
        custom_units=False,
        minor_units_only=True,
        priority=tr.PRIORITY_DOMAIN,
        scope_kinds=frozenset({"price_ids", "metered_prices_only"}),
        max_price_ids=tr.MAX_PRICES,
        max_segments=1,
        name_max_length=tr.MAX_NAME_LENGTH,
        time_resolution=timedelta(seconds=1),
        idempotency_key_memory=tr.KEY_MEMORY,
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
            "balance (include_balance) costs one credit balance summary call per active grant",
            "Stripe forgets idempotency keys after 24 h: a keyed create first pages the "
            "customer's grants for one carrying the key (ceil(grants/100) list requests; "
            "find_existing=off skips it)",
            "get_balance: one credit balance summary per live grant, as of now only; "
            "ledger_balance beyond available_balance is expired credit not yet posted (a note, "
            "not pending); uninvoiced usage is not deducted (uninvoiced_usage_deducted=False)",
            "test clocks: a grant on one is read at the clock's frozen_time (one GET per clock "
            "per provider; forget_test_clocks() to re-read)",
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
        bc.Setting("timeout", f"total seconds per request, connect to last byte "
                   f"(default {DEFAULT_TIMEOUT:g})"),
        bc.Setting("max_retries", f"retries after the first attempt (default "
                   f"{DEFAULT_MAX_RETRIES})"),
        bc.Setting("rate_limit", "requests per second (default 25 for sandbox keys, 100 live)"),
        bc.Setting("include_balance", "read each grant's balance: one extra call per grant "
                   "(default off)"),
        bc.Setting("find_existing", "before a keyed create, look for a grant already carrying "
                   "the key, since Stripe forgets keys after 24 h: ceil(customer's grants / 100) "
                   "list requests per create (default on)"),
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
        find_existing: bool | str | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = _now,
        runtime: bc.Runtime | None = None,
    ) -> None:
        key = api_key or os.environ.get("STRIPE_API_KEY")
        if not key:
            raise bc.ConfigurationError(
                "the stripe provider needs an API key: pass api_key=... or set STRIPE_API_KEY")
        if not isinstance(key, str):
            raise bc.ConfigurationError("setting api_key must be a string")
        register_secret(key)
        retries = int(_number("max_retries", max_retries, DEFAULT_MAX_RETRIES, integer=True))
        rate = _number("rate_limit", rate_limit, default_rate_limit(key)) or None
        super().__init__(runtime=runtime or bc.Runtime(
            retry=bc.RetryPolicy(attempts=retries + 1), rate_limit=bc.RateLimit(rate)))
        self._api_key = _Secret(key)
        self.mode = "live" if "_live_" in key else "test"
        self.base_url = check_base_url(
            (base_url or os.environ.get("STRIPE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            credential=True)
        self.stripe_account = stripe_account or os.environ.get("STRIPE_ACCOUNT") or None
        self.timeout = _number("timeout", timeout, DEFAULT_TIMEOUT)
        self.include_balance = _flag("include_balance", include_balance, default=False)
        self.find_existing_before_create = _flag("find_existing", find_existing, default=True)
        self._clock = clock
        self._frozen: dict[str, datetime] = {}
        # The SDK and httpx load here, on first use, not when the class is imported.
        import stripe

        from ._http import _HTTPXClient

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
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        label: str,
        idempotency_key: str | None = None,
        retry_safe: bool = True,
    ) -> bc.Call[Answer]:
        """One Stripe request through the SDK (``raw_request``: its encoding, headers, auth and
        error mapping), as a core ``Call`` answering the decoded JSON with its request id.

        SDK errors become core errors raised outside the ``except`` block, so no SDK exception
        (which holds the request and its headers) stays in ``__context__``.
        """
        import stripe

        kwargs: dict[str, Any] = dict(params or {})
        if idempotency_key is not None:
            kwargs["idempotency_key"] = idempotency_key
        client = self.client

        def run() -> Answer:
            try:
                return Answer.of(client.raw_request(method, path, **kwargs))
            except bc.ProviderError as error:  # the transport's deadline or body limit (_http)
                mapped = error.with_traceback(None)
            except stripe.StripeError as error:
                mapped = map_error(error)
            except Exception as error:  # the SDK choking on what came back
                mapped = _unreadable_answer(error)
            raise mapped

        async def arun() -> Answer:
            try:
                return Answer.of(await client.raw_request_async(method, path, **kwargs))
            except bc.ProviderError as error:  # the transport's deadline or body limit (_http)
                mapped = error.with_traceback(None)
            except stripe.StripeError as error:
                mapped = map_error(error)
            except Exception as error:  # the SDK choking on what came back
                mapped = _unreadable_answer(error)
            raise mapped

        return bc.Call(run, arun, retry_safe=retry_safe, label=label)

    # -- test clocks ---------------------------------------------------------------------

    def forget_test_clocks(self) -> None:
        """Forget the ``frozen_time`` read for each test clock (read again on next use), for
        example after advancing a clock."""
        self._frozen.clear()

    def _moments(self, objs: Iterable[Any]) -> bc.Flow[dict[str, datetime]]:
        """The ``frozen_time`` of each test clock ``objs`` (grants, transactions) belong to.

        A grant "belongs to" its ``test_clock`` ("ID of the test clock this credit grant belongs
        to", ``stripe/billing/_credit_grant.py``) and the clock's ``frozen_time`` is the "Time at
        which all objects belonging to this clock are frozen" (``stripe/test_helpers/
        _test_clock.py``): such a grant's status, balance and consumption are read at that
        time, not the wall clock's. The clock is read with ``GET /v1/test_helpers/test_clocks/
        {id}`` once per clock for this provider's life (``forget_test_clocks`` drops the
        cache); an expanded ``test_clock`` object needs no request. A clock still
        ``advancing`` is read again next time (its ``frozen_time`` is moving).
        """
        found: dict[str, datetime] = {}
        for obj in objs:
            clock_id = tr.test_clock_of(obj)
            if clock_id is None or clock_id in found:
                continue
            ref = obj.get("test_clock") if isinstance(obj, Mapping) else None
            if isinstance(ref, Mapping) and ref.get("frozen_time") is not None:
                found[clock_id] = self._frozen_of(Answer(ref, None, False))
                continue
            if clock_id in self._frozen:
                found[clock_id] = self._frozen[clock_id]
                continue
            answer = yield self._call("get", tr.test_clock_path(clock_id),
                                      label="test_clocks.retrieve")
            data = answer.mapping("test_helpers.test_clock")
            found[clock_id] = self._frozen_of(answer)
            if data.get("status") != "advancing":
                self._frozen[clock_id] = found[clock_id]
        return found

    def _frozen_of(self, answer: Answer) -> datetime:
        data = answer.mapping("test_helpers.test_clock")
        try:
            return tr.frozen_time_of(data)
        except bc.ProviderError as error:
            problem = error.message
        raise answer.invalid(problem)

    def _moment(self, obj: Any, moments: Mapping[str, datetime]) -> datetime:
        """The time ``obj`` lives on: its test clock's ``frozen_time``, else this provider's
        clock."""
        clock_id = tr.test_clock_of(obj)
        if clock_id is not None and clock_id in moments:
            return moments[clock_id]
        return self._clock()

    def _read(self, answer: Answer) -> bc.Flow[bc.CreditGrant]:
        """A grant answer read as a neutral grant at the time it lives on (its test clock's
        ``frozen_time`` for a grant on a clock)."""
        data = answer.mapping("billing.credit_grant")
        moments = yield from self._moments([data])
        return self._grant_of(answer, self._moment(data, moments))

    def _grant_of(self, answer: Answer, now: datetime | None = None) -> bc.CreditGrant:
        """A grant answer read as a neutral grant (no balance) at ``now`` (default: this
        provider's clock); unusable → InvalidResponseError."""
        data = answer.mapping("billing.credit_grant")
        try:
            return tr.from_stripe(data, now=self._clock() if now is None else now)
        except bc.ProviderError as error:  # the only error reading raises (reads_vendor_payload)
            problem = error.message
        raise answer.invalid(problem)

    def _with_balance(self, grant: bc.CreditGrant) -> bc.Flow[bc.CreditGrant]:
        """``grant`` with its balance when ``include_balance`` is on."""
        if not self.include_balance:
            return grant
        balance = yield from self._balance_flow(grant)
        return grant.model_copy(update={"balance": balance})

    def _balance_flow(self, grant: bc.CreditGrant) -> bc.Flow[bc.Money]:
        """What is left of ``grant`` now or in windows still to come (the neutral balance).

        Stripe's credit balance summary (``available_balance``, ``ledger_balance``) reports the
        credits a customer holds *now*: a grant counts once it is effective, through its
        ``credits_granted`` balance transaction at ``effective_at``
        (https://docs.stripe.com/api/billing/credit-balance-summary,
        https://docs.stripe.com/api/billing/credit-balance-transaction). So a grant that has
        not started yet has nothing consumed and its whole amount still to come: it is not
        asked (the summary would say 0). A voided or expired grant has nothing left. Only an
        active grant costs the summary call.
        """
        status = grant.status
        if status is bc.GrantStatus.SCHEDULED:
            return grant.amount
        if status in (bc.GrantStatus.VOIDED, bc.GrantStatus.EXPIRED):
            return grant.amount.with_amount(Decimal(0))
        assert grant.id is not None
        assert grant.amount.currency is not None
        params = tr.balance_params(grant.customer_id, grant.id)
        answer = yield self._call("get", tr.SUMMARY_PATH, params,
                                  label="credit_balance_summary.retrieve")
        data = answer.mapping("billing.credit_balance_summary")
        try:
            return tr.balance_from_summary(data, grant.amount.currency)
        except bc.ProviderError as error:  # the only error reading raises (reads_vendor_payload)
            problem = error.message
        raise answer.invalid(problem)

    # -- flows ---------------------------------------------------------------------------

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        params = tr.create_params(grant)
        try:
            answer = yield self._call("post", tr.GRANTS_PATH, params, label="credit_grants.create",
                                      idempotency_key=idempotency_key)
        except ReplayedServerError:
            # Stripe saved a 5xx for this key and replays it while it keeps the key: the first
            # attempt may or may not have made the grant. Look for it; if it is not there,
            # create under a key derived from this one (concurrent callers derive the same).
            if grant.idempotency_key is None:
                raise
            found = yield from self._find_by_key(grant.customer_id, idempotency_key)
            if found is not None:
                return found.model_copy(update={"replayed": True})
            answer = yield self._call("post", tr.GRANTS_PATH, params,
                                      label="credit_grants.create",
                                      idempotency_key=f"{idempotency_key}~after-saved-5xx")
        stored = (yield from self._read(answer)).model_copy(update={"replayed": answer.replayed})
        if drift := tr.differences(grant, stored):
            stored = stored.model_copy(update={"adjustments": (*stored.adjustments, *drift)})
        return stored

    def _find_by_key(self, customer_id: str, key: str) -> bc.Flow[bc.CreditGrant | None]:
        """The customer's grant carrying ``key`` (contract C1), read from its metadata.

        Stripe has no search or filter on credit grants by metadata (the list endpoint filters
        by ``customer``/``customer_account`` only: https://docs.stripe.com/api/billing/credit-
        grant/list), so this pages the customer's grants, 100 a time, without the balance
        calls ``include_balance`` would add: ceil(grants / 100) requests per keyed create.
        """
        cursor: str | None = None
        guard = self.listing_guard("Stripe credit_grants.list")
        while True:
            params = tr.list_params(customer_id, limit=tr.MAX_PAGE_SIZE, starting_after=cursor)
            answer = yield self._call("get", tr.GRANTS_PATH, params, label="credit_grants.list")
            items, has_more = self._list_of(answer)
            for item in items:
                metadata = item.get("metadata") if isinstance(item, Mapping) else None
                if isinstance(metadata, Mapping) and metadata.get(tr.META_IDEMPOTENCY_KEY) == key:
                    return (yield from self._read(Answer(item, answer.request_id, True)))
            cursor = guard.page(_ids(items), self._next_cursor(answer, items, has_more),
                                request_id=answer.request_id, items=bool(items))
            if cursor is None:
                return None

    def _list_of(self, answer: Answer) -> tuple[list[Any], bool]:
        data = answer.mapping("list")
        items = data.get("data")
        has_more = data.get("has_more")
        if not isinstance(items, list):
            raise answer.invalid(f"list data is {type(items).__name__}, not a list")
        if not isinstance(has_more, bool):
            raise answer.invalid(f"list has_more is {has_more!r}, not a boolean")
        return items, has_more

    @staticmethod
    def _next_cursor(answer: Answer, items: list[Any], has_more: bool,
                     seen: set[str] | None = None) -> str | None:
        if not has_more:
            return None
        last = items[-1] if items else None
        cursor = last.get("id") if isinstance(last, Mapping) else None
        if not isinstance(cursor, str) or not cursor:
            raise answer.invalid("has_more is true but the last item has no id to page from")
        if seen is not None:
            if cursor in seen:
                raise answer.invalid(f"the listing returned a cursor seen before ({cursor[:80]!r})")
            seen.add(cursor)
        return cursor

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        params = tr.list_params(query.customer_id, limit=query.page_size, starting_after=cursor)
        answer = yield self._call("get", tr.GRANTS_PATH, params, label="credit_grants.list")
        items, has_more = self._list_of(answer)
        moments = yield from self._moments(items)
        grants, unreadable = bc.read_items(
            self.name, items, lambda item: tr.from_stripe(item, now=self._moment(item, moments)),
            tr.vendor_id)
        if self.include_balance:
            with_balance = []
            for grant in grants:
                with_balance.append((yield from self._with_balance(grant)))  # noqa: PERF401
            grants = with_balance
        return bc.Page(grants, self._next_cursor(answer, items, has_more), unreadable,
                       request_id=answer.request_id)

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        answer = yield self._call("get", tr.grant_path(grant_id), label="credit_grants.retrieve")
        return (yield from self._with_balance((yield from self._read(answer))))

    def _void(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        answer = yield self._call("post", tr.grant_path(grant_id, "void"),
                                  label="credit_grants.void_grant",
                                  idempotency_key=f"bc-void-{uuid.uuid4()}")
        return (yield from self._with_balance((yield from self._read(answer))))

    def _expire(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        answer = yield self._call("post", tr.grant_path(grant_id, "expire"),
                                  label="credit_grants.expire",
                                  idempotency_key=f"bc-expire-{uuid.uuid4()}")
        return (yield from self._with_balance((yield from self._read(answer))))

    # -- balance -------------------------------------------------------------------------

    def _grant_balance(self, grant_id: str) -> bc.Flow[bc.Money]:
        answer = yield self._call("get", tr.grant_path(grant_id), label="credit_grants.retrieve")
        return (yield from self._balance_flow((yield from self._read(answer))))

    def grant_balance(self, grant_id: str) -> bc.Money:
        """A grant's remaining credits (now or still to come): for an active grant, from
        Stripe's credit balance summary (two calls: the grant, then the summary)."""
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


def _ids(items: list[Any]) -> list[str | None]:
    """The Stripe ids of a page's raw items (None where an item has none)."""
    return [item.get("id") if isinstance(item, Mapping) and isinstance(item.get("id"), str)
            else None for item in items]
