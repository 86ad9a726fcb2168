"""One HTTP exchange over httpx with a TOTAL deadline and a maximum body size (issue 9).

httpx's timeouts apply per phase and per read: a vendor that sends one byte every half second
never trips them. ``send_bounded``/``asend_bounded`` stream the answer, checking the deadline
(connect + send + whole body) and the running body size per chunk. The async side also runs
under ``anyio.fail_after``, so even a stalled read ends at the deadline; the sync side ends at
the first chunk (or httpx read timeout) after it.

Failures are the small exceptions below, which each transport turns into its own project
error (``UnavailableError`` / ``InvalidResponseError``) with its vendor's request id. httpx
is imported only by the caller: this module does not import it at module level.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_MAX_BODY", "BodyTooLarge", "DeadlineExceeded", "asend_bounded",
           "send_bounded"]

DEFAULT_MAX_BODY = 16 * 1024 * 1024
"""The largest answer body (bytes, after content decoding) a vendor transport reads."""


class DeadlineExceeded(Exception):  # noqa: N818 - a signal, turned into UnavailableError
    """The whole exchange took longer than its total deadline."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"the total deadline of {timeout:g}s per request was exceeded")
        self.timeout = timeout


class BodyTooLarge(Exception):  # noqa: N818 - a signal, turned into InvalidResponseError
    """The answer's body is larger than the limit; only its status and headers are kept."""

    def __init__(self, limit: int, status: int, headers: httpx.Headers) -> None:
        super().__init__(f"the answer's body is larger than {limit} bytes")
        self.limit = limit
        self.status = status
        self.headers = headers


def _too_large_by_length(response: httpx.Response, limit: int) -> bool:
    try:
        return int(response.headers.get("content-length") or 0) > limit
    except ValueError:
        return False


def send_bounded(client: httpx.Client, request: httpx.Request, *, seconds: float,
                 limit: int = DEFAULT_MAX_BODY) -> tuple[int, httpx.Headers, bytes]:
    """``(status, headers, body)``; httpx errors pass through unchanged."""
    deadline = time.monotonic() + seconds
    response = client.send(request, stream=True)
    try:
        if _too_large_by_length(response, limit):
            raise BodyTooLarge(limit, response.status_code, response.headers)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit, response.status_code, response.headers)
            if time.monotonic() > deadline:
                raise DeadlineExceeded(seconds)
            chunks.append(chunk)
        if time.monotonic() > deadline:
            raise DeadlineExceeded(seconds)
        return response.status_code, response.headers, b"".join(chunks)
    finally:
        response.close()


async def asend_bounded(client: httpx.AsyncClient, request: httpx.Request, *, seconds: float,
                        limit: int = DEFAULT_MAX_BODY) -> tuple[int, httpx.Headers, bytes]:
    """The async ``send_bounded``: the deadline also cancels a stalled connect or read."""
    import anyio

    with anyio.move_on_after(seconds) as scope:
        response = await client.send(request, stream=True)
        try:
            if _too_large_by_length(response, limit):
                raise BodyTooLarge(limit, response.status_code, response.headers)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit, response.status_code, response.headers)
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
    # Only a cancelled scope gets here (every path inside returns or raises).
    del scope
    raise DeadlineExceeded(seconds)
