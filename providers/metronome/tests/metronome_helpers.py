"""Helpers shared by the Metronome tests (plain module: conftest only holds fixtures)."""

from __future__ import annotations

from typing import Any

from billing_credits_metronome.testing import MetronomeFake

import billing_credits as bc

TOKEN = "mtr_test_s3cr3t_token_value"
PRODUCT = "f14d6729-6a44-4b13-9908-9387f1918790"
CUSTOM_UNIT = "fa2f1b3d-9d52-4951-a099-25991fd394d6"
CUSTOM_UNIT_NAME = "cloud consumption units"


def make_fake(**kwargs: Any) -> MetronomeFake:
    return MetronomeFake(token=TOKEN, credit_types={CUSTOM_UNIT: CUSTOM_UNIT_NAME}, **kwargs)


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
