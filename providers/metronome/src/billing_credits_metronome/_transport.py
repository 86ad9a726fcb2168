"""httpx, sync and async, as ``billing_credits.Call`` objects; Metronome errors as core errors.

Every Metronome endpoint used here is a ``POST`` with a JSON body. Bodies are encoded with
exact numbers (``Decimal`` → the JSON number that says exactly that decimal) and responses are
decoded with ``parse_float=Decimal``, so no amount ever passes through a binary float.

Errors: Metronome answers ``{"message": ...}`` (some endpoints add ``"code"``). The status maps
onto the core hierarchy with ``billing_credits.error_class_for_status``; 429 carries the
``Retry-After`` (or ``retry-after-ms``) wait; timeouts and connection failures become retryable
``UnavailableError``. Metronome documents no request-id header; ``x-request-id`` or
``request-id`` is kept when present. The bearer token lives only in the request header: it is
never logged, never kept on errors, and never part of a repr.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

import billing_credits as bc

from . import _translate as tr

__all__ = ["DEFAULT_BASE_URL", "MetronomeHTTP", "dumps", "loads"]

DEFAULT_BASE_URL = "https://api.metronome.com"
USER_AGENT = "billing-credits-metronome/0.1"

log = logging.getLogger("billing_credits_metronome")


def _default(value: object) -> int | float:
    if isinstance(value, Decimal):
        return tr.json_number(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(body: Mapping[str, Any]) -> bytes:
    """JSON with exact numbers: a ``Decimal`` that a double cannot carry is an error."""
    return json.dumps(body, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def loads(content: bytes | str) -> Any:
    """JSON with every non-integer number as an exact ``Decimal``."""
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
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return max((parsed - datetime.now(UTC)).total_seconds(), 0.0)


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
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
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
            self._client = httpx.Client(timeout=self.timeout)
        return self._client

    @property
    def aclient(self) -> httpx.AsyncClient:
        if self._aclient is None:
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
        return httpx.Request(
            "POST", f"{self.base_url}{path}", params=dict(query or {}), content=dumps(body),
            headers={"Authorization": self._token.header(), "Content-Type": "application/json",
                     "Accept": "application/json", "User-Agent": USER_AGENT},
            extensions={"timeout": httpx.Timeout(self.timeout).as_dict()},
        )

    def call(
        self, path: str, body: Mapping[str, Any], *, query: Mapping[str, str | int] | None = None,
        retry_safe: bool = True, label: str = "",
    ) -> bc.Call[Any]:
        """One POST as a ``billing_credits.Call`` returning the decoded JSON body."""
        content = dumps(body)  # refuse inexact numbers before any attempt
        del content

        def sync() -> Any:
            request = self._request(path, body, query)
            started = time.monotonic()
            try:
                response = self.client.send(request)
            except httpx.TransportError as error:
                raise self._network_error(error, label) from None
            return self._result(response, label, started)

        async def async_() -> Any:
            request = self._request(path, body, query)
            started = time.monotonic()
            try:
                response = await self.aclient.send(request)
            except httpx.TransportError as error:
                raise self._network_error(error, label) from None
            await response.aread()
            return self._result(response, label, started)

        return bc.Call(sync, async_, retry_safe=retry_safe, label=label or path)

    def _network_error(self, error: httpx.TransportError, label: str) -> bc.ProviderError:
        kind = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
        log.info("metronome %s: request %s (%s)", label, kind, type(error).__name__)
        return bc.UnavailableError(
            f"Metronome request {label} {kind}: {type(error).__name__}",
            provider=self.provider, retryable=True,
        )

    def _result(self, response: httpx.Response, label: str, started: float) -> Any:
        elapsed = time.monotonic() - started
        log.debug("metronome %s: %s in %.3fs", label, response.status_code, elapsed)
        if response.status_code < 400:
            try:
                return loads(response.content)
            except ValueError:
                raise bc.ProviderError(
                    f"Metronome {label} answered {response.status_code} with a non-JSON body",
                    provider=self.provider, status=response.status_code,
                    body=response.text[:1000],
                ) from None
        raise self._status_error(response, label)

    def _status_error(self, response: httpx.Response, label: str) -> bc.ProviderError:
        status = response.status_code
        body: Mapping[str, Any] | str
        try:
            decoded = loads(response.content)
            body = decoded if isinstance(decoded, dict) else response.text[:1000]
        except ValueError:
            body = response.text[:1000]
        message = body.get("message") if isinstance(body, Mapping) else None
        code = body.get("code") if isinstance(body, Mapping) else None
        request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
        text = f"Metronome {label} failed with {status}: {message or response.reason_phrase}"
        cls = bc.error_class_for_status(status)
        kwargs: dict[str, Any] = {
            "provider": self.provider, "status": status, "body": body,
            "request_id": request_id, "code": str(code) if code is not None else None,
        }
        if cls is bc.RateLimitedError:
            return bc.RateLimitedError(text, retry_after=_retry_after(response.headers), **kwargs)
        return cls(text, **kwargs)
