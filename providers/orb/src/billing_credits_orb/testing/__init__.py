"""Testing helpers for the Orb provider: ``OrbFake``, an offline Orb.

::

    from billing_credits.testing import Faults
    from billing_credits_orb.testing import OrbFake

    fake = OrbFake()
    customer = fake.add_customer()
    with fake.serve(Faults(probabilities={"429": 0.1})) as server:
        orb = bc.get_provider("orb", api_key="orb_test_x", base_url=server.url + "/v1")

or in process: ``httpx.Client(transport=fake.transport())`` passed as ``http_client``.
"""

from __future__ import annotations

from ._fake import OrbFake, RecordedRequest, dumps_exact

__all__ = ["OrbFake", "RecordedRequest", "dumps_exact"]
