"""Answers Orb would not give, or a proxy might: each ends in a core error naming what was
wrong, never a crash, a guessed amount or a loop."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from billing_credits_orb import OrbProvider
from billing_credits_orb.testing import OrbFake, dumps_exact
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def test_a_block_with_a_lone_surrogate_is_refused_and_a_clean_page_is_checked_once() -> None:
    """A listing page's text is checked once (``bc.decode_vendor_json``): a clean page's
    grants keep their block as ``raw`` unchecked again; a page holding a lone surrogate (an
    escape no text can encode) is not trusted, so the block holding it is refused, never kept
    in ``raw``, and the others are read."""
    fake = OrbFake()
    customer = _seed(fake)
    clean = list(OrbProvider(KEY, http_client=httpx.Client(transport=fake.transport()))
                 .list_grants(customer))
    assert len(clean) == 3
    assert all(bc.is_checked_payload(grant.raw) for grant in clean)

    def add_surrogate(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if "/credits" not in request.url.path or request.method != "GET":
            return response
        text = response.content.replace(b'"balance":', b'"note":"\\ud800","balance":', 1)
        return httpx.Response(response.status_code, content=text,
                              headers={"content-type": "application/json"})

    seen: list[bc.UnreadableGrant] = []
    grants = list(_provider(fake, add_surrogate).list_grants(customer, on_unreadable=seen.append))
    assert len(grants) == 2
    assert len(seen) == 1
    assert not any(bc.is_checked_payload(grant.raw) for grant in grants)
    assert all("note" not in (grant.raw or {}) for grant in grants)


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


@pytest.mark.parametrize("metadata", [["bc_customer"], "bc_customer", 7])
def test_a_block_whose_metadata_is_not_an_object_is_an_invalid_response(metadata: object) -> None:
    """Review 19: ``GET /credit_blocks/{id}`` with ``metadata`` of the wrong type crashed with
    ``AttributeError`` before the block was read."""
    fake = OrbFake()
    customer = _seed(fake, 1)
    block_id = next(iter(fake.blocks))

    def bad(body: dict) -> dict:
        body["metadata"] = metadata
        return body

    provider = _provider(fake, _json_edit("/credit_blocks/", bad))
    for operation in (provider.get_grant, provider.void_grant, provider.expire_grant):
        with pytest.raises(bc.InvalidResponseError):
            operation(block_id)
    assert customer in fake.customers


_HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**45, max_value=10**45),
    st.sampled_from([Decimal("1E+999999"), Decimal("-1E-999999"), "NaN", "Infinity", "1e99999",
                     "2026-13-45", "", ["x"], {"a": 1}, [], {}]),
    st.text(max_size=5))


def _hostile_edit(edits: list[tuple[int, bool, object]]) -> Callable[[dict], dict]:
    """Set (or delete) one key of some object in the answer, for each edit."""
    def change(body: dict) -> dict:
        nodes: list[dict] = []

        def walk(node: object) -> None:
            if isinstance(node, dict):
                nodes.append(node)
                for value in list(node.values()):
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(body)
        for index, delete, value in edits:
            node = nodes[index % len(nodes)]
            keys = list(node) or ["x"]
            key = keys[(index // len(nodes)) % len(keys)]
            if delete:
                node.pop(key, None)
            else:
                node[key] = value
        return body
    return change


@settings(max_examples=120, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, 10**6), st.booleans(), _HOSTILE), min_size=1,
                max_size=3),
       st.sampled_from(["/credit_blocks/", "/credits", "/ledger", "/customers/"]),
       st.sampled_from(["get", "list", "balance", "ledger", "void", "expire", "consume",
                        "create", "update"]))
def test_hostile_answers_raise_only_core_errors(edits: list[tuple[int, bool, object]],
                                                where: str, operation: str) -> None:
    """Review 19: any field of any Orb answer missing, null, huge, of the wrong type: every
    operation ends in a ``BillingCreditsError`` or succeeds, never another exception (this
    found the block whose metadata was not an object)."""
    fake = OrbFake(seed=3)
    customer = fake.add_customer(currency="USD")
    made = OrbProvider(KEY, http_client=httpx.Client(transport=fake.transport())).create_grant(
        bc.CreditGrant(customer_id=customer, amount=bc.Money(amount=Decimal(5), currency="USD"),
                       paid_amount=bc.Money(amount=Decimal(2), currency="USD"),
                       effective_at=DAY, expires_at=DAY + timedelta(days=30)))
    assert made.id is not None
    change = _hostile_edit(edits)

    def edit(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if where not in request.url.path or response.status_code >= 300:
            return response
        body = change(json.loads(response.content, parse_float=Decimal))
        return httpx.Response(response.status_code, content=json.dumps(body, default=str)
                              .encode(), headers={"content-type": "application/json"})

    provider = _provider(fake, edit)
    usd = bc.Money(amount=Decimal(1), currency="USD")
    runs: dict[str, Callable[[], object]] = {
        "get": lambda: provider.get_grant(made.id or ""),
        "list": lambda: list(provider.list_grants(customer)),
        "balance": lambda: provider.get_balance(customer),
        "ledger": lambda: list(provider.list_ledger(customer)),
        "void": lambda: provider.void_grant(made.id or ""),
        "expire": lambda: provider.expire_grant(made.id or ""),
        "consume": lambda: provider.consume(customer, usd, reference="r1"),
        "create": lambda: provider.create_grant(bc.CreditGrant(
            customer_id=customer, amount=usd, idempotency_key="k9")),
        "update": lambda: provider.update_grant(made.id or "", metadata={"a": "b"}),
    }
    with contextlib.suppress(bc.BillingCreditsError):  # anything else fails the test
        runs[operation]()
