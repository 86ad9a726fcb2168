"""The fake against the ``metronome-sdk`` contract: its field sets are the SDK's params types,
every request the providers send validates against them, every response parses with the SDK's
response models, and the SDK itself can drive the fake (including its paginators)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, get_type_hints

import httpx
import metronome
import pytest
from billing_credits_metronome._transport import dumps, loads
from billing_credits_metronome.testing import (
    CREATE_CREDIT_FIELDS,
    CREATE_GRANT_FIELDS,
    EDIT_GRANT_FIELDS,
    LIST_CREDITS_FIELDS,
    LIST_GRANTS_FIELDS,
    UPDATE_END_DATE_FIELDS,
    VOID_GRANT_FIELDS,
    MetronomeFake,
)
from metronome.types.v1 import (
    credit_grant_create_params,
    credit_grant_edit_params,
    credit_grant_list_params,
    credit_grant_void_params,
)
from metronome.types.v1.customers import (
    credit_create_params,
    credit_list_params,
    credit_update_end_date_params,
)
from metronome_helpers import PRODUCT, TOKEN, make_fake, runtime
from metronome_sdk_checks import Recorder, check_exchange

import billing_credits as bc
from billing_credits.testing import FakeTransport

CUSTOMER = "13117714-3f05-48e5-a6e9-a66093f13b4d"

def _keys(td: Any) -> frozenset[str]:
    return frozenset(get_type_hints(td))


def test_field_sets_are_the_sdk_params() -> None:
    assert _keys(credit_grant_create_params.CreditGrantCreateParams) == CREATE_GRANT_FIELDS
    assert _keys(credit_grant_list_params.CreditGrantListParams) == LIST_GRANTS_FIELDS | {
        "limit", "next_page"}
    assert _keys(credit_grant_edit_params.CreditGrantEditParams) == EDIT_GRANT_FIELDS
    assert _keys(credit_grant_void_params.CreditGrantVoidParams) == VOID_GRANT_FIELDS
    assert _keys(credit_create_params.CreditCreateParams) == CREATE_CREDIT_FIELDS
    assert _keys(credit_list_params.CreditListParams) == LIST_CREDITS_FIELDS
    assert _keys(credit_update_end_date_params.CreditUpdateEndDateParams) == (
        UPDATE_END_DATE_FIELDS)


def _grant(customer: str, i: int, **changes: Any) -> bc.CreditGrant:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    data: dict[str, Any] = {
        "customer_id": customer, "amount": bc.Money(amount=Decimal(5) + i, currency="USD"),
        "name": f"g{i}", "reason": "r", "category": bc.Category.PROMOTIONAL, "category_label": "trial",
        "effective_at": start, "expires_at": start + timedelta(days=3), "metadata": {"k": "v"},
        "paid_amount": bc.Money(amount=Decimal(1), currency="USD"),
    }
    data.update(changes)
    return bc.CreditGrant(**data)


@pytest.mark.parametrize("name", ["metronome", "metronome-plans"])
def test_every_exchange_of_the_providers_matches_the_sdk(name: str) -> None:
    recorder = Recorder(make_fake())
    transport = FakeTransport(recorder)
    settings = {"product_id": PRODUCT} if name == "metronome" else {}
    provider = bc.get_provider(name, bearer_token=TOKEN, runtime=runtime(),
                               http_client=httpx.Client(transport=transport), **settings)
    customer = str(uuid.uuid4())
    scope = (bc.Scope(product_ids=(PRODUCT,)) if name == "metronome-plans" else
             bc.Scope(product_tags=("t",), contract_ids=("c",)))
    created = [provider.create_grant(_grant(customer, i, scope=scope, idempotency_key=f"k{i}"))
               for i in range(3)]
    provider.create_grant(_grant(customer, 0, scope=scope, idempotency_key="k0"))  # 409 path
    list(provider.list_grants(customer, page_size=2))
    assert created[0].id
    assert created[1].id
    provider.get_grant(created[0].id)
    provider.expire_grant(created[0].id)
    if name == "metronome-plans":
        provider.void_grant(created[1].id)
    paths = {request.url.path for request, _ in recorder.exchanges}
    assert len(paths) == (4 if name == "metronome-plans" else 3)
    assert any(r.status_code == 409 for _, r in recorder.exchanges)
    for request, response in recorder.exchanges:
        check_exchange(request, response)


def test_the_sdk_drives_the_fake() -> None:
    """The official client, pointed at the fake, creates, pages and parses: same protocol."""
    fake = make_fake(require_hour_boundaries=True)
    client = metronome.Metronome(
        bearer_token=TOKEN, base_url="https://api.metronome.com", max_retries=0,
        http_client=httpx.Client(transport=FakeTransport(fake)))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [client.v1.credit_grants.create(
        customer_id=CUSTOMER, expires_at=start + timedelta(days=30), name=f"g{i}",
        grant_amount={"amount": 1000, "credit_type_id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2"},
        paid_amount={"amount": 0, "credit_type_id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2"},
        priority=0.5, effective_at=start, uniqueness_key=f"sdk-{i}").data.id for i in range(5)]
    listed = [g.id for g in client.v1.credit_grants.list(customer_ids=[CUSTOMER], limit=2)]
    assert listed == ids
    with pytest.raises(metronome.ConflictError):
        client.v1.credit_grants.create(
            customer_id=CUSTOMER, expires_at=start + timedelta(days=30), name="dup",
            grant_amount={"amount": 1, "credit_type_id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2"},
            paid_amount={"amount": 0, "credit_type_id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2"},
            priority=1, effective_at=start, uniqueness_key="sdk-0")
    client.v1.credit_grants.void(id=ids[0])
    assert [g.id for g in client.v1.credit_grants.list(customer_ids=[CUSTOMER])] == ids[1:]

    credit_ids = [client.v1.customers.credits.create(
        customer_id=CUSTOMER, priority=1, product_id=PRODUCT,
        access_schedule={"schedule_items": [
            {"amount": 10, "starting_at": start, "ending_before": start + timedelta(days=1)},
            {"amount": 20, "starting_at": start + timedelta(days=1),
             "ending_before": start + timedelta(days=2)}]}).data.id for _ in range(3)]
    credits = list(client.v1.customers.credits.list(customer_id=CUSTOMER, limit=1,
                                                    include_balance=True))
    assert [c.id for c in credits] == credit_ids
    assert len(credits[0].access_schedule.schedule_items) == 2  # type: ignore[union-attr]
    client.v1.customers.credits.update_end_date(
        customer_id=CUSTOMER, credit_id=credit_ids[0],
        access_ending_before=start + timedelta(hours=5))


def _post(fake: MetronomeFake, path: str, body: dict[str, Any],
          query: dict[str, Any] | None = None, token: str = TOKEN) -> httpx.Response:
    return fake.handle(httpx.Request(
        "POST", f"https://api.metronome.com{path}", params=query or {}, content=dumps(body),
        headers={"Authorization": f"Bearer {token}"}))


GRANT = {"customer_id": CUSTOMER, "name": "n", "priority": 1,
         "expires_at": "2026-02-01T00:00:00.000Z", "effective_at": "2026-01-01T00:00:00.000Z",
         "grant_amount": {"amount": 100, "credit_type_id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2"},
         "paid_amount": {"amount": 0, "credit_type_id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2"}}
CREDIT = {"customer_id": CUSTOMER, "priority": 1, "product_id": PRODUCT,
          "access_schedule": {"schedule_items": [{
              "amount": 5, "starting_at": "2026-01-01T00:00:00Z",
              "ending_before": "2026-02-01T00:00:00Z"}]}}


@pytest.mark.parametrize(("path", "body", "query", "status", "message"), [
    ("/v1/credits/createGrant", {k: v for k, v in GRANT.items() if k != "name"}, None, 400,
     "Missing required field name"),
    ("/v1/credits/createGrant", {**GRANT, "surprise": 1}, None, 400, "Unknown field surprise"),
    ("/v1/credits/createGrant", {**GRANT, "priority": "1"}, None, 400, "priority must be a number"),
    ("/v1/credits/createGrant", {**GRANT, "uniqueness_key": "k" * 129}, None, 400, "1-128"),
    ("/v1/credits/createGrant", {**GRANT, "custom_fields": {"a": "x" * 201}}, None, 400,
     "200 characters"),
    ("/v1/credits/createGrant", {**GRANT, "effective_at": "2026-01-01T00:30:00Z"}, None, 400,
     "hour boundary"),
    ("/v1/credits/createGrant", {**GRANT, "expires_at": "2026-01-01T00:00:00"}, None, 400,
     "offset"),
    ("/v1/credits/listGrants", {}, {"limit": 101}, 400, "between 1 and 100"),
    ("/v1/credits/listGrants", {"credit_grant_ids": [CUSTOMER], "customer_ids": [CUSTOMER]},
     None, 400, "cannot be combined"),
    ("/v1/credits/voidGrant", {"id": CUSTOMER}, None, 404, "not found"),
    ("/v1/contracts/customerCredits/list", {"customer_id": CUSTOMER, "limit": 26}, None, 400,
     "between 1 and 25"),
    ("/v1/contracts/customerCredits/list", {"customer_id": CUSTOMER}, {"limit": 5}, 400,
     "Unknown field"),
    ("/v1/contracts/customerCredits/create",
     {**CREDIT, "specifiers": [{"product_id": PRODUCT}], "applicable_product_ids": [PRODUCT]},
     None, 400, "specifiers cannot be used together"),
    ("/v1/contracts/customerCredits/create",
     {**CREDIT, "access_schedule": {"schedule_items": []}}, None, 400, "at least one"),
    ("/v1/credits/nothing", {}, None, 404, "No route"),
])
def test_documented_validation(path: str, body: dict[str, Any], query: dict[str, Any] | None,
                               status: int, message: str) -> None:
    fake = make_fake()
    response = _post(fake, path, body, query)
    assert response.status_code == status, response.content
    assert message in loads(response.content)["message"]
    assert set(loads(response.content)) == {"message"}


def test_uniqueness_keys_and_void_release() -> None:
    fake = make_fake()
    first = _post(fake, "/v1/credits/createGrant", {**GRANT, "uniqueness_key": "u"})
    assert first.status_code == 200
    again = _post(fake, "/v1/credits/createGrant", {**GRANT, "uniqueness_key": "u"})
    assert again.status_code == 409
    assert "uniqueness key" in loads(again.content)["message"]
    grant_id = loads(first.content)["data"]["id"]
    assert _post(fake, "/v1/credits/voidGrant", {"id": grant_id}).status_code == 200
    listed = loads(_post(fake, "/v1/credits/listGrants", {"customer_ids": [CUSTOMER]}).content)
    assert listed["data"] == []
    assert _post(fake, "/v1/credits/createGrant", {**GRANT, "uniqueness_key": "u"}).status_code \
        == 409
    second = loads(_post(fake, "/v1/credits/createGrant", {**GRANT, "uniqueness_key": "v"})
                   .content)["data"]["id"]
    released = _post(fake, "/v1/credits/voidGrant", {"id": second, "release_uniqueness_key": True})
    assert released.status_code == 200
    assert _post(fake, "/v1/credits/createGrant", {**GRANT, "uniqueness_key": "v"}).status_code \
        == 200
    credit = _post(fake, "/v1/contracts/customerCredits/create", {**CREDIT, "uniqueness_key": "c"})
    assert credit.status_code == 200
    assert _post(fake, "/v1/contracts/customerCredits/create",
                 {**CREDIT, "uniqueness_key": "c"}).status_code == 409


def test_update_end_date_only_shortens_and_auth_is_required() -> None:
    fake = make_fake()
    credit = loads(_post(fake, "/v1/contracts/customerCredits/create", CREDIT).content)
    body = {"customer_id": CUSTOMER, "credit_id": credit["data"]["id"],
            "access_ending_before": "2026-03-01T00:00:00Z"}
    longer = _post(fake, "/v1/contracts/customerCredits/updateEndDate", body)
    assert longer.status_code == 400
    assert "earlier" in loads(longer.content)["message"]
    assert _post(fake, "/v1/credits/listGrants", {}, token="wrong").status_code == 401
