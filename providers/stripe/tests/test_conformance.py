"""The core conformance suite against the Stripe provider and its fake, two ways."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc
from billing_credits.testing import ProviderConformance

API_KEY = "sk_test_conformance"


class StripeIds:
    """Identifiers shaped like Stripe's."""

    def customer_id(self) -> str:
        return f"cus_{uuid.uuid4().hex[:14]}"

    def missing_id(self) -> str:
        return f"credgr_test_{uuid.uuid4().hex[:24]}"

    def ids(self, kind: str, count: int) -> tuple[str, ...]:
        prefix = {"price": "price_", "product": "prod_"}.get(kind, f"{kind}_")
        return tuple(f"{prefix}{uuid.uuid4().hex[:14]}" for _ in range(count))


def _runtime() -> bc.Runtime:
    return bc.Runtime(retry=bc.RetryPolicy(attempts=3, initial=0.01, maximum=0.05))


class TestStripeInProcess(StripeIds, ProviderConformance):
    @pytest.fixture
    def provider(self) -> Iterator[bc.Provider]:
        transport = StripeFake().transport()
        with bc.get_provider(
            "stripe", api_key=API_KEY, http_client=httpx.Client(transport=transport),
            async_http_client=httpx.AsyncClient(transport=transport), runtime=_runtime(),
            include_balance=True,  # the suite reconciles a grant's ledger with its balance
        ) as provider:
            yield provider


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """One served fake for the module (every test uses fresh customers and keys): stopping
    the kit's loopback server takes half a second."""
    with StripeFake().serve() as server:
        yield server.url


class TestStripeOverLoopback(StripeIds, ProviderConformance):
    @pytest.fixture
    def provider(self, server_url: str) -> Iterator[bc.Provider]:
        with bc.get_provider(
            "stripe", api_key=API_KEY, base_url=server_url, runtime=_runtime(),
            include_balance=True,  # the suite reconciles a grant's ledger with its balance
        ) as provider:
            yield provider
