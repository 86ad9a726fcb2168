"""Shared fixtures: the socket guard, the fake, and providers wired to it every way.

The test directory is not a package (``tests`` would clash with the repository's own), so its
plain helper modules (``metronome_helpers``, ``metronome_sdk_checks``) are put on ``sys.path``
here, whatever import mode pytest runs in.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
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

# Property tests measure behaviour, not speed: on a loaded CI machine hypothesis's default
# 200 ms deadline per example would fail tests that are correct.
hypothesis.settings.register_profile("billing-credits", deadline=None)
hypothesis.settings.load_profile("billing-credits")


@pytest.fixture(autouse=True)
def _only_loopback_sockets(loopback_only: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may open a socket to anything but loopback: connect and DNS are guarded.

    The one exception is re-recording cassettes against a real Metronome sandbox
    (``METRONOME_RECORD=1`` with ``METRONOME_BEARER_TOKEN`` set), never the default.
    """
    if os.environ.get("METRONOME_RECORD") == "1" and os.environ.get("METRONOME_BEARER_TOKEN"):
        monkeypatch.undo()


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
