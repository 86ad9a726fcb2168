"""Fixtures for the Orb provider tests, and a guard: no socket to anything but loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
from billing_credits_orb import OrbProvider
from billing_credits_orb.testing import OrbFake

import billing_credits as bc
from billing_credits.testing import Faults

hypothesis.settings.register_profile("billing-credits", deadline=None)
hypothesis.settings.load_profile("billing-credits")

API_KEY = "orb_test_4eC39HqLyjWDarjtT1zdp7dcSECRET"


@pytest.fixture(autouse=True)
def _loopback_only(loopback_only: None) -> None:
    """Every test: a connection past 127.0.0.1/::1 raises ``NetworkBlockedError``."""


class RecordingSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def runtime(sleeps: RecordingSleep) -> bc.Runtime:
    return bc.Runtime(retry=bc.RetryPolicy(attempts=5, sleep=sleeps, asleep=sleeps.asleep))


@pytest.fixture
def fake() -> OrbFake:
    return OrbFake(api_key=API_KEY, seed=7)


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=1)


@pytest.fixture
def provider(fake: OrbFake, faults: Faults, runtime: bc.Runtime) -> Iterator[OrbProvider]:
    """The provider over the fake, in process (sync and async clients on one transport)."""
    transport = fake.transport(faults)
    with httpx.Client(transport=transport) as client:
        created = bc.get_provider(
            "orb", api_key=API_KEY, http_client=client,
            async_http_client=httpx.AsyncClient(transport=transport), runtime=runtime)
        assert isinstance(created, OrbProvider)
        yield created


@pytest.fixture
def server(fake: OrbFake, faults: Faults) -> Iterator[Any]:
    with fake.serve(faults) as running:
        yield running


@pytest.fixture
def http_provider(server: Any, runtime: bc.Runtime) -> Iterator[OrbProvider]:
    created = bc.get_provider("orb", api_key=API_KEY, base_url=f"{server.url}/v1",
                              runtime=runtime)
    assert isinstance(created, OrbProvider)
    with created:
        yield created
