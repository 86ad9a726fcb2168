"""Issue 9.4 on Metronome: an item, a ledger entry or a balance of the wrong shape reads as
``InvalidResponseError`` naming the provider and the item (``bc.reading_vendor_payload``), never
as ``KeyError``/``TypeError``/``AttributeError``/``InvalidOperation``/... as it did."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from billing_credits_metronome import _ledger as ml
from billing_credits_metronome import _translate as tr
from billing_credits_metronome._transport import loads

import billing_credits as bc

SEED003 = Path(__file__).parent / "data" / "seed003_listGrants.json"
NOW = datetime(2022, 2, 15, tzinfo=UTC)
CUSTOMER = "b310b282-d5cf-4e4f-915f-d8c3c4971e45"
PLANS = tr.TranslationConfig(provider="metronome-plans")
CREDITS = tr.TranslationConfig(product_id="f14d6729-6a44-4b13-9908-9387f1918790")
USD = {"id": tr.USD_CENTS, "name": "USD (cents)"}

GRANT: dict[str, Any] = loads(SEED003.read_bytes())["data"][0]
CREDIT: dict[str, Any] = {
    "id": "fbc546d8-9236-440e-a943-69700138486f", "type": "CREDIT", "priority": 100,
    "product": {"id": "f14d6729-6a44-4b13-9908-9387f1918790", "name": "Credit product"},
    "access_schedule": {"credit_type": USD, "schedule_items": [
        {"id": "65135034-d661-48cd-a091-4724027e225c", "amount": 700,
         "starting_at": "2022-02-01T00:00:00.000Z", "ending_before": "2022-03-01T00:00:00.000Z"}]},
    "balance": 700,
    "ledger": [{"type": "CREDIT_SEGMENT_START", "amount": 700,
                "segment_id": "65135034-d661-48cd-a091-4724027e225c",
                "timestamp": "2022-02-01T00:00:00.000Z"}],
}
ENTRY: dict[str, Any] = {"amount": 700, "created_by": "Metronome System", "reason": "Credit grant",
                         "credit_grant_id": GRANT["id"], "effective_at": "2022-02-01T00:00:00.000Z",
                         "running_balance": 700}


def changed(item: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``item`` with the value at ``path`` (dot-separated keys or list indexes) replaced; the
    sentinel ``...`` removes it."""
    out = copy.deepcopy(item)
    *parents, last = path.split(".")
    node: Any = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    key_or_index: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key_or_index]
    else:
        node[key_or_index] = value
    return out


def test_the_samples_read() -> None:
    assert tr.grant_from_item(GRANT, PLANS, NOW, provider="metronome-plans").id == GRANT["id"]
    assert tr.credit_from_item(CREDIT, CUSTOMER, CREDITS, NOW, provider="metronome").amount == \
        bc.Money(amount=7, currency="USD")
    assert ml.plans_entries([{"customer_id": CUSTOMER, "ledgers": [
        {"credit_type": USD, "entries": [ENTRY]}]}], CUSTOMER, PLANS)
    assert ml.credit_entries(CREDIT, CUSTOMER, CREDITS)
    assert ml.credits_balances([CREDIT], CUSTOMER, CREDITS, NOW)
    assert ml.credits_balances_at([CREDIT], CUSTOMER, CREDITS, NOW)
    live = changed(changed(GRANT, "expires_at", "2022-04-01T00:00:00Z"), "effective_at",
                   "2022-01-01T00:00:00Z")
    assert ml.plans_balances([live], CUSTOMER, PLANS, NOW)


@pytest.mark.parametrize(("path", "value"), [
    ("grant_amount", ...), ("grant_amount", 5), ("grant_amount.amount", "lots"),
    ("grant_amount.amount", [1]), ("grant_amount.credit_type", "usd"), ("effective_at", 5),
    ("effective_at", "yesterday"), ("expires_at", "9999-12-31T23:59:59-01:00"),
    ("custom_fields", "x"), ("deductions", 5), ("deductions.0", "x"), ("balance", "x"),
    ("paid_amount", 5), ("paid_amount.amount", True), ("priority", "high"), ("id", ...),
    ("products", [5]), ("customer_id", None), ("grant_amount.amount", 0),
])
def test_a_grant_of_the_wrong_shape(path: str, value: Any) -> None:
    item = changed(GRANT, path, value)
    with pytest.raises(bc.InvalidResponseError) as caught:
        tr.grant_from_item(item, PLANS, NOW, provider="metronome-plans")
    assert caught.value.provider == "metronome-plans"
    assert "listGrants item" in caught.value.message
    assert caught.value.body == bc.excerpt(item)


@pytest.mark.parametrize(("path", "value"), [
    ("access_schedule", 5), ("access_schedule.schedule_items", "x"),
    ("access_schedule.schedule_items.0", 5), ("access_schedule.schedule_items.0.amount", "x"),
    ("access_schedule.schedule_items.0.starting_at", 5), ("access_schedule.credit_type", 5),
    ("balance", "lots"), ("priority", {}), ("custom_fields", 5), ("specifiers", [5]),
    ("applicable_product_ids", 5), ("id", ...), ("custom_fields", {"bc_category": "bogus"}),
])
def test_a_credit_of_the_wrong_shape(path: str, value: Any) -> None:
    item = changed(CREDIT, path, value)
    with pytest.raises(bc.InvalidResponseError) as caught:
        tr.credit_from_item(item, CUSTOMER, CREDITS, NOW, provider="metronome")
    assert caught.value.provider == "metronome"
    for read in (lambda: ml.credit_entries(item, CUSTOMER, CREDITS),
                 lambda: ml.credits_balances([item], CUSTOMER, CREDITS, NOW),
                 lambda: ml.credits_balances_at([item], CUSTOMER, CREDITS, NOW)):
        failed = None
        try:
            read()  # the ledger readers may not need the broken field; if they do, they say so
        except bc.InvalidResponseError as error:
            failed = error
        assert failed is None or failed.provider == "metronome"


@pytest.mark.parametrize("entry", [
    changed(ENTRY, "amount", "x"), changed(ENTRY, "amount", ...),
    changed(ENTRY, "effective_at", "never"), changed(ENTRY, "running_balance", [1]), "x", 5,
])
def test_a_ledger_entry_of_the_wrong_shape(entry: Any) -> None:
    data = [{"customer_id": CUSTOMER, "ledgers": [{"credit_type": USD, "entries": [entry]}]}]
    with pytest.raises(bc.InvalidResponseError, match="listEntries entry") as caught:
        ml.plans_entries(data, CUSTOMER, PLANS)
    assert caught.value.provider == "metronome-plans"
    credit = changed(CREDIT, "ledger", [entry])
    with pytest.raises(bc.InvalidResponseError, match=r"credit ledger entry|customerBalances"):
        ml.credit_entries(credit, CUSTOMER, CREDITS)


@pytest.mark.parametrize("ledgers", [5, [5], [{"entries": 5}], "x"])
def test_a_ledger_of_the_wrong_shape(ledgers: Any) -> None:
    data = [{"customer_id": CUSTOMER, "ledgers": ledgers}]
    with pytest.raises(bc.InvalidResponseError, match="listEntries"):
        ml.plans_entries(data, CUSTOMER, PLANS)


@pytest.mark.parametrize("item", [
    "not an object", changed(GRANT, "balance", 5), changed(GRANT, "effective_at", 5),
    changed(GRANT, "pending_deductions", [{"amount": "x"}]),
])
def test_a_balance_of_the_wrong_shape(item: Any) -> None:
    if isinstance(item, dict):
        item = changed(item, "expires_at", "2022-04-01T00:00:00Z")
    with pytest.raises(bc.InvalidResponseError, match="listGrants item") as caught:
        ml.plans_balances([item], CUSTOMER, PLANS, NOW)
    assert caught.value.provider == "metronome-plans"
    with pytest.raises(bc.InvalidResponseError, match="customerBalances item"):
        ml.credits_balances([item if isinstance(item, str) else {**CREDIT, "balance": "x"}],
                            CUSTOMER, CREDITS, NOW)
