"""One implementation, sync and async: flows of calls, driven with retries and a rate limit.

A provider writes each operation once, as a *flow*: a generator that yields ``Call`` objects
(one per request) and returns the result. ``Runtime.run`` drives a flow synchronously and
``Runtime.arun`` asynchronously; both send every call through the same rate limiter and the
same retry policy, so every provider gets identical, tested behaviour::

    def _get(self, grant_id: str) -> Flow[CreditGrant]:
        payload = yield self.http.call("GET", f"/grants/{grant_id}")
        return from_vendor(payload)

A ``Call`` that raises a retryable ``ProviderError`` (``RateLimitedError``,
``UnavailableError``, a transient ``ConflictError``) is attempted again with exponential backoff
and jitter, honouring the provider's ``retry_after``; any other error is thrown into the flow,
which may handle it (an idempotent create turning a conflict into a lookup) or let it propagate.
A call is only retried when it is ``retry_safe``: a create is retry-safe because it carries the
same idempotency key on every attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import tenacity

from ._errors import BillingCreditsError, ProviderError, RateLimitedError
from ._secrets import detach

__all__ = ["Call", "Flow", "RateLimit", "RetryPolicy", "Runtime", "blocking"]

T = TypeVar("T")

log = logging.getLogger("billing_credits")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, runnable both ways: ``sync()`` or ``await async_()``.

    Both must raise ``ProviderError`` subclasses for vendor and network failures.
    ``retry_safe``: sending it again cannot do the work twice. ``label`` names it in logs.
    """

    sync: Callable[[], T]
    async_: Callable[[], Awaitable[T]]
    retry_safe: bool = True
    label: str = ""


def blocking(fn: Callable[[], T], *, retry_safe: bool = True, label: str = "") -> Call[T]:
    """A ``Call`` around blocking work (a database query): run inline, or in a worker thread."""
    return Call(fn, lambda: asyncio.to_thread(fn), retry_safe=retry_safe, label=label)


Flow = Generator[Call[Any], Any, T]
"""An operation: yields ``Call`` objects, receives their results, returns its own result."""


def _retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter (tenacity underneath).

    ``attempts`` counts the first try. A ``RateLimitedError`` with ``retry_after`` waits at least
    that long (capped at ``max_retry_after``, beyond which the error is raised instead).
    ``sleep``/``asleep`` are injectable so tests can observe the waits without taking them.
    """

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 20.0
    max_retry_after: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    asleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    def wait_for(self, state: tenacity.RetryCallState) -> float:
        backoff = tenacity.wait_random_exponential(multiplier=self.initial, max=self.maximum)
        wait: float = backoff(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            wait = max(wait, error.retry_after) if error.retry_after > 0 else wait
        return wait

    def _should_retry(self, state: tenacity.RetryCallState) -> bool:
        if state.outcome is None or not state.outcome.failed:
            return False
        error = state.outcome.exception()
        if not _retryable(error):  # type: ignore[arg-type]
            return False
        return not (isinstance(error, RateLimitedError) and (error.retry_after or 0) > self.max_retry_after)

    def _options(self) -> dict[str, Any]:
        return {
            "stop": tenacity.stop_after_attempt(max(self.attempts, 1)),
            "wait": self.wait_for,
            "retry": self._should_retry,
            "reraise": True,
        }

    def retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(sleep=self.sleep, **self._options())

    def aretrying(self) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(sleep=self.asleep, **self._options())


NO_RETRY = RetryPolicy(attempts=1)


class RateLimit:
    """A client-side request rate (pyrate-limiter's GCRA underneath), shared by sync and async
    calls.

    Requests are spaced evenly so that a server counting arrivals over any one-second window
    never sees more than ``per_second``, even when arrivals wobble by up to ``JITTER`` seconds
    (new connections, thread scheduling, timer overshoot): any window of ``1 + JITTER`` seconds
    holds at most ``per_second`` sends. From 50/s on, a burst of two lets the pacing catch up
    on timer overshoot. At 25/s this sends about 23/s, at 100/s about 94/s. ``None`` disables
    it.
    """

    JITTER = 0.04

    def __init__(self, per_second: float | None) -> None:
        self.per_second = per_second
        self._limiter: Any = None
        if per_second is not None:
            if per_second <= 0:
                raise ValueError("rate limit must be positive")
            from pyrate_limiter import GCRA, Limiter, Rate, StateBucket

            burst = 2 if per_second >= 50 else 1
            # GCRA admits at most burst + window * sustained in any window.
            sustained = (per_second - (burst - 1)) / (1 + self.JITTER)
            rate = Rate(max(1, int(sustained * 100)), 100_000, burst=burst)
            self._limiter = Limiter(StateBucket([rate], algorithm=GCRA()), buffer_ms=1)

    def acquire(self) -> None:
        if self._limiter is not None:
            self._limiter.try_acquire("requests")

    async def aacquire(self) -> None:
        if self._limiter is not None:
            await self._limiter.try_acquire_async("requests")

    def __repr__(self) -> str:
        return f"RateLimit(per_second={self.per_second})"


class Runtime:
    """Drives flows: rate limit, then the call, retried per ``retry`` when safe.

    ``calls`` counts every attempt sent; tests use it to prove that a refusal cost no I/O.
    """

    def __init__(
        self, *, retry: RetryPolicy | None = None, rate_limit: RateLimit | None = None
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.rate_limit = rate_limit or RateLimit(None)
        self.calls = 0

    def _attempt(self, call: Call[T]) -> T:
        self.rate_limit.acquire()
        self.calls += 1
        try:
            return call.sync()
        except BillingCreditsError as error:
            log.debug("call %s failed: %s", call.label or "-", error)
            raise detach(error) from None

    async def _aattempt(self, call: Call[T]) -> T:
        await self.rate_limit.aacquire()
        self.calls += 1
        try:
            return await call.async_()
        except BillingCreditsError as error:
            log.debug("call %s failed: %s", call.label or "-", error)
            raise detach(error) from None

    def execute(self, call: Call[T]) -> T:
        if not call.retry_safe:
            return self._attempt(call)
        result: T = self.retry.retrying()(self._attempt, call)
        return result

    async def aexecute(self, call: Call[T]) -> T:
        if not call.retry_safe:
            return await self._aattempt(call)
        return await self.retry.aretrying()(self._aattempt, call)

    def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` to completion, synchronously.

        A project error leaves without its ``__cause__``/``__context__`` chain: that may hold
        a vendor client's exception, and with it the request and its credential."""
        try:
            return self._run(flow)
        except BillingCreditsError as error:
            raise detach(error) from None

    async def arun(self, flow: Flow[T]) -> T:
        """Drive ``flow`` to completion on the running event loop (errors as for ``run``)."""
        try:
            return await self._arun(flow)
        except BillingCreditsError as error:
            raise detach(error) from None

    def _run(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                try:
                    result = self.execute(call)
                except ProviderError as error:
                    call = flow.throw(error)
                else:
                    call = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _arun(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                try:
                    result = await self.aexecute(call)
                except ProviderError as error:
                    call = flow.throw(error)
                else:
                    call = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
