"""pytest plugin shipped with billing-credits (entry point ``pytest11``): fixtures for users.

Kept light: nothing is imported until a fixture is used.

- ``local_credits``: a ``local`` provider on a fresh SQLite file.
- ``loopback_only``: for the test's duration, connecting or resolving a name anywhere but
  loopback raises ``NetworkBlockedError``. Make it autouse in a ``conftest.py``::

      @pytest.fixture(autouse=True)
      def _offline(loopback_only): ...

  ``BILLING_CREDITS_ALLOW_NETWORK=1`` lifts it (for re-recording cassettes against a sandbox).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import billing_credits as bc


class NetworkBlockedError(RuntimeError):
    """A test tried to reach past loopback. Not an ``OSError``, so no client library mistakes
    it for a network fault to retry or reword: it surfaces by name."""


@pytest.fixture
def local_credits(tmp_path: Path) -> Iterator[bc.Provider]:
    """A ``local`` provider on a fresh SQLite file, closed after the test."""
    import billing_credits as bc

    with bc.get_provider("local", path=str(tmp_path / "credits.db")) as provider:
        yield provider


def is_loopback(host: Any) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection and name lookup that is not loopback, for one test."""
    if os.environ.get("BILLING_CREDITS_ALLOW_NETWORK") == "1":
        return
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            raise NetworkBlockedError(f"test tried to connect to {address!r}: only loopback is allowed")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not is_loopback(host):
            raise NetworkBlockedError(f"test tried to resolve {host!r}: only loopback is allowed")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
