"""The runtime: one flow, driven sync or async, with retries and a client-side rate limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import billing_credits as bc


class Recorder:
    """Injectable sleeps that record the waits instead of taking them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


class Endpoint:
    """A fake request: fails with ``failures`` in turn, then answers; records each attempt."""

    def __init__(self, *failures: Exception, answer: Any = "ok") -> None:
        self.failures = list(failures)
        self.answer = answer
        self.attempts: list[str] = []

    def call(self, key: str, *, retry_safe: bool = True) -> bc.Call[Any]:
        def sync() -> Any:
            self.attempts.append(key)
            if self.failures:
                raise self.failures.pop(0)
            return self.answer

        async def async_() -> Any:
            return sync()

        return bc.Call(sync, async_, retry_safe=retry_safe, label="test")


Drive = Callable[[bc.Runtime, bc.Flow[Any]], Any]


def run_sync(runtime: bc.Runtime, flow: bc.Flow[Any]) -> Any:
    return runtime.run(flow)


def run_async(runtime: bc.Runtime, flow: bc.Flow[Any]) -> Any:
    return asyncio.run(runtime.arun(flow))


@pytest.fixture(params=[run_sync, run_async], ids=["sync", "async"])
def drive(request: pytest.FixtureRequest) -> Drive:
    return request.param  # type: ignore[no-any-return]


def runtime(recorder: Recorder, attempts: int = 4, **kwargs: Any) -> bc.Runtime:
    policy = bc.RetryPolicy(attempts=attempts, initial=0.01, maximum=0.05,
                            sleep=recorder.sleep, asleep=recorder.asleep, **kwargs)
    return bc.Runtime(retry=policy)


def two_step(endpoint: Endpoint, log: list[Any]) -> bc.Flow[str]:
    first = yield endpoint.call("key-1")
    log.append(first)
    second = yield endpoint.call("key-2")
    log.append(second)
    return f"{first}+{second}"


def test_sync_and_async_give_the_same_result() -> None:
    results = []
    for driver in (run_sync, run_async):
        log: list[Any] = []
        endpoint = Endpoint(bc.UnavailableError("blip"), answer=3)
        results.append((driver(runtime(Recorder()), two_step(endpoint, log)), log,
                        endpoint.attempts))
    assert results[0] == results[1] == ("3+3", [3, 3], ["key-1", "key-1", "key-2"])


@pytest.mark.parametrize(
    "error",
    [bc.UnavailableError("503", status=503), bc.RateLimitedError("429", status=429),
     bc.ConflictError("locked", status=409, retryable=True)],
    ids=["unavailable", "rate-limited", "transient-conflict"],
)
def test_retryable_errors_are_retried_with_the_same_call(drive: Drive, error: Exception) -> None:
    recorder = Recorder()
    endpoint = Endpoint(error, error, answer="done")
    rt = runtime(recorder)
    yielded: list[int] = []

    def flow() -> bc.Flow[str]:
        yielded.append(1)
        return (yield endpoint.call("idem-1"))

    assert drive(rt, flow()) == "done"
    assert endpoint.attempts == ["idem-1"] * 3  # the same call, same key, each time
    assert yielded == [1]  # the flow saw one call and one result
    assert rt.calls == 3
    assert len(recorder.waits) == 2


def test_retries_stop_after_attempts_and_the_error_reaches_the_flow(drive: Drive) -> None:
    recorder = Recorder()
    endpoint = Endpoint(*[bc.UnavailableError("down") for _ in range(10)])
    rt = runtime(recorder, attempts=3)
    with pytest.raises(bc.UnavailableError, match="down"):
        drive(rt, (yield_once(endpoint)))
    assert len(endpoint.attempts) == 3
    assert rt.calls == 3
    assert len(recorder.waits) == 2


def yield_once(endpoint: Endpoint) -> bc.Flow[Any]:
    return (yield endpoint.call("k"))


def test_retry_after_is_honoured(drive: Drive) -> None:
    recorder = Recorder()
    endpoint = Endpoint(bc.RateLimitedError("slow down", retry_after=2))
    assert drive(runtime(recorder), yield_once(endpoint)) == "ok"
    assert len(recorder.waits) == 1
    assert recorder.waits[0] >= 2


def test_retry_after_beyond_the_cap_is_raised_not_waited(drive: Drive) -> None:
    recorder = Recorder()
    endpoint = Endpoint(bc.RateLimitedError("come back tomorrow", retry_after=86400))
    with pytest.raises(bc.RateLimitedError):
        drive(runtime(recorder, max_retry_after=60), yield_once(endpoint))
    assert recorder.waits == []
    assert len(endpoint.attempts) == 1


def test_backoff_without_retry_after_stays_within_maximum(drive: Drive) -> None:
    recorder = Recorder()
    endpoint = Endpoint(*[bc.UnavailableError("x") for _ in range(5)])
    drive(runtime(recorder, attempts=6), yield_once(endpoint))
    assert len(recorder.waits) == 5
    assert all(0 <= w <= 0.05 for w in recorder.waits)


@pytest.mark.parametrize(
    "error",
    [bc.ConflictError("reused key", status=409), bc.NotFoundError("gone", status=404),
     bc.BadRequestError("no", status=400), bc.AuthenticationError("who", status=401)],
)
def test_non_retryable_errors_are_thrown_into_the_flow(drive: Drive, error: Exception) -> None:
    recorder = Recorder()
    endpoint = Endpoint(error)
    rt = runtime(recorder)
    seen: list[Exception] = []

    def flow() -> bc.Flow[str]:
        try:
            yield endpoint.call("create")
        except bc.ProviderError as caught:
            seen.append(caught)
            found = yield endpoint.call("lookup")
            return f"recovered: {found}"
        return "not reached"

    assert drive(rt, flow()) == "recovered: ok"
    assert seen == [error]
    assert endpoint.attempts == ["create", "lookup"]
    assert recorder.waits == []
    assert rt.calls == 2


def test_uncaught_errors_propagate_unretried(drive: Drive) -> None:
    endpoint = Endpoint(bc.PermissionDeniedError("nope", status=403))
    with pytest.raises(bc.PermissionDeniedError):
        drive(runtime(Recorder()), yield_once(endpoint))
    assert len(endpoint.attempts) == 1


def test_errors_that_are_not_provider_errors_propagate(drive: Drive) -> None:
    endpoint = Endpoint(KeyError("bug"))
    with pytest.raises(KeyError):
        drive(runtime(Recorder()), yield_once(endpoint))
    assert len(endpoint.attempts) == 1


def test_calls_that_are_not_retry_safe_are_never_retried(drive: Drive) -> None:
    recorder = Recorder()
    endpoint = Endpoint(bc.UnavailableError("timeout after send"))

    def flow() -> bc.Flow[Any]:
        return (yield endpoint.call("unsafe", retry_safe=False))

    rt = runtime(recorder)
    with pytest.raises(bc.UnavailableError):
        drive(rt, flow())
    assert endpoint.attempts == ["unsafe"]
    assert rt.calls == 1
    assert recorder.waits == []


def test_flow_without_calls(drive: Drive) -> None:
    def flow() -> bc.Flow[int]:
        return 7
        yield  # pragma: no cover - makes this a generator

    rt = bc.Runtime()
    assert drive(rt, flow()) == 7
    assert rt.calls == 0


def test_blocking_runs_inline_and_in_a_thread(drive: Drive) -> None:
    import threading

    threads: list[str] = []

    def work() -> int:
        threads.append(threading.current_thread().name)
        return 5

    def flow() -> bc.Flow[int]:
        return (yield bc.blocking(work))

    assert drive(bc.Runtime(), flow()) == 5
    assert len(threads) == 1


# -- rate limit ---------------------------------------------------------------------------------

RATE = 10
CALLS = 25


def assert_spaced(stamps: list[float]) -> None:
    """At most ``RATE`` calls in any one-second window, and the whole run took ≥ 2 s."""
    assert len(stamps) == CALLS
    assert stamps[-1] - stamps[0] >= 1.9
    for i in range(len(stamps) - RATE):
        assert stamps[i + RATE] - stamps[i] >= 0.95


def test_rate_limit_spaces_calls_sync() -> None:
    stamps: list[float] = []
    call = bc.Call(lambda: stamps.append(time.monotonic()), _unused)
    rt = bc.Runtime(rate_limit=bc.RateLimit(per_second=RATE))

    def flow() -> bc.Flow[None]:
        for _ in range(CALLS):
            yield call

    rt.run(flow())
    assert_spaced(stamps)
    assert rt.calls == CALLS


async def _unused() -> None:  # pragma: no cover - the sync test never awaits
    raise AssertionError


async def test_rate_limit_spaces_calls_async() -> None:
    stamps: list[float] = []

    async def record() -> None:
        stamps.append(time.monotonic())

    call = bc.Call(lambda: None, record)
    rt = bc.Runtime(rate_limit=bc.RateLimit(per_second=RATE))

    def flow() -> bc.Flow[None]:
        for _ in range(CALLS):
            yield call

    await rt.arun(flow())
    assert_spaced(stamps)


def test_no_rate_limit_is_fast() -> None:
    rt = bc.Runtime()
    start = time.monotonic()

    def flow() -> bc.Flow[None]:
        for _ in range(CALLS):
            yield bc.blocking(lambda: None)

    rt.run(flow())
    assert time.monotonic() - start < 0.5
    assert rt.calls == CALLS


@pytest.mark.parametrize("rate", [0, -1])
def test_rate_limit_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        bc.RateLimit(per_second=rate)
