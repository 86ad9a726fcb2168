"""Answers Orb would not give, or a proxy might: each ends in a core error naming what was
wrong, never a crash, a guessed amount or a loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from billing_credits_orb import OrbProvider
from billing_credits_orb.testing import OrbFake, dumps_exact

import billing_credits as bc

KEY = "orb_test_hostile_key"
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def _provider(fake: OrbFake, edit: Callable[[httpx.Request, httpx.Response], httpx.Response]
              ) -> OrbProvider:
    inner = fake.transport()

    def handler(request: httpx.Request) -> httpx.Response:
        response = inner.handle_request(request)
        response.read()
        return edit(request, response)

    transport = httpx.MockTransport(handler)
    return OrbProvider(KEY, http_client=httpx.Client(transport=transport),
                       runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))


def _seed(fake: OrbFake, count: int = 3) -> str:
    customer = fake.add_customer()
    provider = OrbProvider(KEY, http_client=httpx.Client(transport=fake.transport()))
    for n in range(count):
        provider.create_grant(bc.CreditGrant(
            customer_id=customer, amount=bc.Money(amount=Decimal(n + 1), currency="USD"),
            effective_at=DAY))
    return customer


def _json_edit(path_part: str, change: Callable[[dict], dict]
               ) -> Callable[[httpx.Request, httpx.Response], httpx.Response]:
    def edit(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if path_part not in request.url.path or request.method != "GET":
            return response
        body = change(json.loads(response.content, parse_float=Decimal))
        return httpx.Response(response.status_code, content=dumps_exact(body),
                              headers={"content-type": "application/json"})
    return edit


def test_a_body_that_is_not_json_is_an_invalid_response() -> None:
    fake = OrbFake()
    customer = _seed(fake, 1)
    provider = _provider(fake, lambda request, response: httpx.Response(
        200, content=b"<html>proxy</html>", headers={"content-type": "application/json"}))
    with pytest.raises(bc.InvalidResponseError):
        list(provider.list_grants(customer))


def test_an_unreadable_block_is_reported_not_skipped() -> None:
    fake = OrbFake()
    customer = _seed(fake)

    def break_one(body: dict) -> dict:
        if "data" in body and body["data"] and "balance" in body["data"][0]:
            body["data"][0]["maximum_initial_balance"] = "lots"
        return body

    provider = _provider(fake, _json_edit("/credits", break_one))
    seen: list[bc.UnreadableGrant] = []
    grants = list(provider.list_grants(customer, on_unreadable=seen.append))
    assert len(grants) == 2
    assert len(seen) == 1
    assert seen[0].vendor_id in fake.blocks
    with pytest.raises(bc.UnreadableGrantsError):
        list(provider.list_grants(customer))


def test_a_cursor_that_cycles_ends_the_listing() -> None:
    fake = OrbFake()
    customer = _seed(fake)

    def cycle(body: dict) -> dict:
        if "pagination_metadata" in body:
            body["pagination_metadata"] = {"has_more": True, "next_cursor": "same"}
        return body

    fake_cursor = _provider(fake, _json_edit("/credits", cycle))
    with pytest.raises(bc.ProviderError):
        list(fake_cursor.list_grants(customer, page_size=1))


def test_a_page_without_pagination_metadata_is_refused() -> None:
    fake = OrbFake()
    customer = _seed(fake)
    provider = _provider(fake, _json_edit("/credits", lambda body: {
        "data": body.get("data", [])} if "data" in body else body))
    with pytest.raises(bc.InvalidResponseError, match="pagination_metadata"):
        list(provider.list_grants(customer))
