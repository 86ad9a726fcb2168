"""The API key never appears in reprs, errors, logs or settings listings."""

from __future__ import annotations

import logging

import httpx
import pytest
from billing_credits_stripe import StripeProvider, map_error
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc

KEY = "sk_test_51SuperSecretValue0000"


def test_key_is_not_in_reprs(api_key: str) -> None:
    provider = bc.get_provider("stripe", api_key=KEY, base_url="http://127.0.0.1:9")
    for text in (repr(provider), str(provider), repr(vars(provider))):
        assert KEY not in text
    assert repr(provider) == "<StripeProvider test base_url='http://127.0.0.1:9'>"


def test_key_is_a_declared_secret_setting() -> None:
    info = next(p for p in bc.available_providers() if p.name == "stripe")
    key = next(s for s in info.settings if s.name == "api_key")
    assert key.secret
    assert key.env == "STRIPE_API_KEY"
    assert {s.name for s in info.settings} == {
        "api_key", "base_url", "stripe_account", "timeout", "max_retries", "rate_limit",
        "include_balance", "find_existing", "http_client", "async_http_client",
        "max_listing_pages"}  # the last: a setting of every provider (issue 18.10)


def test_key_is_not_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    fake = StripeFake()
    fake.inject_error(401, type_="invalid_request_error", message="Invalid API Key provided.")
    caplog.set_level(logging.DEBUG)
    provider = StripeProvider(KEY, http_client=httpx.Client(transport=fake.transport()),
                              runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))
    with pytest.raises(bc.AuthenticationError) as failed:
        provider.get_grant("credgr_x")
    error = failed.value
    for text in (str(error), repr(error), str(error.body), str(vars(error))):
        assert KEY not in text
    provider.create_grant(bc.CreditGrant(
        customer_id="cus_1", amount=bc.Money(amount=1, currency="USD")))
    assert caplog.records, "the SDK logged at debug level"
    assert KEY not in caplog.text


def test_stripe_account_is_sent_for_connect() -> None:
    fake = StripeFake()
    provider = StripeProvider(KEY, stripe_account="acct_123",
                              http_client=httpx.Client(transport=fake.transport()))
    list(provider.list_grants())
    assert fake.requests[0].stripe_account == "acct_123"
    assert fake.requests[0].stripe_version == "2026-10-28.endive"
    assert "acct_123" in repr(provider)


def test_connection_errors_map_to_unavailable() -> None:
    import stripe

    error = map_error(stripe.APIConnectionError("boom", should_retry=True))
    assert isinstance(error, bc.UnavailableError)
    assert error.retryable
    assert error.status is None


def test_the_socket_guard_blocks_non_loopback_hosts() -> None:
    """Must show 4's guard (conftest): a provider aimed anywhere but loopback cannot connect."""
    provider = StripeProvider(KEY, base_url="https://192.0.2.1",
                              runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))
    with pytest.raises(bc.UnavailableError, match="NetworkBlockedError"):
        provider.get_grant("credgr_x")
