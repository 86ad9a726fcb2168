"""The stripe SDK's httpx client as the Stripe provider uses it.

Private, and imported only when a ``StripeProvider`` is constructed: importing it loads the
stripe SDK and httpx, which listing the installed providers must not pay for.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx
import stripe

import billing_credits as bc
from billing_credits._bounded import (
    DEFAULT_MAX_BODY,
    BodyTooLarge,
    DeadlineExceeded,
    asend_bounded,
    send_bounded,
)

__all__ = ["_HTTPXClient"]


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
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        super().__init__(timeout=timeout, allow_sync_methods=True)
        self.max_body = max_body
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

    # HTTPXClient's own signature (it already differs from the HTTPClient base the stubs name).
    # The SDK's ``request``/``request_async`` (stripe/_http_client.py) send and read the whole
    # body under httpx's per-read timeouts; these stream it under a TOTAL deadline and a body
    # limit (billing_credits._bounded). Failures are project errors raised outside any
    # ``except`` block (no httpx error, which holds the request headers, on ``__context__``).
    def request(self, method: str, url: str, headers: Mapping[str, str],  # type: ignore[override]
                post_data: Any = None) -> tuple[bytes, int, Mapping[str, str]]:
        if self._client is None:
            raise RuntimeError("Stripe: this client was built without sync methods")
        args, kwargs = self._get_request_args_kwargs(method, url, headers, post_data)
        request = self._client.build_request(*args, **kwargs)
        answer: tuple[int, httpx.Headers, bytes] | None = None
        failure: Exception | None = None
        try:
            answer = send_bounded(self._client, request, seconds=self._seconds,
                                  limit=self.max_body)
        except (DeadlineExceeded, BodyTooLarge) as error:
            failure = self._bounds_error(error)
        except Exception as error:
            failure = _connection_error(error)
        del request
        if failure is not None:
            raise failure
        assert answer is not None
        status, response_headers, content = answer
        return _text_body(content, status, response_headers)

    async def request_async(self, method: str, url: str, headers: Mapping[str, str],
                            post_data: Any = None) -> tuple[bytes, int, Mapping[str, str]]:
        args, kwargs = self._get_request_args_kwargs(method, url, headers, post_data)
        request = self._client_async.build_request(*args, **kwargs)
        answer: tuple[int, httpx.Headers, bytes] | None = None
        failure: Exception | None = None
        try:
            answer = await asend_bounded(self._client_async, request, seconds=self._seconds,
                                         limit=self.max_body)
        except (DeadlineExceeded, BodyTooLarge) as error:
            failure = self._bounds_error(error)
        except Exception as error:
            failure = _connection_error(error)
        del request
        if failure is not None:
            raise failure
        assert answer is not None
        status, response_headers, content = answer
        return _text_body(content, status, response_headers)

    @property
    def _seconds(self) -> float:
        timeout = self._timeout
        return float(timeout) if isinstance(timeout, int | float) else 80.0  # the SDK's default

    def _bounds_error(self, error: DeadlineExceeded | BodyTooLarge) -> bc.ProviderError:
        if isinstance(error, DeadlineExceeded):
            return bc.UnavailableError(f"Stripe request timed out: {error}", provider="stripe",
                                       retryable=True)
        request_id = error.headers.get("request-id")
        return bc.InvalidResponseError(
            f"Stripe answered {error.status} with a body larger than the {error.limit}-byte "
            "limit", provider="stripe", status=error.status, request_id=request_id)

    def close(self) -> None:
        if self._owns_sync and self._client is not None:
            self._client.close()

    async def close_async(self) -> None:
        if self._owns_async:
            await self._client_async.aclose()


def _text_body(content: bytes, status: int, headers: Mapping[str, str]
               ) -> tuple[bytes, int, Mapping[str, str]]:
    """A body that is not UTF-8 made decodable (invalid bytes replaced), so the SDK reports
    it as an undecodable answer with its status and headers instead of crashing while
    formatting its debug log."""
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        content = content.decode("utf-8", "replace").encode("utf-8")
    return content, status, headers


def _connection_error(error: Exception) -> Exception:
    """What the SDK's ``_handle_request_error`` raises (a retryable ``APIConnectionError``),
    built without chaining the httpx error."""
    from stripe import APIConnectionError

    return APIConnectionError(  # type: ignore[no-untyped-call]
        "Unexpected error communicating with Stripe.\n\n"
        f"(Network error: A {type(error).__name__} was raised)", should_retry=True)
