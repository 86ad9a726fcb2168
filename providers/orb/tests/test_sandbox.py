"""The ``orb`` sandbox: registered through ``register_sandboxes``, served on loopback, and a
provider configured from its environment works against it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

import billing_credits as bc
from billing_credits.plugins._registry import sandboxes


def test_the_sandbox_is_registered_and_serves_orb(monkeypatch: pytest.MonkeyPatch) -> None:
    start = sandboxes()["orb"]
    with start() as sandbox:
        assert sandbox.providers == ("orb",)
        assert set(sandbox.environment) == {"ORB_API_KEY", "ORB_BASE_URL"}
        for name, value in sandbox.environment.items():
            monkeypatch.setenv(name, value)
        with bc.get_provider("orb") as orb:
            day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            made = orb.create_grant(bc.CreditGrant(
                customer_id="cus_sandbox_acme", amount=bc.Money(amount=Decimal(5),
                                                                 currency="USD"),
                effective_at=day - timedelta(days=1), idempotency_key="sandbox-test"))
            assert [g.id for g in orb.list_grants("cus_sandbox_acme")] == [made.id]
