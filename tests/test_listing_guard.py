"""Listings under hostile vendors: unreadable items are reported, cursors can never loop,
and secrets never survive into an error."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

import billing_credits as bc
from billing_credits._secrets import MASK


def _grant(n: int) -> bc.CreditGrant:
    return bc.CreditGrant(
        customer_id="cus_1", amount=bc.Money(amount=Decimal(n), currency="USD"),
        effective_at=datetime(2026, 1, 1, tzinfo=UTC), id=f"g{n}", provider="scripted")


class Scripted(bc.Provider):
    """Answers each listing request with the next scripted page, forever if need be."""

    name = "scripted"
    capabilities = bc.Capabilities(operations=frozenset({"create", "list", "get"}))

    def __init__(self, pages: Sequence[bc.Page], *, cycle: bool = False) -> None:
        super().__init__(runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))
        self.pages = list(pages)
        self.cycle = cycle
        self.requests = 0

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        raise NotImplementedError
        yield

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        raise NotImplementedError
        yield

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        yield from ()
        self.requests += 1
        if self.requests > 1000:
            raise AssertionError("the listing looped")
        index = self.requests - 1
        return self.pages[index % len(self.pages)] if self.cycle else self.pages[index]


def test_a_cycling_cursor_ends_the_listing_with_the_request_id() -> None:
    pages = [bc.Page([_grant(1)], "A", request_id="req_1"),
             bc.Page([_grant(2)], "B", request_id="req_2")]
    provider = Scripted(pages, cycle=True)
    seen = []
    with pytest.raises(bc.InvalidResponseError) as caught:
        seen.extend(provider.list_grants())
    assert caught.value.request_id == "req_1"
    assert "before" in str(caught.value)
    assert provider.requests == 3  # A, B, then A again: stopped there
    assert [g.id for g in seen] == ["g1", "g2", "g1"]


async def test_a_cycling_cursor_ends_the_async_listing() -> None:
    pages = [bc.Page([_grant(1)], "A"), bc.Page([_grant(2)], "B")]
    provider = Scripted(pages, cycle=True)
    with pytest.raises(bc.InvalidResponseError):
        async for _ in provider.alist_grants():
            pass
    assert provider.requests == 3


def test_a_run_of_empty_pages_with_new_cursors_ends_the_listing() -> None:
    pages = [bc.Page([], f"c{n}", request_id=f"req_{n}") for n in range(50)]
    provider = Scripted(pages)
    with pytest.raises(bc.InvalidResponseError) as caught:
        list(provider.list_grants())
    assert provider.requests == bc.Provider.max_empty_pages
    assert caught.value.request_id == f"req_{bc.Provider.max_empty_pages - 1}"


def test_empty_pages_between_full_ones_are_fine() -> None:
    pages = [bc.Page([], "a"), bc.Page([], "b"), bc.Page([_grant(1)], "c"),
             bc.Page([], "d"), bc.Page([_grant(2)], None)]
    assert [g.id for g in Scripted(pages).list_grants()] == ["g1", "g2"]


def _unreadable(vendor_id: str) -> bc.UnreadableGrant:
    return bc.UnreadableGrant("scripted", vendor_id, {"id": vendor_id, "amount": 0}, "amount: 0")


def test_unreadable_items_are_raised_after_every_readable_grant() -> None:
    pages = [bc.Page([_grant(1)], "A", unreadable=[_unreadable("bad1")]),
             bc.Page([_grant(2)], None, unreadable=[_unreadable("bad2")])]
    seen = []
    with pytest.raises(bc.UnreadableGrantsError) as caught:
        seen.extend(Scripted(pages).list_grants())
    assert [g.id for g in seen] == ["g1", "g2"]
    assert [e.vendor_id for e in caught.value.entries] == ["bad1", "bad2"]
    assert isinstance(caught.value, bc.ProviderError)


def test_unreadable_items_go_to_the_callback_and_the_listing_completes() -> None:
    pages = [bc.Page([_grant(1)], "A", unreadable=[_unreadable("bad1")]),
             bc.Page([_grant(2)], None)]
    received: list[bc.UnreadableGrant] = []
    grants = list(Scripted(pages).list_grants(on_unreadable=received.append))
    assert [g.id for g in grants] == ["g1", "g2"]
    assert [e.vendor_id for e in received] == ["bad1"]


def test_read_items_reports_any_failure_with_the_item() -> None:
    def read(item: Any) -> bc.CreditGrant:
        return _grant(int(item["amount"]))

    items: list[Any] = [{"id": "ok", "amount": 3}, {"id": "zero", "amount": 0},
                        {"id": "text", "amount": "x"}, ["not", "a", "dict"]]
    grants, unreadable = bc.read_items("scripted", items, read, lambda item: item["id"])
    assert [g.amount.amount for g in grants] == [Decimal(3)]
    assert [e.vendor_id for e in unreadable] == ["zero", "text", None]
    assert unreadable[0].raw == {"id": "zero", "amount": 0}
    assert "greater than zero" in unreadable[0].problem


def test_provider_errors_redact_registered_secrets_and_credential_shapes() -> None:
    bc.register_secret("s3cr3t-token-value")
    body = {"error": {"message": "Invalid API Key provided: Bearer sk_test_abcdefghijkl",
                      "echo": {"Authorization": "Bearer s3cr3t-token-value"}}}
    error = bc.AuthenticationError("Invalid API Key provided: sk_test_abcdefghijkl", body=body,
                                   code="s3cr3t-token-value")
    for text in (str(error), repr(error), str(error.body), str(error.code), error.message):
        assert "s3cr3t-token-value" not in text
        assert "sk_test_abcdefghijkl" not in text
    assert MASK in str(error)


def test_excerpt_is_bounded_and_redacted() -> None:
    bc.register_secret("another-secret-123")
    text = bc.excerpt("x" * 2000 + "another-secret-123")
    assert len(text) < 600
    assert "another-secret-123" not in bc.excerpt({"k": "another-secret-123"})


@pytest.mark.parametrize(("url", "credential", "ok"), [
    ("https://api.example.com", True, True),
    ("http://127.0.0.1:8080", True, True),
    ("http://localhost:1", True, True),
    ("http://[::1]:8080", True, True),
    ("http://api.example.com", True, False),
    ("http://10.0.0.1", True, False),
    ("http://api.example.com", False, True),
    ("ftp://api.example.com", False, False),
    ("not a url", False, False),
])
def test_plain_http_with_a_credential_is_refused_beyond_loopback(
    url: str, credential: bool, ok: bool
) -> None:
    if ok:
        assert bc.check_base_url(url, credential=credential) == url
    else:
        with pytest.raises(bc.ConfigurationError):
            bc.check_base_url(url, credential=credential)


# -- review of 18.10: the guard's own memory and time -----------------------------------------

def test_the_guard_keeps_a_digest_not_each_cursor() -> None:
    """Up to ``max_pages`` cursors are kept; a vendor's cursor can be any length. 500 pages of
    64 KiB cursors held whole are 32 MB; the guard keeps a small digest of each."""
    import tracemalloc

    from billing_credits._provider import ListingGuard

    guard = ListingGuard("vendor", max_pages=10_000)
    tracemalloc.start()
    try:
        for page in range(500):
            cursor = f"{page:08d}" + "c" * 65_536
            assert guard.page([f"id_{page}"], cursor) == cursor
            del cursor
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1_000_000, held


def test_a_huge_page_of_repeated_ids_is_refused_quickly() -> None:
    """Naming the repeated ids of a page must not cost a pass over the page per id."""
    import time

    from billing_credits._errors import InvalidResponseError
    from billing_credits._provider import ListingGuard

    ids = [f"id_{i}" for i in range(50_000)] * 2
    start = time.monotonic()
    with pytest.raises(InvalidResponseError, match="again"):
        ListingGuard("vendor").page(ids, "next")
    assert time.monotonic() - start < 2.0
