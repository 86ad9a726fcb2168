"""A kit for stateful vendor fakes: one app, two ways to reach it, and fault injection.

A vendor fake is a ``FakeApp``: ``handle(request) -> response`` holding the vendor's state,
plus ``error(status, message)`` answering in the vendor's error format. The kit reaches it:

- in process, through ``FakeTransport`` (an httpx transport for sync and async clients);
- over loopback HTTP, through ``serve(app)`` (a threaded server on 127.0.0.1, port chosen
  by the OS), for tests and benchmarks that want real sockets.

Both consult the same ``Faults``: latency, a server-side rate limit answered with 429 and
``Retry-After``, random or scripted 429s, 5xx, connection resets, and timeouts *after* the
write was committed (the app handles the request, then the response is lost). ``Faults.stats``
counts what happened, so a test can tell a 429 the fake injected from one the client caused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal, Protocol

import httpx

__all__ = ["FakeApp", "FakeTransport", "Fault", "FaultStats", "Faults", "LoopbackServer", "serve"]

Fault = Literal["429", "500", "503", "reset", "timeout_after_commit"]


class FakeApp(Protocol):
    """What a vendor fake implements. ``handle`` is called under the kit's lock."""

    def handle(self, request: httpx.Request) -> httpx.Response: ...

    def error(self, status: int, message: str) -> httpx.Response: ...


@dataclass
class FaultStats:
    """What the faults did: requests seen, and each kind of fault answered."""

    requests: int = 0
    rate_limited: int = 0
    injected: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class Faults:
    """Fault injection settings, shared by both ways of reaching a fake.

    - ``latency``: seconds added to every request.
    - ``rate_limit``: requests per second accepted (sliding one-second window); beyond it the
      fake answers 429 with ``Retry-After`` (counted in ``stats.rate_limited``).
    - ``probabilities``: chance per request of each ``Fault``; ``seed`` makes them repeatable.
    - ``script``: faults to answer with first, in order (``None`` entries pass a request).
    - ``retry_after``: the ``Retry-After`` seconds sent with injected 429s.
    - ``only_methods``: limit injected faults to these HTTP methods (``None``: all).
    """

    latency: float = 0.0
    rate_limit: float | None = None
    probabilities: dict[Fault, float] = field(default_factory=dict)
    script: list[Fault | None] = field(default_factory=list)
    retry_after: float = 1.0
    only_methods: frozenset[str] | None = None
    seed: int | None = None
    stats: FaultStats = field(default_factory=FaultStats)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._window: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def decide(self, method: str) -> tuple[Fault | None, float | None]:
        """The fault for the next request (or None) and, for a rate-limit 429, its wait."""
        with self._lock:
            self.stats.requests += 1
            if self.rate_limit is not None:
                now = time.monotonic()
                while self._window and now - self._window[0] >= 1.0:
                    self._window.popleft()
                if len(self._window) >= self.rate_limit:
                    self.stats.rate_limited += 1
                    return "429", max(1.0 - (now - self._window[0]), 0.001)
                self._window.append(now)
            if self.only_methods is not None and method not in self.only_methods:
                return None, None
            fault: Fault | None = None
            if self.script:
                fault = self.script.pop(0)
            else:
                for kind, chance in self.probabilities.items():
                    if self._random.random() < chance:
                        fault = kind
                        break
            if fault is not None:
                self.stats.injected[fault] += 1
            return fault, None


class _ResponseLostError(Exception):
    """The response was lost: ``committed`` says whether the app had handled the request."""

    def __init__(self, committed: bool) -> None:
        self.committed = committed


class _Gate:
    """Runs a request through faults and the app (under a lock), for both transports."""

    def __init__(self, app: FakeApp, faults: Faults | None) -> None:
        self.app = app
        self.faults = faults or Faults()
        self.lock = threading.Lock()

    def decide(self, request: httpx.Request) -> tuple[Fault | None, float | None]:
        return self.faults.decide(request.method)

    def respond(self, request: httpx.Request, fault: Fault | None, wait: float | None) -> httpx.Response:
        if fault == "429":
            retry_after = wait if wait is not None else self.faults.retry_after
            response = self.app.error(429, "Too many requests")
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            return response
        if fault in ("500", "503"):
            return self.app.error(int(fault), "Injected server error")
        if fault == "reset":
            raise _ResponseLostError(committed=False)
        request.read()
        with self.lock:
            response = self.app.handle(request)
        if fault == "timeout_after_commit":
            raise _ResponseLostError(committed=True)
        return response


class FakeTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Reach a ``FakeApp`` in process, from ``httpx.Client`` or ``httpx.AsyncClient``."""

    def __init__(self, app: FakeApp, faults: Faults | None = None) -> None:
        self._gate = _Gate(app, faults)

    @property
    def faults(self) -> Faults:
        return self._gate.faults

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.faults.latency:
            time.sleep(self.faults.latency)
        return self._send(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        await request.aread()
        return self._send(request)

    def _send(self, request: httpx.Request) -> httpx.Response:
        fault, wait = self._gate.decide(request)
        try:
            return self._gate.respond(request, fault, wait)
        except _ResponseLostError as lost:
            if lost.committed:
                raise httpx.ReadTimeout("injected: response lost after commit", request=request) from None
            raise httpx.ConnectError("injected: connection reset", request=request) from None


class LoopbackServer:
    """A ``FakeApp`` served over HTTP on 127.0.0.1; ``url`` is its base URL."""

    def __init__(self, app: FakeApp, faults: Faults | None = None, *, hang: float = 0.2) -> None:
        gate = _Gate(app, faults)
        self.faults = gate.faults

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                """Silence per-request logging."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                host = self.headers.get("Host", "127.0.0.1")
                request = httpx.Request(
                    self.command, f"http://{host}{self.path}",
                    headers=list(self.headers.items()), content=body,
                )
                if gate.faults.latency:
                    time.sleep(gate.faults.latency)
                fault, wait = gate.decide(request)
                try:
                    response = gate.respond(request, fault, wait)
                except _ResponseLostError as lost:
                    if lost.committed:
                        time.sleep(hang)
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(2)
                    return
                content = response.read()
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve  # noqa: N815

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve(app: FakeApp, faults: Faults | None = None, *, hang: float = 0.2) -> Iterator[LoopbackServer]:
    """Serve ``app`` on loopback for the duration of the ``with`` block."""
    with LoopbackServer(app, faults, hang=hang) as server:
        yield server
