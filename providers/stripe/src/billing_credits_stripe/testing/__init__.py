"""Testing helpers for the Stripe provider: ``StripeFake``, an offline Stripe.

::

    from billing_credits.testing import Faults
    from billing_credits_stripe.testing import StripeFake

    fake = StripeFake()
    with fake.serve(Faults(probabilities={"429": 0.1})) as server:
        stripe = bc.get_provider("stripe", api_key="sk_test_x", base_url=server.url)

or in process: ``httpx.Client(transport=fake.transport())`` passed as ``http_client``.
``undeclared_params`` checks a request against the stripe SDK's parameter TypedDicts.
"""

from __future__ import annotations

from ._fake import RecordedRequest, StripeFake, parse_form
from ._params import ENDPOINT_PARAMS, declared_paths, endpoint_of, undeclared_params

__all__ = [
    "ENDPOINT_PARAMS",
    "RecordedRequest",
    "StripeFake",
    "declared_paths",
    "endpoint_of",
    "parse_form",
    "undeclared_params",
]
