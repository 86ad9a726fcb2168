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

    # HTTPXClient's own signature (it already differs from the HTTPClient base the stubs name).
    def request(self, method: str, url: str, headers: Mapping[str, str],  # type: ignore[override]
                post_data: Any = None) -> tuple[bytes, int, Mapping[str, str]]:
        return _text_body(*super().request(method, url, headers, post_data))

    async def request_async(self, method: str, url: str, headers: Mapping[str, str],
                            post_data: Any = None) -> tuple[bytes, int, Mapping[str, str]]:
        return _text_body(*await super().request_async(method, url, headers, post_data))

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
