"""The ``orb`` sandbox: ``OrbFake`` on loopback, with customers and no credit yet: a target
to migrate to.

Its customers carry the Orb ids the ``metronome`` sandbox's customer maps name
(``cus_sandbox_acme``, ``cus_sandbox_globex``, ``cus_sandbox_initech``), so a migration out of
that demo account can land here with the same map.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import billing_credits as bc

API_KEY = "orb_sandbox_key"
CUSTOMERS = ("cus_sandbox_acme", "cus_sandbox_globex", "cus_sandbox_initech")


@contextmanager
def start() -> Iterator[bc.Sandbox]:
    """Serve a fresh ``OrbFake`` on 127.0.0.1 for the ``with`` block."""
    from ._fake import OrbFake

    fake = OrbFake(api_key=API_KEY)
    for customer in CUSTOMERS:
        fake.add_customer(customer, external_id=customer.removeprefix("cus_"))
    with fake.serve() as server:
        url = f"{server.url}/v1"
        yield bc.Sandbox(
            name="orb",
            url=url,
            environment={"ORB_API_KEY": API_KEY, "ORB_BASE_URL": url},
            providers=("orb",),
            seeded=(f"customers {', '.join(CUSTOMERS)} (no currency yet: the first increment "
                    "sets it), no credit blocks: a target to migrate to",),
        )
