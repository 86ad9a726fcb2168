"""Shared fixtures: the socket guard, the fake, and providers wired to it every way.

The test directory is not a package (``tests`` would clash with the repository's own), so its
plain helper modules (``metronome_helpers``, ``metronome_sdk_checks``) are put on ``sys.path``
here, whatever import mode pytest runs in.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from billing_credits_metronome.testing import MetronomeFake

import billing_credits as bc
from billing_credits.testing import FakeTransport, Faults, serve

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from metronome_helpers import (
    TOKEN,
    Sleeps,
    make_fake,
    runtime,
    settings_for,
)


def _loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _only_loopback_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may open a socket to anything but loopback: connect and DNS are guarded.

    The one exception is re-recording cassettes against a real Metronome sandbox
    (``METRONOME_RECORD=1`` with ``METRONOME_BEARER_TOKEN`` set), never the default.
    """
    if os.environ.get("METRONOME_RECORD") == "1" and os.environ.get("METRONOME_BEARER_TOKEN"):
        return
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise OSError(f"test tried to connect to {address!r}: only loopback is allowed")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _loopback(host):
            raise OSError(f"test tried to resolve {host!r}: only loopback is allowed")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def fake() -> MetronomeFake:
    return make_fake()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


ProviderFactory = Callable[..., bc.Provider]


@pytest.fixture(params=["in-process", "loopback"])
def wiring(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(
    wiring: str, fake: MetronomeFake, sleeps: Sleeps
) -> Iterator[Callable[..., tuple[bc.Provider, Faults]]]:
    """``connect(name, faults=None, **settings)``: a provider from ``bc.get_provider`` on the
    fake, in process (``FakeTransport``) or over loopback HTTP (``serve``)."""
    opened: list[Any] = []

    def make(name: str, faults: Faults | None = None,
             **settings: Any) -> tuple[bc.Provider, Faults]:
        faults = faults or Faults()
        options: dict[str, Any] = {"bearer_token": TOKEN, "runtime": runtime(sleeps),
                                   **settings_for(name), **settings}
        if wiring == "in-process":
            transport = FakeTransport(fake, faults)
            options["http_client"] = httpx.Client(transport=transport)
            options["async_http_client"] = httpx.AsyncClient(transport=transport)
            options["base_url"] = "https://api.metronome.com"
        else:
            server = serve(fake, faults)
            opened.append(server)
            options["base_url"] = server.__enter__().url
            options["timeout"] = 2.0
        provider = bc.get_provider(name, **options)
        opened.append(provider)
        return provider, faults

    yield make
    for thing in reversed(opened):
        if isinstance(thing, bc.Provider):
            thing.close()
        else:
            thing.__exit__(None, None, None)
