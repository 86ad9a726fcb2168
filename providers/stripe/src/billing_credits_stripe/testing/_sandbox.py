"""The ``stripe`` sandbox: ``StripeFake`` on loopback, empty, a target to migrate to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import billing_credits as bc

API_KEY = "sk_test_sandbox"


@contextmanager
def start() -> Iterator[bc.Sandbox]:
    """Serve a fresh ``StripeFake`` on 127.0.0.1 for the ``with`` block."""
    from ._fake import StripeFake

    fake = StripeFake()
    with fake.serve() as server:
        yield bc.Sandbox(
            name="stripe",
            url=server.url,
            environment={"STRIPE_API_KEY": API_KEY, "STRIPE_BASE_URL": server.url},
            providers=("stripe",),
            seeded=("no grants yet: a target to migrate to (test-mode key, any customer id)",),
        )
