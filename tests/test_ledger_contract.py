"""The C7 contract: ledger models, and the Provider's balance/ledger/update/consume methods
checked before any I/O, with the listing loop guard on ledger pages (issue 11)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import billing_credits as bc

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def usd(amount: str | int) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def entry(n: int) -> bc.LedgerEntry:
    return bc.LedgerEntry(customer_id="c", grant_id="g", kind=bc.LedgerKind.CONSUMED,
                          amount=usd(-n), at=NOW, vendor_id=f"e{n}")


class Scripted(bc.Provider):
    """Answers ledger pages from a script; counts every request through the runtime."""

    name = "scripted"
    capabilities = bc.Capabilities(operations=bc.ALL_OPERATIONS,
                                   updatable_fields=frozenset({"expires_at"}),
                                   time_resolution=timedelta(seconds=1), name_max_length=5)

    def __init__(self, pages: list[bc.LedgerPage] | None = None) -> None:
        super().__init__(runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))
        self.pages = list(pages or [])
        self.seen: list[Any] = []

    def _create(self, grant, key):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _list_page(self, query, cursor):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _get(self, grant_id):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _ledger_page(self, customer_id: str, grant_id: str | None, since: datetime | None,
                     cursor: str | None) -> bc.Flow[bc.LedgerPage]:
        self.seen.append((customer_id, grant_id, since, cursor))
        page = yield bc.blocking(lambda: self.pages.pop(0))
        return page  # type: ignore[no-any-return]

    def _balance(self, customer_id: str, unit: str | None,
                 at: datetime | None) -> bc.Flow[list[bc.Balance]]:
        self.seen.append((customer_id, unit, at))
        yield bc.blocking(lambda: None)
        return [bc.Balance(customer_id=customer_id, usable=usd(1), pending=usd(0), as_of=NOW,
                           source="test")]

    def _update(self, grant_id: str, update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
        self.seen.append((grant_id, update.changes()))
        yield bc.blocking(lambda: None)
        raise bc.NotFoundError("no such grant", provider=self.name)


def test_ledger_pages_lazily_and_passes_its_arguments() -> None:
    provider = Scripted([bc.LedgerPage([entry(1), entry(2)], "p2"), bc.LedgerPage([entry(3)])])
    since = datetime(2026, 1, 1, 2, tzinfo=UTC)
    listing = provider.list_ledger("c", grant_id="g", since=since)
    assert provider.runtime.calls == 0, "lazy: nothing sent before the first item is asked for"
    assert [e.vendor_id for e in listing] == ["e1", "e2", "e3"]
    assert provider.seen == [("c", "g", since, None), ("c", "g", since, "p2")]


def test_ledger_cursor_seen_before_stops_the_listing() -> None:
    provider = Scripted([bc.LedgerPage([entry(1)], "a"), bc.LedgerPage([entry(2)], "a",
                                                                         request_id="req_9")])
    with pytest.raises(bc.InvalidResponseError) as stopped:
        list(provider.list_ledger("c"))
    assert stopped.value.request_id == "req_9"


def test_ledger_run_of_empty_pages_stops_the_listing() -> None:
    provider = Scripted([bc.LedgerPage([], f"c{n}") for n in range(5)])

    async def run() -> list[bc.LedgerEntry]:
        return [e async for e in provider.alist_ledger("c")]

    with pytest.raises(bc.InvalidResponseError, match="empty pages"):
        asyncio.run(run())
    assert provider.runtime.calls == bc.Provider.max_empty_pages


def test_balance_at_is_refused_before_any_request_where_only_now_is_answered() -> None:
    provider = Scripted()
    with pytest.raises(bc.NotRepresentableError) as refused:
        provider.get_balance("c", at=NOW)
    assert refused.value.fields == ("at",)
    with pytest.raises(bc.InvalidGrantError):
        provider.get_balance("c", at=datetime(2026, 1, 1))
    assert provider.runtime.calls == 0
    assert provider.get_balance("c", unit="USD")[0].usable == usd(1)
    assert provider.seen == [("c", "USD", None)]


def test_update_is_checked_before_any_request() -> None:
    provider = Scripted()
    with pytest.raises(bc.NotRepresentableError) as refused:
        provider.update_grant("g", name="x", metadata={"a": "b"})
    assert refused.value.fields == ("metadata", "name")
    with pytest.raises(bc.NotRepresentableError) as refused:
        provider.update_grant("g", expires_at=NOW + timedelta(microseconds=5))
    assert refused.value.fields == ("expires_at",)
    with pytest.raises(bc.InvalidGrantError):
        provider.update_grant("g")
    assert provider.runtime.calls == 0
    with pytest.raises(bc.NotFoundError):
        provider.update_grant("g", expires_at=None)
    assert provider.seen == [("g", {"expires_at": None})], "only the fields given are sent"


def test_operations_a_provider_does_not_implement_are_refused_before_any_request() -> None:
    provider = Scripted()
    assert provider.supports("ledger")
    assert provider.supports("balance")
    assert not provider.supports("consume"), "declared, but the flow is not implemented"
    with pytest.raises(bc.UnsupportedOperationError):
        provider.consume("c", usd(1), reference="r")
    narrowed = Scripted()
    narrowed.capabilities = bc.Capabilities(operations=frozenset({"create", "list", "get"}))
    assert not narrowed.supports("ledger")
    with pytest.raises(bc.UnsupportedOperationError):
        next(narrowed.list_ledger("c"))
    with pytest.raises(bc.UnsupportedOperationError):
        asyncio.run(narrowed.aget_balance("c"))
    assert provider.runtime.calls == narrowed.runtime.calls == 0


def test_ledger_entry_amounts_are_signed_by_kind() -> None:
    with pytest.raises(bc.InvalidGrantError, match="must be negative"):
        bc.LedgerEntry(customer_id="c", grant_id="g", kind=bc.LedgerKind.CONSUMED,
                       amount=usd(1), at=NOW)
    with pytest.raises(bc.InvalidGrantError, match="must be positive"):
        bc.LedgerEntry(customer_id="c", grant_id="g", kind=bc.LedgerKind.GRANTED,
                       amount=usd(-1), at=NOW)
    for amount in (1, -1):
        bc.LedgerEntry(customer_id="c", grant_id=None, kind=bc.LedgerKind.ADJUSTED,
                       amount=usd(amount), at=NOW)
    with pytest.raises(bc.InvalidGrantError, match="running_balance"):
        bc.LedgerEntry(customer_id="c", grant_id="g", kind=bc.LedgerKind.EXPIRED,
                       amount=usd(-1), at=NOW,
                       running_balance=bc.Money(amount=Decimal(1), currency="EUR"))


def test_raw_takes_no_part_in_equality_and_is_not_shown() -> None:
    a = bc.Balance(customer_id="c", usable=usd(1), pending=usd(0), as_of=NOW, source="s",
                   raw={"secret-ish": "payload"})
    b = bc.Balance(customer_id="c", usable=usd(1), pending=usd(0), as_of=NOW, source="s")
    assert a == b
    assert "payload" not in repr(a)
    assert entry(1) == entry(1).model_copy(update={"raw": {"x": 1}})
    with pytest.raises(bc.InvalidGrantError, match="pending"):
        bc.Balance(customer_id="c", usable=usd(1),
                   pending=bc.Money(amount=Decimal(0), currency="EUR"), as_of=NOW, source="s")


def test_exact_json_round_trip_of_ledger_models() -> None:
    tiny = bc.LedgerEntry(customer_id="c", grant_id="g", kind=bc.LedgerKind.CONSUMED,
                          amount=usd("-0.10000000000000000001"), at=NOW)
    assert bc.LedgerEntry.model_validate_json(tiny.model_dump_json()) == tiny
    assert bc.LedgerEntry.model_validate_json(
        '{"customer_id":"c","grant_id":null,"kind":"consumed","at":"2026-05-01T00:00:00Z",'
        '"amount":{"amount":-0.10000000000000000001,"currency":"USD"}}'
    ).amount.amount == Decimal("-0.10000000000000000001")


def test_grant_update_and_usage() -> None:
    assert bc.GrantUpdate().changes() == {}
    assert bc.GrantUpdate(expires_at=None, name="n").changes() == {"expires_at": None, "name": "n"}
    with pytest.raises(bc.InvalidGrantError):
        bc.Usage(customer_id="c", amount=usd(0), at=NOW)
    with pytest.raises(bc.InvalidGrantError):
        bc.Usage(customer_id="c", amount=usd(1), at=datetime(2026, 1, 1))
    with pytest.raises(bc.InvalidGrantError):
        bc.Usage(customer_id="c", amount=usd(1), at=NOW, reference=" ")
    assert repr(bc.UNSET) == "UNSET"
