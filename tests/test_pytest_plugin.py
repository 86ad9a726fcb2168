"""The fixtures billing-credits ships to users' test suites."""

from __future__ import annotations

from decimal import Decimal

import billing_credits as bc


def test_local_credits_fixture_is_a_fresh_local_provider(local_credits: bc.Provider) -> None:
    assert local_credits.name == "local"
    assert list(local_credits.list_grants()) == []
    created = local_credits.create_grant(
        bc.CreditGrant(customer_id="c", amount=bc.Money(amount=Decimal("1.5"), currency="EUR"))
    )
    assert [g.id for g in local_credits.list_grants()] == [created.id]
