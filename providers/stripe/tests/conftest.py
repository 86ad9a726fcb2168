"""Fixtures for the Stripe provider tests, and a guard: no socket to anything but loopback.

The test directory is not a package, so its plain helper module (``stripe_sdk_shapes``) is put
on ``sys.path`` here, whatever import mode pytest runs in.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
from billing_credits_stripe import StripeProvider
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc
from billing_credits.testing import Faults

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

# Property tests measure behaviour, not speed: on a loaded CI machine hypothesis's default
# 200 ms deadline per example would fail tests that are correct.
hypothesis.settings.register_profile("billing-credits", deadline=None)
hypothesis.settings.load_profile("billing-credits")


API_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dcSECRET"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@pytest.fixture(autouse=True)
def _loopback_only(loopback_only: None) -> None:
    """Every test: a connection or name lookup past 127.0.0.1/::1 raises ``NetworkBlockedError``.

    Only re-recording cassettes against a real Stripe sandbox lifts it
    (``BILLING_CREDITS_RECORD=1`` with ``BILLING_CREDITS_ALLOW_NETWORK=1``).
    """


class RecordingSleep:
    """Injected into ``RetryPolicy`` so retry waits are observed, not taken."""

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
    """Five attempts, no rate limit, waits recorded instead of slept."""
    return bc.Runtime(retry=bc.RetryPolicy(attempts=5, sleep=sleeps, asleep=sleeps.asleep))


@pytest.fixture
def fake() -> StripeFake:
    return StripeFake(seed=7)


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=1)


@pytest.fixture
def provider(fake: StripeFake, faults: Faults, runtime: bc.Runtime) -> Iterator[StripeProvider]:
    """The provider over the fake, in process (sync and async clients on one transport)."""
    transport = fake.transport(faults)
    with httpx.Client(transport=transport) as client:
        created = bc.get_provider(
            "stripe", api_key=API_KEY, http_client=client,
            async_http_client=httpx.AsyncClient(transport=transport), runtime=runtime,
        )
        assert isinstance(created, StripeProvider)
        yield created


@pytest.fixture
def server(fake: StripeFake, faults: Faults) -> Iterator[Any]:
    with fake.serve(faults) as running:
        yield running


@pytest.fixture
def http_provider(server: Any, runtime: bc.Runtime) -> Iterator[StripeProvider]:
    """The provider over the fake served on loopback HTTP, built by name as users do."""
    created = bc.get_provider("stripe", api_key=API_KEY, base_url=server.url, runtime=runtime)
    assert isinstance(created, StripeProvider)
    with created:
        yield created


@pytest.fixture
async def ahttp_provider(server: Any, runtime: bc.Runtime) -> AsyncIterator[StripeProvider]:
    created = bc.get_provider("stripe", api_key=API_KEY, base_url=server.url, runtime=runtime)
    assert isinstance(created, StripeProvider)
    async with created:
        yield created


@pytest.fixture
def api_key() -> str:
    return API_KEY
