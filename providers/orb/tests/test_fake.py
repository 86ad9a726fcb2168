"""``OrbFake`` itself: every answer parses with the ``orb-billing`` SDK's own pydantic models
(``model_validate``, not the SDK's lenient ``construct``), and each rule it enforces answers
as Orb documents it. These tests guard the fake's model of the documented rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orb
import pytest
from billing_credits_orb.testing import OrbFake
from orb.types import Customer
from orb.types.credit_block_retrieve_response import CreditBlockRetrieveResponse
from orb.types.credit_block_update_response import CreditBlockUpdateResponse
from orb.types.customers.credit_list_response import CreditListResponse
from orb.types.customers.credits.ledger_create_entry_response import LedgerCreateEntryResponse
from orb.types.customers.credits.ledger_list_response import LedgerListResponse
from orb.types.shared.invoice import Invoice
from pydantic import TypeAdapter

API_KEY = "orb_test_fake_key"
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
ENTRY = TypeAdapter(LedgerCreateEntryResponse)
LISTED = TypeAdapter(LedgerListResponse)


@pytest.fixture
def fake() -> OrbFake:
    return OrbFake(api_key=API_KEY, seed=5)


@pytest.fixture
def http(fake: OrbFake) -> httpx.Client:
    return httpx.Client(transport=fake.transport(), base_url="http://orb.test/v1",
                        headers={"Authorization": f"Bearer {API_KEY}"})


def _json(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return json.loads(response.content, parse_float=Decimal)


def _post(http: httpx.Client, customer: str, body: dict[str, Any],
          key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return http.post(f"/customers/{customer}/credits/ledger_entry", json=body, headers=headers)


def _increment(**extra: Any) -> dict[str, Any]:
    return {"entry_type": "increment", "amount": 25.5, "currency": "USD",
            "effective_date": (DAY - timedelta(days=1)).isoformat(),
            "expiry_date": (DAY + timedelta(days=10)).isoformat(), **extra}


def test_every_answer_parses_with_the_sdk_models(fake: OrbFake, http: httpx.Client) -> None:
    customer = fake.add_customer(external_id="ext-1")
    created = _json(_post(http, customer, _increment(
        per_unit_cost_basis="2", invoice_settings={"auto_collection": False, "net_terms": 0,
                                                   "mark_as_paid": True},
        filters=[{"field": "item_id", "operator": "includes", "values": ["item_a"]}],
        metadata={"k": "v"})))
    entry = ENTRY.validate_python(created)
    assert entry.entry_type == "increment"
    assert created["created_invoices"]
    for invoice in created["created_invoices"]:
        assert Invoice.model_validate(invoice).status == "paid"
    _json(_post(http, customer, _increment()))
    block = created["credit_block"]["id"]
    decrement = _json(_post(http, customer, {"entry_type": "decrement", "amount": 3,
                                             "currency": "USD"}))
    assert ENTRY.validate_python(decrement).entry_type == "decrement"
    for body in ({"entry_type": "amendment", "amount": 1, "block_id": decrement[
                     "credit_block"]["id"], "currency": "USD"},
                 {"entry_type": "expiration_change", "block_id": block, "currency": "USD",
                  "target_expiry_date": (DAY + timedelta(days=5)).date().isoformat()},
                 {"entry_type": "void", "amount": 1, "block_id": block, "currency": "USD",
                  "void_reason": "refund"}):
        assert ENTRY.validate_python(_json(_post(http, customer, body))).entry_type == \
            body["entry_type"]
    fake.advance(6 * 86400)  # past the changed expiry: a credit_block_expiry entry
    for path in (f"/customers/{customer}", "/customers/external_customer_id/ext-1"):
        Customer.model_validate(_json(http.get(path)))
    customers = _json(http.get("/customers"))
    assert [Customer.model_validate(c).id for c in customers["data"]] == [customer]
    blocks = _json(http.get(f"/customers/{customer}/credits",
                            params={"currency": "USD", "include_all_blocks": "true"}))
    assert len(blocks["data"]) == 2
    for item in blocks["data"]:
        CreditListResponse.model_validate(item)
    CreditBlockRetrieveResponse.model_validate(_json(http.get(f"/credit_blocks/{block}")))
    CreditBlockUpdateResponse.model_validate(_json(http.put(
        f"/credit_blocks/{block}", json={"metadata": {"k": None, "x": "y"}})))
    ledger = _json(http.get(f"/customers/{customer}/credits/ledger", params={"currency": "USD"}))
    kinds = [LISTED.validate_python(item).entry_type for item in ledger["data"]]
    assert set(kinds) == {"increment", "decrement", "amendment", "expiration_change", "void",
                          "credit_block_expiry"}


def test_errors_parse_as_the_sdks_own_exceptions(fake: OrbFake) -> None:
    customer = fake.add_customer()
    transport = fake.transport()
    client = orb.Orb(api_key=API_KEY, base_url="http://orb.test/v1", max_retries=0,
                     http_client=httpx.Client(transport=transport))
    with pytest.raises(orb.ResourceNotFound):
        client.credit_blocks.retrieve("nothing")
    with pytest.raises(orb.RequestValidationError):
        client.customers.credits.ledger.create_entry(
            customer, entry_type="increment", amount=10, currency="USD",
            per_unit_cost_basis="1.5")  # a cost basis above zero needs invoice_settings
    bad = orb.Orb(api_key="orb_wrong_key", base_url="http://orb.test/v1", max_retries=0,
                  http_client=httpx.Client(transport=transport))
    with pytest.raises(orb.OrbAuthenticationError):
        bad.customers.fetch(customer)


@pytest.mark.parametrize(("change", "detail"), [
    ({"invoice_settings": {"auto_collection": False, "net_terms": 0}}, "per_unit_cost_basis"),
    ({"per_unit_cost_basis": "1", "invoice_settings": {"auto_collection": False}},
     "net_terms or custom_due_date"),
    ({"per_unit_cost_basis": "1", "invoice_settings": {
        "auto_collection": False, "net_terms": 0, "custom_due_date": "2030-01-01"}},
     "net_terms or custom_due_date"),
    ({"currency": "EUR"}, "does not match the customer's currency"),
    ({"amount": 0}, "greater than 0"),
    ({"entry_type": "grant"}, "entry_type"),
    ({"filters": [{"field": "price_id", "operator": "includes", "values": ["p"]}]}, "item_id"),
])
def test_documented_refusals(fake: OrbFake, http: httpx.Client, change: dict[str, Any],
                             detail: str) -> None:
    customer = fake.add_customer(currency="USD")
    answer = _post(http, customer, _increment(**change))
    assert answer.status_code == 400
    assert detail in answer.json()["detail"]
    assert not fake.blocks


def test_idempotency_as_orb_documents_it(fake: OrbFake, http: httpx.Client) -> None:
    """https://docs.withorb.com/reference/idempotency."""
    customer = fake.add_customer()
    first = _post(http, customer, _increment(), key="k-1")
    again = _post(http, customer, _increment(), key="k-1")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Idempotency-Key"] == "k-1"
    assert again.content == first.content
    assert len(fake.blocks) == 1
    other = _post(http, customer, _increment(amount=26), key="k-1")
    assert other.status_code == 409
    assert len(fake.blocks) == 1
    assert _post(http, customer, _increment(), key="k" * 65).status_code == 400
    fake.advance(48 * 3600)  # "Keys will expire after 48 hours"
    _post(http, customer, _increment(), key="k-1")
    assert len(fake.blocks) == 2


def test_decrement_follows_orbs_documented_order(fake: OrbFake, http: httpx.Client) -> None:
    """Soonest expiry first, then the lower cost basis, non-expiring last; one entry per
    block; the answer is the final deduction (ledger.py, ``list`` and ``create_entry``)."""
    customer = fake.add_customer()
    settings = {"auto_collection": False, "net_terms": 0, "mark_as_paid": True}
    never = _json(_post(http, customer, {**_increment(amount=10), "expiry_date": None}))
    dear = _json(_post(http, customer, _increment(amount=10, per_unit_cost_basis="2",
                                                  invoice_settings=settings)))
    cheap = _json(_post(http, customer, _increment(amount=10, per_unit_cost_basis="0")))
    final = _json(_post(http, customer, {"entry_type": "decrement", "amount": 25,
                                         "currency": "USD"}))
    assert final["credit_block"]["id"] == never["credit_block"]["id"]
    assert fake.blocks[cheap["credit_block"]["id"]].balance == 0
    assert fake.blocks[dear["credit_block"]["id"]].balance == 0
    assert fake.blocks[never["credit_block"]["id"]].balance == 5
    decrements = [e for e in fake.entries[customer] if e["entry_type"] == "decrement"]
    assert [e["credit_block"]["id"] for e in decrements] == [
        cheap["credit_block"]["id"], dear["credit_block"]["id"], never["credit_block"]["id"]]


def test_decrement_may_take_the_balance_negative(fake: OrbFake, http: httpx.Client) -> None:
    """"the customer's total credit balance in Orb can be negative as a result of a
    decrement"; a later increment first fills the negative block."""
    customer = fake.add_customer()
    block = _json(_post(http, customer, _increment(amount=5)))["credit_block"]["id"]
    _json(_post(http, customer, {"entry_type": "decrement", "amount": 8, "currency": "USD"}))
    assert fake.blocks[block].balance == -3
    _json(_post(http, customer, _increment(amount=10)))
    assert fake.blocks[block].balance == 0
    assert fake.balance(customer, "USD") == 7


def test_a_body_cut_short_is_not_executed_nor_saved(fake: OrbFake) -> None:
    """A client killed mid-body: nothing runs, and the key stays free for the real request."""
    customer = fake.add_customer()
    body = json.dumps(_increment()).encode()
    cut = httpx.Request("POST", f"http://orb.test/v1/customers/{customer}/credits/ledger_entry",
                        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "k-9",
                                 "Content-Length": str(len(body))}, content=b"")
    cut.headers["Content-Length"] = str(len(body))
    assert fake.handle(cut).status_code == 400
    assert not fake.blocks
    whole = httpx.Request("POST", cut.url, headers={"Authorization": f"Bearer {API_KEY}",
                                                    "Idempotency-Key": "k-9"}, content=body)
    assert fake.handle(whole).status_code == 200
    assert len(fake.blocks) == 1
