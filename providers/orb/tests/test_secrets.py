"""The API key never appears in reprs, errors, logs or settings listings."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from billing_credits_orb import OrbProvider
from billing_credits_orb.testing import OrbFake

import billing_credits as bc

KEY = "orb_live_SuperSecretValue0000000"


def test_key_is_not_in_reprs() -> None:
    provider = bc.get_provider("orb", api_key=KEY, base_url="http://127.0.0.1:9/v1")
    for text in (repr(provider), str(provider), repr(vars(provider)), provider.identity()):
        assert KEY not in text


def test_key_is_a_declared_secret_setting() -> None:
    info = next(p for p in bc.available_providers() if p.name == "orb")
    key = next(s for s in info.settings if s.name == "api_key")
    assert key.secret
    assert key.env == "ORB_API_KEY"
    assert next(s for s in info.settings if s.name == "base_url").env == "ORB_BASE_URL"


def test_key_is_not_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    fake = OrbFake(api_key="orb_some_other_key_000000")
    caplog.set_level(logging.DEBUG)
    provider = OrbProvider(KEY, http_client=httpx.Client(transport=fake.transport()),
                           runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))
    with pytest.raises(bc.AuthenticationError) as failed:
        provider.get_grant("blk_x")
    error = failed.value
    for text in (str(error), repr(error), str(error.body), str(vars(error))):
        assert KEY not in text
    fake.api_key = None
    customer = fake.add_customer()
    provider.create_grant(bc.CreditGrant(
        customer_id=customer, amount=bc.Money(amount=Decimal(1), currency="USD"),
        effective_at=datetime(2026, 1, 1, tzinfo=UTC)))
    assert caplog.records, "the SDK logged at debug level"
    assert KEY not in caplog.text


def test_a_provider_aimed_past_loopback_cannot_connect() -> None:
    provider = OrbProvider(KEY, base_url="https://192.0.2.1/v1",
                           runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))
    with pytest.raises(bc.UnavailableError):
        provider.get_grant("blk_x")


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(bc.ConfigurationError):
        OrbProvider(KEY, base_url="http://example.com/v1")
