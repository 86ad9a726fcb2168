"""Issue 9.4: reading a vendor payload of the wrong shape raises ``InvalidResponseError``, never
``KeyError``/``TypeError``/... (``bc.reading_vendor_payload``, ``bc.reads_vendor_payload``)."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest

import billing_credits as bc


@bc.reads_vendor_payload("acme", "credit grant")
def from_acme(item: Mapping[str, Any]) -> bc.CreditGrant:
    """Reads an Acme grant (the docstring is kept)."""
    return bc.CreditGrant(customer_id=item["customer"],
                          amount=bc.Money(amount=Decimal(item["amount"]["value"]), currency="USD"),
                          id=item["id"], provider="acme")


GOOD = {"id": "gr_1", "customer": "cus_1", "amount": {"value": 5}}


@pytest.mark.parametrize(("item", "problem"), [
    ({"id": "gr_1", "amount": {"value": 5}}, "missing key 'customer'"),
    ({"id": "gr_1", "customer": "cus_1", "amount": 5}, "TypeError"),
    ({"id": "gr_1", "customer": "cus_1", "amount": {"value": "lots"}}, "InvalidOperation"),
    ({"id": "gr_1", "customer": "cus_1", "amount": {"value": 0}}, "amount"),  # the model refuses
    ({"id": "gr_1", "customer": 5, "amount": {"value": 5}}, "customer_id"),
    ("not an object", "TypeError"),
])
def test_a_payload_of_the_wrong_shape_is_an_invalid_response(item: Any, problem: str) -> None:
    with pytest.raises(bc.InvalidResponseError) as caught:
        from_acme(item)
    error = caught.value
    assert error.provider == "acme"
    assert problem in error.message
    assert "credit grant" in error.message
    if isinstance(item, dict):
        assert "'gr_1'" in error.message, "names the item"
    assert isinstance(error.body, str)
    assert error.body == bc.excerpt(item)
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_a_readable_payload_reads_and_the_function_keeps_its_name() -> None:
    assert from_acme(GOOD).id == "gr_1"
    assert from_acme.__name__ == "from_acme"
    assert from_acme.__doc__ == "Reads an Acme grant (the docstring is kept)."


def test_a_provider_error_raised_while_reading_passes_unchanged() -> None:
    specific = bc.InvalidResponseError("Acme amounts are integers", provider="acme")
    with pytest.raises(bc.InvalidResponseError) as caught, \
            bc.reading_vendor_payload("acme", "credit grant", GOOD):
        raise specific
    assert caught.value is specific


def test_the_excerpt_is_bounded_and_redacted() -> None:
    secret = "sk_test_payloadSECRET0123456789"
    bc.register_secret(secret)
    huge = {"id": "gr_big", "echo": secret, "filler": ["x" * 100] * 1000}
    with pytest.raises(bc.InvalidResponseError) as caught:
        from_acme(huge)
    error = caught.value
    assert isinstance(error.body, str)
    assert len(error.body) <= bc._errors.EXCERPT_LIMIT + 40
    for text in (str(error), repr(error), error.body, "".join(traceback.format_exception(error))):
        assert secret not in text
    long_problem = {"id": "x" * 5000}
    with pytest.raises(bc.InvalidResponseError) as caught:
        from_acme(long_problem)
    assert len(caught.value.message) < 600, "the item id and the problem are bounded too"


def test_a_listing_still_reports_the_item_as_unreadable() -> None:
    grants, unreadable = bc.read_items("acme", [GOOD, {"id": "gr_2", "amount": 5}], from_acme,
                                       lambda item: item.get("id"))
    assert [g.id for g in grants] == ["gr_1"]
    assert [(u.vendor_id, u.provider) for u in unreadable] == [("gr_2", "acme")]
    assert "missing key 'customer'" in unreadable[0].problem
    assert unreadable[0].raw == {"id": "gr_2", "amount": 5}
