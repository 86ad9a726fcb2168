"""Issue 18.10: listings with fresh cursors forever.

A vendor answering ``has_more: true`` with a new cursor each time but items already returned
never trips a cursor check: the core ``ListingGuard`` ends such a listing (ids of the last
pages remembered), and every listing has a ceiling (``max_listing_pages``, a setting of every
provider) ending it with ``InvalidResponseError`` naming the request id. Applied to grant,
balance and ledger listings of the core walk and of the Stripe and Metronome providers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

import billing_credits as bc
from billing_credits.plugins._registry import available_providers, get_provider

START = datetime(2026, 1, 1, tzinfo=UTC)


def _grant(n: int) -> bc.CreditGrant:
    return bc.CreditGrant(customer_id="cus_1", amount=bc.Money(amount=Decimal(5), currency="USD"),
                          effective_at=START, id=f"g{n}", provider="forever")


class Forever(bc.Provider):
    """Page n holds ``ids(n)``, always with a fresh cursor: the listing never ends by itself."""

    name = "forever"
    capabilities = bc.Capabilities(operations=frozenset({"create", "list", "get"}))

    def __init__(self, ids: Any) -> None:
        super().__init__(runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))
        self.ids = ids
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
        if self.requests > 5000:
            raise AssertionError("the listing never ended")
        n = self.requests
        return bc.Page([_grant(i) for i in self.ids(n)], f"cursor-{n}", request_id=f"req_{n}")


def test_fresh_cursors_over_items_already_returned_end_the_listing() -> None:
    provider = Forever(lambda n: [n % 3, 100 + n % 3])  # a circle of three pages
    with pytest.raises(bc.InvalidResponseError) as caught:
        list(provider.list_grants())
    assert provider.requests == 4
    assert caught.value.request_id == "req_4"
    assert "again" in str(caught.value)


def test_an_item_repeated_inside_one_page_ends_the_listing() -> None:
    provider = Forever(lambda n: [n, n])
    with pytest.raises(bc.InvalidResponseError, match="again"):
        list(provider.list_grants())


def test_every_listing_has_a_ceiling_naming_the_request_id() -> None:
    provider = Forever(lambda n: [n])  # new items forever: only the ceiling stops it
    provider.max_listing_pages = 7
    with pytest.raises(bc.InvalidResponseError) as caught:
        list(provider.list_grants())
    assert provider.requests == 7
    assert caught.value.request_id == "req_7"
    assert "ceiling of 7 pages" in str(caught.value)
    assert "max_listing_pages" in str(caught.value)


def test_a_listing_within_the_ceiling_is_whole() -> None:
    guard = bc.ListingGuard("p", max_pages=3)
    assert guard.page(["a"], "c1") == "c1"
    assert guard.page(["b"], "c2") == "c2"
    assert guard.page(["c"], None) is None  # the last page: no ceiling reached


def test_the_guard_remembers_a_bounded_window() -> None:
    from billing_credits._provider import REPEAT_WINDOW

    guard = bc.ListingGuard("p")
    for n in range(REPEAT_WINDOW * 5):
        guard.page([f"id{n}"], f"c{n}")
    assert len(guard.recent) == REPEAT_WINDOW


def test_max_listing_pages_is_a_setting_of_every_provider(tmp_path: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for info in available_providers():
        assert "max_listing_pages" in {s.name for s in info.settings}, info.name
    local = get_provider("local", path=str(tmp_path / "l.db"), max_listing_pages="12")
    assert local.max_listing_pages == 12
    local.close()
    monkeypatch.setenv("BILLING_CREDITS_MAX_LISTING_PAGES", "9")
    local = get_provider("local", path=str(tmp_path / "l.db"))
    assert local.max_listing_pages == 9
    local.close()
    for bad in ("0", "-3", "many", "1.5"):
        with pytest.raises(bc.ConfigurationError, match="max_listing_pages"):
            get_provider("local", path=str(tmp_path / "l.db"), max_listing_pages=bad)


# -- Stripe: has_more true, a fresh last id each page, the other ids repeated ----------------

STRIPE_KEY = "sk_test_ceilingTest0123456789"


def _stripe_grant(grant_id: str) -> dict[str, Any]:
    return {"id": grant_id, "object": "billing.credit_grant", "customer": "cus_1",
            "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": 500}},
            "applicability_config": {"scope": {"price_type": "metered"}},
            "category": "promotional", "created": 1767225600, "effective_at": 1767225600,
            "expires_at": None, "livemode": False, "metadata": {}, "name": "g",
            "priority": 50, "test_clock": None, "updated": 1767225600, "voided_at": None}


def _stripe_transaction(tx_id: str) -> dict[str, Any]:
    return {"id": tx_id, "object": "billing.credit_balance_transaction", "created": 1767225600,
            "credit": {"amount": {"type": "monetary", "monetary": {"currency": "usd",
                                                                     "value": 100}},
                       "type": "credits_granted"},
            "credit_grant": "cg_1", "debit": None, "effective_at": 1767225600,
            "livemode": False, "test_clock": None, "type": "credit"}


def _stripe(answer: Any) -> Any:
    from billing_credits_stripe import StripeProvider

    return StripeProvider(STRIPE_KEY, http_client=httpx.Client(transport=httpx.MockTransport(answer)),
                          runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))


def _circling(make: Any) -> Any:
    count = {"n": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        count["n"] += 1
        assert count["n"] < 500, "the Stripe listing never ended"
        data = [make("cg_repeated" if "grant" in request.url.path else "cbtxn_repeated"),
                make(f"{'cg' if 'grant' in request.url.path else 'cbtxn'}_{count['n']}")]
        return httpx.Response(200, json={"object": "list", "data": data, "has_more": True,
                                         "url": request.url.path},
                              headers={"Request-Id": f"req_{count['n']}"})
    answer.count = count  # type: ignore[attr-defined]
    return answer


@pytest.mark.parametrize("listing", ["list_grants", "get_balance", "list_ledger"])
def test_stripe_listings_with_fresh_cursors_and_repeated_ids_end(listing: str) -> None:
    make = _stripe_transaction if listing == "list_ledger" else _stripe_grant
    answer = _circling(make)
    calls = {"list_grants": lambda p: list(p.list_grants("cus_1")),
             "get_balance": lambda p: p.get_balance("cus_1"),
             "list_ledger": lambda p: list(p.list_ledger("cus_1"))}
    with _stripe(answer) as provider, pytest.raises(bc.InvalidResponseError) as caught:
        calls[listing](provider)
    assert answer.count["n"] == 2
    assert caught.value.request_id == "req_2"
    assert "again" in str(caught.value)


def test_stripe_listing_ceiling_is_the_setting() -> None:
    count = {"n": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        count["n"] += 1
        assert count["n"] < 500
        return httpx.Response(200, json={"object": "list", "has_more": True, "url": "/",
                                         "data": [_stripe_grant(f"cg_{count['n']}")]},
                              headers={"Request-Id": f"req_{count['n']}"})

    with _stripe(answer) as provider:
        provider.max_listing_pages = 5
        with pytest.raises(bc.InvalidResponseError, match="ceiling of 5 pages") as caught:
            provider.get_balance("cus_1")
    assert count["n"] == 5
    assert caught.value.request_id == "req_5"


# -- Metronome: next_page fresh each time, the same credits again -----------------------------

def test_metronome_balance_listing_with_fresh_cursors_and_repeated_ids_ends() -> None:
    from billing_credits_metronome import MetronomeCreditsProvider

    count = {"n": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        count["n"] += 1
        assert count["n"] < 500, "the Metronome listing never ended"
        return httpx.Response(200, json={"data": [{"id": "credit_repeated"}],
                                         "next_page": f"page-{count['n']}"},
                              headers={"x-request-id": f"req_{count['n']}"})

    provider = MetronomeCreditsProvider(
        bearer_token="tok_ceiling_0123", http_client=httpx.Client(
            transport=httpx.MockTransport(answer)),
        runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))
    with provider, pytest.raises(bc.InvalidResponseError, match="again"):
        provider.get_balance("6f1c0c9e-3d7e-4b7a-9a57-0d6f6b2b4b10")
    assert count["n"] == 2
