"""Helpers shared by the Metronome tests (plain module: conftest only holds fixtures)."""

from __future__ import annotations

from typing import Any

from billing_credits_metronome.testing import MetronomeFake

import billing_credits as bc

TOKEN = "mtr_test_s3cr3t_token_value"
PRODUCT = "f14d6729-6a44-4b13-9908-9387f1918790"
CUSTOM_UNIT = "fa2f1b3d-9d52-4951-a099-25991fd394d6"
CUSTOM_UNIT_NAME = "cloud consumption units"


TEST_KEYS = ("n", "k", "a", "order", "region", "note", "x_account_id")
"""The metadata keys the tests put on grants: registered by ``set_up`` like the library's."""


def set_up(fake: MetronomeFake, keys: tuple[str, ...] = TEST_KEYS) -> MetronomeFake:
    """Run ``setup()`` of both providers against ``fake`` (through a fault-free in-process
    transport, so a test's fault script is not consumed), registering the custom-field keys the
    providers write plus ``keys``, as a user does once with ``billing-credits setup``. The
    setup requests are then dropped from ``fake.requests``."""
    import httpx

    from billing_credits.testing import FakeTransport

    before = len(fake.requests)
    for name in ("metronome", "metronome-plans"):
        settings: dict[str, Any] = {"product_id": PRODUCT} if name == "metronome" else {}
        with bc.get_provider(name, bearer_token=fake.token or TOKEN, runtime=runtime(),
                             base_url="https://api.metronome.com",
                             http_client=httpx.Client(transport=FakeTransport(fake)),
                             custom_field_keys=",".join(keys), **settings) as provider:
            provider.setup()
    del fake.requests[before:]
    return fake


def make_fake(*, ready: bool = True, **kwargs: Any) -> MetronomeFake:
    """The tests' fake; ``ready``: with the custom-field keys registered (``set_up``)."""
    fake = MetronomeFake(token=TOKEN, credit_types={CUSTOM_UNIT: CUSTOM_UNIT_NAME}, **kwargs)
    return set_up(fake) if ready else fake


class Sleeps:
    """A recording ``sleep``/``asleep`` for ``bc.RetryPolicy``: waits are observed, not taken."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def runtime(sleeps: Sleeps | None = None, attempts: int = 5) -> bc.Runtime:
    recorder = sleeps or Sleeps()
    return bc.Runtime(
        retry=bc.RetryPolicy(attempts=attempts, sleep=recorder.sleep, asleep=recorder.asleep),
        rate_limit=bc.RateLimit(None),
    )


def settings_for(name: str) -> dict[str, Any]:
    return {"product_id": PRODUCT} if name == "metronome" else {}
