"""Contract C1 in the core: on a vendor that forgets idempotency keys, a keyed create first
finds a grant already carrying the key (``Provider._find_by_key``), so a key never yields two
grants however late it is repeated. Checked on a minimal provider that forgets every key."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import billing_credits as bc


class Forgetful(bc.Provider):
    """Remembers no key at all (the worst case of a vendor's key memory); pages 2 a time."""

    name = "forgetful"
    capabilities = bc.Capabilities(idempotency_key_memory=timedelta(hours=24))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stored: list[bc.CreditGrant] = []
        self.pages = 0
        self.cursors: list[str | None] | None = None
        self.broken: list[Any] = []

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        stored = grant.model_copy(update={
            "id": f"g{len(self.stored)}", "provider": self.name,
            "status": bc.GrantStatus.ACTIVE, "replayed": False})
        self.stored.append(stored)
        return stored
        yield  # a flow

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        self.pages += 1
        start = int(cursor) if cursor and cursor.isdigit() else 0
        mine = [g for g in self.stored if g.customer_id == query.customer_id]
        chunk = mine[start:start + 2]
        following: str | None = str(start + 2) if start + 2 < len(mine) else None
        if self.cursors is not None:
            following = self.cursors.pop(0) if self.cursors else None
        grants, unreadable = bc.read_items(
            self.name, [*chunk, *self.broken],
            lambda item: item if isinstance(item, bc.CreditGrant) else bc.CreditGrant(**item),
            lambda item: None)
        return bc.Page(grants, following, unreadable, request_id=f"req{self.pages}")
        yield  # a flow

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        return next(g for g in self.stored if g.id == grant_id)
        yield  # a flow


def grant(key: str | None = "welcome-1", **changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "customer_id": "cus_1", "amount": bc.Money(amount=Decimal(5), currency="USD"),
        "effective_at": datetime(2026, 1, 1, tzinfo=UTC), "idempotency_key": key}
    return bc.CreditGrant(**{**data, **changes})


def test_a_keyed_create_finds_the_grant_the_vendor_forgot() -> None:
    provider = Forgetful()
    for n in range(5):  # other grants, to page past
        provider.create_grant(grant(f"other-{n}"))
    first = provider.create_grant(grant())
    again = provider.create_grant(grant())
    assert again.id == first.id
    assert (first.replayed, again.replayed) == (False, True)
    assert len(provider.stored) == 6


async def test_async_too() -> None:
    provider = Forgetful()
    first = await provider.acreate_grant(grant())
    again = await provider.acreate_grant(grant())
    assert (again.id, again.replayed) == (first.id, True)


def test_the_lookup_can_be_turned_off() -> None:
    provider = Forgetful()
    provider.find_existing_before_create = False
    provider.create_grant(grant())
    provider.create_grant(grant())
    assert len(provider.stored) == 2
    assert provider.pages == 0


def test_no_lookup_without_a_key_or_on_a_vendor_that_never_forgets() -> None:
    provider = Forgetful()
    provider.create_grant(grant(None))
    assert provider.pages == 0
    provider.capabilities = dataclasses.replace(provider.capabilities,
                                                idempotency_key_memory=None)
    provider.create_grant(grant())
    assert provider.pages == 0


def test_other_parameters_under_a_used_key_are_a_conflict() -> None:
    provider = Forgetful()
    provider.create_grant(grant())
    with pytest.raises(bc.ConflictError, match="amount") as error:
        provider.create_grant(grant(amount=bc.Money(amount=Decimal(6), currency="USD")))
    assert error.value.code == "idempotency_error"
    assert not error.value.retryable
    assert len(provider.stored) == 1


def test_the_lookup_cannot_loop() -> None:
    provider = Forgetful()
    provider.create_grant(grant("a"))
    provider.cursors = ["x", "y", "x"]
    # page req2 holds g0 and points at "x"; req3 (cursor "x") holds g0 again under a new
    # cursor: the listing guard stops there, before "x" comes round again on req4
    with pytest.raises(bc.InvalidResponseError, match="'g0' again") as error:
        provider.create_grant(grant("not-there"))
    assert error.value.request_id == "req3", "the first page that repeated what came before"


def test_an_unreadable_item_that_may_be_the_grant_stops_the_create() -> None:
    provider = Forgetful()
    provider.broken = [{"customer_id": "cus_1", "amount": "garbage",
                        "idempotency_key": "welcome-1"}]
    with pytest.raises(bc.InvalidResponseError, match="welcome-1"):
        provider.create_grant(grant())
    assert provider.stored == []
    provider.create_grant(grant("unrelated"))  # an unrelated unreadable item does not block
    assert len(provider.stored) == 1


def test_replayed_takes_no_part_in_equality() -> None:
    provider = Forgetful()
    first = provider.create_grant(grant())
    assert first == first.model_copy(update={"replayed": True})
    assert "replayed" in bc.CreditGrant.read_back_fields()
    assert first.as_new().replayed is None


def test_the_applications_repeat_finds_a_migrated_grant_that_took_over_its_key() -> None:
    """Issue 8.11 on a vendor that forgets keys: the migrated grant (30 left of the 50 the
    application granted) carries the application's key; the application's original create,
    re-sent after cut-over, finds it instead of making a second grant or a conflict."""
    provider = Forgetful()
    migrated = provider.create_grant(grant(
        amount=bc.Money(amount=Decimal(30), currency="USD"),
        metadata={bc.MIGRATED_KEY: "welcome-1", "migrated_from_grant": "src_1"}))
    again = provider.create_grant(grant(amount=bc.Money(amount=Decimal(50), currency="USD")))
    assert (again.id, again.replayed) == (migrated.id, True)
    assert len(provider.stored) == 1
    provider.create_grant(grant("other", amount=bc.Money(amount=Decimal(1), currency="USD")))
    with pytest.raises(bc.ConflictError):  # a grant that did not take the key over conflicts
        provider.create_grant(grant("other", amount=bc.Money(amount=Decimal(2), currency="USD")))
