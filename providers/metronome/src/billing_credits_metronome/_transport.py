"""httpx, sync and async, as ``billing_credits.Call`` objects; Metronome errors as core errors.

Every Metronome endpoint used here is a ``POST`` with a JSON body. Bodies are encoded with
exact numbers (``Decimal`` → the JSON number that says exactly that decimal) and responses are
decoded with ``parse_float=Decimal``, so no amount ever passes through a binary float.

Errors: Metronome answers ``{"message": ...}`` (some endpoints add ``"code"``). The status maps
onto the core hierarchy with ``billing_credits.error_class_for_status``; 429 carries the
``Retry-After`` (or ``retry-after-ms``) wait; timeouts and connection failures become retryable
``UnavailableError``. Metronome documents no request-id header; ``x-request-id`` or
``request-id`` is kept when present, on every ``Reply`` and error. The bearer token lives only in
the request header: it is registered with ``billing_credits._secrets.register_secret`` (masked in
every message the library writes), never logged, never part of a repr, and never reachable from
an error: network failures are raised outside the ``except`` block, so no httpx exception (whose
``request.headers`` hold the token) hangs on ``__context__``.

Every 2xx answer is validated before use: ``page_of`` and ``created_id`` check the shapes the
SDK's response models declare and raise ``billing_credits.InvalidResponseError`` (with the
request id and a bounded, redacted excerpt of the body) otherwise.

httpx is imported on first use (building a client or a request), not with this module: the
provider classes load without it, so ``billing-credits providers`` stays fast.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import billing_credits as bc
import billing_credits_metronome._translate as tr
from billing_credits._bounded import (
    DEFAULT_MAX_BODY,
    BodyTooLarge,
    DeadlineExceeded,
    asend_bounded,
    send_bounded,
)
from billing_credits._secrets import check_base_url, register_secret

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_BASE_URL", "MetronomeHTTP", "Reply", "created_id", "dumps", "loads",
           "page_of"]

DEFAULT_BASE_URL = "https://api.metronome.com"

# Endpoints (paths under the base URL).
CREATE_GRANT = "/v1/credits/createGrant"
LIST_GRANTS = "/v1/credits/listGrants"
EDIT_GRANT = "/v1/credits/editGrant"
VOID_GRANT = "/v1/credits/voidGrant"
CREATE_CREDIT = "/v1/contracts/customerCredits/create"
LIST_CREDITS = "/v1/contracts/customerCredits/list"
UPDATE_END_DATE = "/v1/contracts/customerCredits/updateEndDate"
ADD_KEY = "/v1/customFields/addKey"
LIST_KEYS = "/v1/customFields/listKeys"
USER_AGENT = "billing-credits-metronome/0.1"
ERROR_BODY_LIMIT = 65_536
"""An error body longer than this (bytes) is kept as a bounded excerpt."""

log = logging.getLogger("billing_credits_metronome")


def _default(value: object) -> int | float:
    if isinstance(value, Decimal):
        return tr.json_number(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(body: Mapping[str, Any]) -> bytes:
    """JSON with exact numbers: a ``Decimal`` that a double cannot carry is an error."""
    return json.dumps(body, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def loads(content: bytes | str) -> Any:
    """JSON with every non-integer number as an exact ``Decimal``.

    From bytes, the objects of a response's ``data`` (a listing's items, or the one object
    answered) come marked as known-valid text when the page's text is
    (``bc.decode_vendor_json``, checked once for the page): a grant read from one keeps it as
    ``raw`` without walking every string of it again."""
    if isinstance(content, bytes):
        return bc.decode_vendor_json(content, parse_float=Decimal)
    return json.loads(content, parse_float=Decimal)


def _retry_after(headers: httpx.Headers) -> float | None:
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
        return None if math.isnan(seconds) else seconds  # NaN: no usable wait
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
        except (TypeError, ValueError):  # neither seconds nor an HTTP date: no usable wait
            return None
        if parsed is None:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return max((parsed - datetime.now(UTC)).total_seconds(), 0.0)


@dataclass(frozen=True)
class Reply:
    """A decoded 2xx answer and Metronome's request id for it (None when it sent none)."""

    body: Any
    request_id: str | None = None


def _wrong_shape(provider: str, label: str, reply: Reply, what: str) -> bc.InvalidResponseError:
    return bc.InvalidResponseError(
        f"Metronome {label} answered with a body of the wrong shape ({what}): "
        f"{bc.excerpt(reply.body, 200)}",
        provider=provider, status=200, body=bc.excerpt(reply.body),
        request_id=reply.request_id)


def page_of(provider: str, label: str, reply: Reply) -> tuple[list[Any], str | None]:
    """``(items, next cursor)`` of a list answer ``{data: [...], next_page: str | null}``.

    The shape of ``SyncCursorPage`` / ``SyncCursorPageWithoutLimit`` (``metronome/pagination.py``);
    anything else is ``InvalidResponseError``. Items are not checked here: each is read on its
    own (``billing_credits.read_items``).
    """
    body = reply.body
    if not isinstance(body, dict):
        raise _wrong_shape(provider, label, reply, "not a JSON object")
    data = body.get("data")
    if not isinstance(data, list):
        raise _wrong_shape(provider, label, reply, "'data' is not a list")
    cursor = body.get("next_page")
    if cursor is not None and not isinstance(cursor, str):
        raise _wrong_shape(provider, label, reply, "'next_page' is not a string or null")
    return data, cursor or None


def created_id(provider: str, label: str, reply: Reply) -> str:
    """The id of a create/edit answer ``{data: {id: str}}`` (``shared/id.py``)."""
    body = reply.body
    data = body.get("data") if isinstance(body, dict) else None
    found = data.get("id") if isinstance(data, dict) else None
    if not isinstance(found, str) or not found:
        raise _wrong_shape(provider, label, reply, "no 'data.id' string")
    return found


class _Token:
    """The bearer token, kept out of every repr and str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def header(self) -> str:
        return f"Bearer {self._value}"

    def __repr__(self) -> str:
        return "_Token('**********')"

    __str__ = __repr__


def _response(status: int, headers: httpx.Headers, content: bytes) -> httpx.Response:
    """A read answer as an httpx response (no request attached: it holds the token)."""
    import httpx

    kept = [(k, v) for k, v in headers.multi_items() if k.lower() != "content-encoding"]
    return httpx.Response(status, headers=kept, content=content)  # content is decoded already


def _request_id(headers: httpx.Headers) -> str | None:
    found: str | None = headers.get("x-request-id") or headers.get("request-id")
    return found


class MetronomeHTTP:
    """POST JSON to Metronome through a caller's or our own httpx clients.

    Clients we create are closed by ``close``/``aclose``; a caller's are left open.
    """

    def __init__(
        self,
        *,
        provider: str,
        bearer_token: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        max_body: int = DEFAULT_MAX_BODY,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.provider = provider
        register_secret(bearer_token)
        self.base_url = check_base_url(base_url, credential=True).rstrip("/")
        self.timeout = timeout
        self.max_body = max_body
        self._token = _Token(bearer_token)
        self._client = http_client
        self._aclient = async_http_client
        self._own_client = http_client is None
        self._own_aclient = async_http_client is None

    def __repr__(self) -> str:
        return f"MetronomeHTTP(base_url={self.base_url!r})"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            import httpx  # on first use: listing the installed providers must not load httpx

            self._client = httpx.Client(timeout=self.timeout)
        return self._client

    @property
    def aclient(self) -> httpx.AsyncClient:
        if self._aclient is None:
            import httpx

            self._aclient = httpx.AsyncClient(timeout=self.timeout)
        return self._aclient

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        if self._own_aclient and self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
        self.close()

    def _request(self, path: str, body: Mapping[str, Any],
                 query: Mapping[str, str | int] | None) -> httpx.Request:
        """Build the request: never reused, so each attempt gets fresh headers."""
        import httpx

        return httpx.Request(
            "POST", f"{self.base_url}{path}", params=dict(query or {}), content=dumps(body),
            headers={"Authorization": self._token.header(), "Content-Type": "application/json",
                     "Accept": "application/json", "User-Agent": USER_AGENT},
            extensions={"timeout": httpx.Timeout(self.timeout).as_dict()},
        )

    def call(
        self, path: str, body: Mapping[str, Any], *, query: Mapping[str, str | int] | None = None,
        retry_safe: bool = True, label: str = "",
    ) -> bc.Call[Reply]:
        """One POST as a ``billing_credits.Call`` returning the decoded answer as a ``Reply``."""
        import httpx

        content = dumps(body)  # refuse inexact numbers before any attempt
        del content

        def sync() -> Reply:
            request = self._request(path, body, query)
            started = time.monotonic()
            failure: bc.ProviderError | None = None
            answer: tuple[int, httpx.Headers, bytes] | None = None
            try:
                answer = send_bounded(self.client, request, seconds=self.timeout,
                                      limit=self.max_body)
            except httpx.TransportError as error:
                failure = self._network_error(error, label)
            except (DeadlineExceeded, BodyTooLarge) as error:
                failure = self._bounds_error(error, label)
            del request
            if failure is not None:
                raise failure  # outside the except block: no httpx error on __context__
            assert answer is not None
            return self._result(_response(*answer), label, started)

        async def async_() -> Reply:
            request = self._request(path, body, query)
            started = time.monotonic()
            failure: bc.ProviderError | None = None
            answer: tuple[int, httpx.Headers, bytes] | None = None
            try:
                answer = await asend_bounded(self.aclient, request, seconds=self.timeout,
                                             limit=self.max_body)
            except httpx.TransportError as error:
                failure = self._network_error(error, label)
            except (DeadlineExceeded, BodyTooLarge) as error:
                failure = self._bounds_error(error, label)
            del request
            if failure is not None:
                raise failure  # outside the except block: no httpx error on __context__
            assert answer is not None
            return self._result(_response(*answer), label, started)

        return bc.Call(sync, async_, retry_safe=retry_safe, label=label or path)

    def _bounds_error(self, error: DeadlineExceeded | BodyTooLarge, label: str) -> bc.ProviderError:
        if isinstance(error, DeadlineExceeded):
            log.info("metronome %s: total deadline exceeded", label)
            return bc.UnavailableError(
                f"Metronome request {label} timed out: {error}", provider=self.provider,
                retryable=True)
        return bc.InvalidResponseError(
            f"Metronome {label} answered {error.status} with a body larger than the "
            f"{error.limit}-byte limit (max_body)", provider=self.provider, status=error.status,
            request_id=_request_id(error.headers))

    def _network_error(self, error: httpx.TransportError, label: str) -> bc.ProviderError:
        import httpx

        kind = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
        log.info("metronome %s: request %s (%s)", label, kind, type(error).__name__)
        return bc.UnavailableError(
            f"Metronome request {label} {kind}: {type(error).__name__}",
            provider=self.provider, retryable=True,
        )

    def _result(self, response: httpx.Response, label: str, started: float) -> Reply:
        elapsed = time.monotonic() - started
        log.debug("metronome %s: %s in %.3fs", label, response.status_code, elapsed)
        request_id = _request_id(response.headers)
        if response.status_code < 400:
            decoded: Any = None
            failed = False
            if not response.content.strip():
                return Reply(None, request_id)  # e.g. addKey: the SDK expects no body
            try:
                decoded = loads(response.content)
            except (ValueError, RecursionError):
                failed = True
            if failed:
                raise bc.InvalidResponseError(
                    f"Metronome {label} answered {response.status_code} with a non-JSON body",
                    provider=self.provider, status=response.status_code,
                    body=bc.excerpt(response.text), request_id=request_id)
            return Reply(decoded, request_id)
        raise self._status_error(response, label)

    def _status_error(self, response: httpx.Response, label: str) -> bc.ProviderError:
        status = response.status_code
        body: Mapping[str, Any] | str
        try:
            decoded = loads(response.content)
            body = decoded if isinstance(decoded, dict) else bc.excerpt(response.text)
        except (ValueError, RecursionError):
            body = bc.excerpt(response.text)
        message = body.get("message") if isinstance(body, Mapping) else None
        code = body.get("code") if isinstance(body, Mapping) else None
        if len(response.content) > ERROR_BODY_LIMIT:  # a proxy's page, a runaway answer
            body = bc.excerpt(response.text)
        if message is not None:
            message = bc.excerpt(str(message), 300)
        if code is not None:
            code = bc.excerpt(str(code), 100)
        request_id = _request_id(response.headers)
        text = f"Metronome {label} failed with {status}: {message or response.reason_phrase}"
        cls = bc.error_class_for_status(status)
        kwargs: dict[str, Any] = {
            "provider": self.provider, "status": status, "body": body,
            "request_id": request_id, "code": str(code) if code is not None else None,
        }
        if cls is bc.RateLimitedError:
            return bc.RateLimitedError(text, retry_after=_retry_after(response.headers), **kwargs)
        return cls(text, **kwargs)
