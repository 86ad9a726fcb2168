"""The fake kit: one app reached in process or over loopback, with injected faults."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from billing_credits.testing import FakeTransport, Faults, serve


class EchoApp:
    """Echoes each request; remembers what it handled (what was "committed"). Its answer is a
    201 with a header of its own, so a test can tell that the kit passed the app's answer on
    as it was, not one of its own."""

    def __init__(self, *, pause: float = 0.0) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        self.pause = pause
        self.inside = 0
        self.most_inside = 0
        self.headers: list[httpx.Headers] = []
        self.queries: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            if self.pause:
                time.sleep(self.pause)
            self.seen.append((request.method, request.url.path, request.content))
            self.headers.append(request.headers)
            self.queries.append(request.url.query.decode())
            return httpx.Response(201, headers={"X-Echo": "yes"},
                                  json={"path": request.url.path, "body": request.content.decode()})
        finally:
            self.inside -= 1

    def error(self, status: int, message: str) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": message}})


@pytest.mark.parametrize("over", ["process", "loopback"])
def test_the_app_handles_one_request_at_a_time(over: str) -> None:
    """``FakeApp.handle`` runs under the kit's lock: a fake's state needs no locking of its
    own, even when the loopback server answers many clients at once."""
    app = EchoApp(pause=0.02)
    with client_for(app, Faults(), over) as client, \
            concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda i: client.get(f"/{i}").status_code, range(12)))
    assert statuses == [201] * 12
    assert len(app.seen) == 12
    assert app.most_inside == 1


def test_in_process_sync() -> None:
    app = EchoApp()
    with httpx.Client(transport=FakeTransport(app), base_url="http://fake") as client:
        response = client.post("/v1/grants?x=1", content=b"amount=10",
                               headers={"Idempotency-Key": "k1"})
    assert response.status_code == 201
    assert response.headers["X-Echo"] == "yes"
    assert response.json() == {"path": "/v1/grants", "body": "amount=10"}
    assert app.seen == [("POST", "/v1/grants", b"amount=10")]
    assert app.headers[0]["Idempotency-Key"] == "k1"
    assert app.queries == ["x=1"]


async def test_in_process_async() -> None:
    app = EchoApp()
    async with httpx.AsyncClient(transport=FakeTransport(app), base_url="http://fake") as client:
        response = await client.post("/v1/grants", json={"a": 1})
    assert response.status_code == 201
    assert response.json()["body"] == '{"a":1}'
    assert len(app.seen) == 1


def test_loopback() -> None:
    app = EchoApp()
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        assert server.url.startswith("http://127.0.0.1:")
        response = client.post("/v1/echo?x=1", content=b"hello", headers={"Idempotency-Key": "k2"})
        second = client.get("/v1/other")
    assert response.status_code == 201
    assert response.headers["X-Echo"] == "yes"
    assert response.json() == {"path": "/v1/echo", "body": "hello"}
    assert second.status_code == 201
    assert [s[:2] for s in app.seen] == [("POST", "/v1/echo"), ("GET", "/v1/other")]
    assert app.headers[0]["Idempotency-Key"] == "k2"
    assert app.queries == ["x=1", ""]


@pytest.mark.parametrize("over", ["process", "loopback"])
def test_scripted_429_then_success(over: str) -> None:
    app = EchoApp()
    faults = Faults(script=["429", None], retry_after=2)
    with client_for(app, faults, over) as client:
        first = client.get("/a")
        second = client.get("/b")
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "2"
    assert first.json() == {"error": {"message": "Too many requests"}}
    assert second.status_code == 201
    assert [s[1] for s in app.seen] == ["/b"]  # the refused request never reached the app
    assert faults.stats.injected["429"] == 1
    assert faults.stats.requests == 2
    assert faults.stats.rate_limited == 0


@pytest.mark.parametrize("over", ["process", "loopback"])
def test_rate_limit_answers_429_past_the_limit(over: str) -> None:
    app = EchoApp()
    faults = Faults(rate_limit=3)
    with client_for(app, faults, over) as client:
        statuses = [client.get(f"/{i}").status_code for i in range(5)]
        limited = client.get("/late")
    assert statuses == [201, 201, 201, 429, 429]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert faults.stats.rate_limited == 3
    assert len(app.seen) == 3
    assert sum(faults.stats.injected.values()) == 0


def test_rate_limit_window_slides() -> None:
    faults = Faults(rate_limit=2)
    with client_for(EchoApp(), faults, "process") as client:
        assert [client.get("/").status_code for _ in range(3)] == [201, 201, 429]
        time.sleep(1.05)
        assert client.get("/").status_code == 201


def test_timeout_after_commit_in_process() -> None:
    app = EchoApp()
    faults = Faults(script=["timeout_after_commit"])
    with httpx.Client(transport=FakeTransport(app, faults), base_url="http://fake") as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/grants", content=b"once")
        assert app.seen == [("POST", "/v1/grants", b"once")]  # committed, answer lost
        assert client.get("/after").status_code == 201


def test_timeout_after_commit_over_loopback() -> None:
    app = EchoApp()
    faults = Faults(script=["timeout_after_commit"])
    with serve(app, faults, hang=0.01) as server, \
            httpx.Client(base_url=server.url, timeout=5) as client:
        with pytest.raises(httpx.TransportError):
            client.post("/v1/grants", content=b"once")
        assert app.seen == [("POST", "/v1/grants", b"once")]
        assert client.get("/after").status_code == 201


@pytest.mark.parametrize("over", ["process", "loopback"])
def test_reset_does_not_commit(over: str) -> None:
    app = EchoApp()
    faults = Faults(script=["reset"])
    with client_for(app, faults, over) as client:
        with pytest.raises(httpx.TransportError) as info:
            client.post("/v1/grants", content=b"lost")
        if over == "process":
            assert isinstance(info.value, httpx.ConnectError)
        assert app.seen == []
        assert client.get("/after").status_code == 201
    assert faults.stats.injected["reset"] == 1


@pytest.mark.parametrize("status", ["500", "503"])
def test_server_errors(status: str) -> None:
    app = EchoApp()
    with client_for(app, Faults(script=[status]), "process") as client:  # type: ignore[list-item]
        response = client.get("/")
    assert response.status_code == int(status)
    assert app.seen == []


def test_only_methods_limits_faults() -> None:
    app = EchoApp()
    faults = Faults(probabilities={"500": 1.0}, only_methods=frozenset({"POST"}))
    with client_for(app, faults, "process") as client:
        assert client.get("/").status_code == 201
        assert client.post("/").status_code == 500
    assert faults.stats.injected["500"] == 1


def test_seeded_probabilities_repeat() -> None:
    def statuses(seed: int) -> list[int]:
        faults = Faults(probabilities={"503": 0.5}, seed=seed)
        with client_for(EchoApp(), faults, "process") as client:
            return [client.get("/").status_code for _ in range(40)]

    first = statuses(7)
    assert first == statuses(7)
    assert {201, 503} <= set(first)


def test_latency_is_added() -> None:
    with client_for(EchoApp(), Faults(latency=0.05), "process") as client:
        start = time.monotonic()
        client.get("/")
    assert time.monotonic() - start >= 0.05


def client_for(app: EchoApp, faults: Faults, over: str) -> httpx.Client:
    """A client reaching ``app`` in process or over loopback (the server stops on close)."""
    if over == "process":
        return httpx.Client(transport=FakeTransport(app, faults), base_url="http://fake")
    context = serve(app, faults, hang=0.01)
    server = context.__enter__()
    client = httpx.Client(base_url=server.url, timeout=5)
    original_close = client.close

    def close() -> None:
        original_close()
        context.__exit__(None, None, None)

    client.close = close  # type: ignore[method-assign]
    return client
