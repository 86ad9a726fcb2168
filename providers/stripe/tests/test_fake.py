"""The fake behaves like Stripe documents, and speaks in shapes the SDK's own objects parse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stripe
from billing_credits_stripe.testing import (
    StripeFake,
    declared_paths,
    endpoint_of,
    parse_form,
    undeclared_params,
)
from stripe.params.billing import (
    CreditBalanceSummaryRetrieveParams,
    CreditGrantCreateParams,
)
from stripe_sdk_shapes import assert_sdk_shape, error_problems, shape_problems

import billing_credits as bc

KEY = "sk_test_fake"
CREATE = {
    "amount[type]": "monetary", "amount[monetary][currency]": "usd",
    "amount[monetary][value]": "1000", "customer": "cus_1",
    "applicability_config[scope][price_type]": "metered",
}


@pytest.fixture
def fake() -> StripeFake:
    return StripeFake(clock=lambda: 1_700_000_000, seed=11)


@pytest.fixture
def http(fake: StripeFake) -> Iterator[httpx.Client]:
    with httpx.Client(transport=fake.transport(), base_url="https://api.stripe.com",
                      headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


def post(http: httpx.Client, path: str, data: dict[str, str], key: str | None = None
         ) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return http.post(path, data=data, headers=headers)


def stripe_error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["Request-Id"].startswith("req_")
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]  # type: ignore[no-any-return]


def parses_as(body: dict[str, Any], cls: type[stripe.StripeObject]) -> stripe.StripeObject:
    """``body`` has the field names and types the SDK declares for ``cls``, and the SDK builds
    a ``cls`` from it (which alone checks only the ``object`` tag)."""
    assert_sdk_shape(body, cls)
    obj = stripe.convert_to_stripe_object(body)
    assert type(obj) is cls, type(obj)
    return obj


# -- SDK shapes ----------------------------------------------------------------------------


def test_every_response_parses_with_the_sdk_objects(http: httpx.Client, fake: StripeFake
                                                    ) -> None:
    created = post(http, "/v1/billing/credit_grants", CREATE).json()
    grant = parses_as(created, stripe.billing.CreditGrant)
    assert grant.amount.monetary is not None
    assert grant.amount.monetary.value == 1000
    assert grant.applicability_config.scope.price_type == "metered"
    got = http.get(f"/v1/billing/credit_grants/{created['id']}").json()
    parses_as(got, stripe.billing.CreditGrant)
    listed = parses_as(http.get("/v1/billing/credit_grants").json(), stripe.ListObject)
    assert isinstance(listed.data[0], stripe.billing.CreditGrant)
    summary = http.get("/v1/billing/credit_balance_summary", params={
        "customer": "cus_1", "filter[type]": "credit_grant",
        "filter[credit_grant]": created["id"]}).json()
    parsed = parses_as(summary, stripe.billing.CreditBalanceSummary)
    assert parsed.balances[0].available_balance.monetary.value == 1000  # type: ignore[union-attr]
    expired = post(http, f"/v1/billing/credit_grants/{created['id']}/expire", {}).json()
    assert parses_as(expired, stripe.billing.CreditGrant).expires_at == 1_700_000_000
    voided = post(http, f"/v1/billing/credit_grants/{created['id']}/void", {}).json()
    assert parses_as(voided, stripe.billing.CreditGrant).voided_at == 1_700_000_000
    error = http.get("/v1/billing/credit_grants/credgr_nope")
    assert error_problems(error.json()) == []
    obj = stripe.ErrorObject.construct_from(stripe_error(error), KEY)
    assert obj.code == "resource_missing"
    assert obj.param == "id"


# A grant as Stripe documents its void response (https://docs.stripe.com/api/billing/credit-grant/void,
# copied in shared/reference/vendor-surface.md, "Expire and void responses").
STRIPE_SAYS = {
    "id": "credgr_test_61R9rnNTDmZ657a2r41L6nFOS1ekD5Ae", "object": "billing.credit_grant",
    "amount": {"monetary": {"currency": "usd", "value": 1000}, "type": "monetary"},
    "applicability_config": {"scope": {"price_type": "metered"}}, "category": "paid",
    "created": 1726688817, "customer": "cus_QsEHa3GKweMwih", "effective_at": 1726688817,
    "expires_at": None, "livemode": False, "metadata": {}, "name": "Purchased Credits",
    "priority": 50, "test_clock": None, "updated": 1726688829, "voided_at": 1726688829,
}


def test_the_shape_check_takes_what_stripe_sends() -> None:
    assert shape_problems(STRIPE_SAYS) == []
    without_optional = {k: v for k, v in STRIPE_SAYS.items() if k != "voided_at"}
    assert shape_problems(without_optional) == []  # Stripe leaves some Optional fields out
    listed = {"object": "list", "data": [STRIPE_SAYS], "has_more": False,
              "url": "/v1/billing/credit_grants"}
    assert shape_problems(listed) == []


@pytest.mark.parametrize(("change", "problem"), [
    ({"amount": "garbage"}, "$.amount: expected an object"),
    ({"amount": {"monetary": {"currency": "usd", "value": "1000"}, "type": "monetary"}},
     "$.amount.monetary.value: expected an integer"),
    ({"amount": {"monetary": {"currency": "usd", "value": 1000}, "type": "custom"}},
     "$.amount.type: 'custom' not in"),
    ({"livemode": "false"}, "$.livemode: expected a boolean"),
    ({"priority": True}, "$.priority: True fits none of"),
    ({"created": None}, "$.created: expected an integer"),
    ({"metadata": {"k": 1}}, "$.metadata.k: expected a string"),
    ({"applicability_config": {"scope": {"price_type": "licensed"}}},
     "$.applicability_config.scope.price_type: 'licensed' fits none of"),
    ({"balance": 1}, "$.balance: not a field of CreditGrant"),
])
def test_the_shape_check_refuses_what_the_sdk_does_not_declare(
        change: dict[str, Any], problem: str) -> None:
    """What ``stripe.convert_to_stripe_object`` accepts, as long as the ``object`` tag is right,
    and the shape check refuses, naming the field."""
    body = {**STRIPE_SAYS, **change}
    assert type(stripe.convert_to_stripe_object(body)) is stripe.billing.CreditGrant
    problems = shape_problems(body)
    assert any(problem in p for p in problems), problems
    missing = {k: v for k, v in STRIPE_SAYS.items() if k != "created"}
    assert shape_problems(missing) == [
        "$.created: missing (CreditGrant declares <class 'int'>)"]
    [wrong] = error_problems({"error": {"type": "api_error", "message": 5}})
    assert wrong.startswith("$.error.message: 5 fits none of"), wrong


def test_grant_has_every_field_of_the_sdk_object(http: httpx.Client) -> None:
    created = post(http, "/v1/billing/credit_grants", CREATE).json()
    declared = {name for name in stripe.billing.CreditGrant.__annotations__
                if not name.startswith("_") and name != "OBJECT_NAME"}
    assert declared <= set(created), declared - set(created)


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "param", "code"), [
    ({"amount[monetary][value]": "0"}, "amount[monetary][value]", "parameter_invalid_integer"),
    ({"amount[monetary][value]": "10.5"}, "amount[monetary][value]",
     "parameter_invalid_integer"),
    ({"amount[monetary][currency]": "USDX"}, "amount[monetary][currency]", None),
    ({"amount[type]": "custom"}, "amount[type]", None),
    ({"priority": "101"}, "priority", "parameter_invalid_integer"),
    ({"priority": "-1"}, "priority", "parameter_invalid_integer"),
    ({"priority": "high"}, "priority", "parameter_invalid_integer"),
    ({"category": "gift"}, "category", None),
    ({"name": "n" * 101}, "name", None),
    ({"metadata[" + "k" * 41 + "]": "v"}, "metadata[" + "k" * 41 + "]", None),
    ({"metadata[k]": "v" * 501}, "metadata[k]", None),
    ({"bogus": "1"}, "bogus", "parameter_unknown"),
    ({"applicability_config[scope][prices][0][id]": "price_1"}, "applicability_config[scope]",
     None),
    ({"applicability_config[scope][price_type]": "licensed"},
     "applicability_config[scope][price_type]", None),
    ({"effective_at": "1700000000", "expires_at": "1700000000"}, "expires_at", None),
    ({"customer_account": "acct_1"}, "customer", None),
])
def test_create_validates_like_stripe(http: httpx.Client, fake: StripeFake,
                                      change: dict[str, str], param: str, code: str | None
                                      ) -> None:
    response = post(http, "/v1/billing/credit_grants", {**CREATE, **change})
    assert response.status_code == 400
    error = stripe_error(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code:
        assert error["code"] == code
    assert not fake.grants


def test_missing_required_params(http: httpx.Client) -> None:
    for name in ("amount[type]", "customer", "applicability_config[scope][price_type]"):
        data = {k: v for k, v in CREATE.items() if k != name}
        error = stripe_error(post(http, "/v1/billing/credit_grants", data))
        assert error["code"] in ("parameter_missing", "parameter_invalid_string"), error


def test_more_than_20_prices_and_50_metadata_keys(http: httpx.Client) -> None:
    data = {k: v for k, v in CREATE.items() if "price_type" not in k}
    prices = {f"applicability_config[scope][prices][{i}][id]": f"price_{i}" for i in range(21)}
    assert post(http, "/v1/billing/credit_grants", {**data, **prices}).status_code == 400
    metadata = {f"metadata[k{i}]": "v" for i in range(51)}
    assert post(http, "/v1/billing/credit_grants", {**CREATE, **metadata}).status_code == 400


def test_authentication(fake: StripeFake) -> None:
    with httpx.Client(transport=fake.transport(), base_url="https://api.stripe.com") as client:
        response = client.get("/v1/billing/credit_grants")
        assert response.status_code == 401
        assert "API key" in stripe_error(response)["message"]
        response = client.get("/v1/billing/credit_grants",
                              headers={"Authorization": "Bearer sk_test_secret"})
        assert response.status_code == 200
        bad = client.get("/v1/billing/credit_grants", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        assert "nope" not in bad.text, "never echoes the key"


# -- paging --------------------------------------------------------------------------------


def test_lists_page_like_stripe(http: httpx.Client) -> None:
    ids = [post(http, "/v1/billing/credit_grants", CREATE).json()["id"] for _ in range(25)]
    first = http.get("/v1/billing/credit_grants").json()
    assert len(first["data"]) == 10, "default limit 10"
    assert first["has_more"] is True
    assert first["url"] == "/v1/billing/credit_grants"
    assert [g["id"] for g in first["data"]] == ids[::-1][:10], "newest first"
    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 7}
        if after:
            params["starting_after"] = after
        page = http.get("/v1/billing/credit_grants", params=params).json()
        seen += [g["id"] for g in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == ids[::-1]
    back = http.get("/v1/billing/credit_grants",
                    params={"ending_before": ids[-8], "limit": 3}).json()
    assert [g["id"] for g in back["data"]] == ids[::-1][4:7]
    for bad in ("0", "101", "x"):
        response = http.get("/v1/billing/credit_grants", params={"limit": bad})
        assert stripe_error(response)["param"] == "limit"
    assert http.get("/v1/billing/credit_grants", params={"starting_after": "credgr_x"}
                    ).status_code == 404
    other = http.get("/v1/billing/credit_grants", params={"customer": "cus_other"}).json()
    assert other["data"] == []
    assert other["has_more"] is False


# -- idempotency and updates ---------------------------------------------------------------


def test_idempotent_replay_and_mismatch(http: httpx.Client, fake: StripeFake) -> None:
    first = post(http, "/v1/billing/credit_grants", CREATE, key="k1")
    replay = post(http, "/v1/billing/credit_grants", CREATE, key="k1")
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(fake.grants) == 1
    mismatch = post(http, "/v1/billing/credit_grants", {**CREATE, "name": "other"}, key="k1")
    assert mismatch.status_code == 400
    assert stripe_error(mismatch)["type"] == "idempotency_error"
    invalid = post(http, "/v1/billing/credit_grants", {**CREATE, "priority": "x"}, key="k2")
    assert invalid.status_code == 400
    fixed = post(http, "/v1/billing/credit_grants", {**CREATE, "priority": "5"}, key="k2")
    assert fixed.status_code == 200, "validation failures are not saved"
    too_long = post(http, "/v1/billing/credit_grants", CREATE, key="k" * 256)
    assert too_long.status_code == 400
    assert len(fake.grants) == 2


def test_update_expiry_and_metadata(http: httpx.Client) -> None:
    grant = post(http, "/v1/billing/credit_grants", {**CREATE, "metadata[a]": "1"}).json()
    path = f"/v1/billing/credit_grants/{grant['id']}"
    updated = post(http, path, {"expires_at": "1800000000", "metadata[b]": "2"}).json()
    assert updated["expires_at"] == 1_800_000_000
    assert updated["metadata"] == {"a": "1", "b": "2"}
    cleared = post(http, path, {"expires_at": "", "metadata[a]": ""}).json()
    assert cleared["expires_at"] is None
    assert cleared["metadata"] == {"b": "2"}
    assert stripe_error(post(http, path, {"name": "x"}))["code"] == "parameter_unknown"


def test_expire_and_void_rules(http: httpx.Client, fake: StripeFake) -> None:
    grant = post(http, "/v1/billing/credit_grants", CREATE).json()
    path = f"/v1/billing/credit_grants/{grant['id']}"
    assert post(http, f"{path}/expire", {}).status_code == 200
    assert post(http, f"{path}/expire", {}).status_code == 400, "already expired"
    assert post(http, f"{path}/void", {}).status_code == 200
    assert post(http, f"{path}/void", {}).status_code == 400, "already voided"
    later = post(http, "/v1/billing/credit_grants", {**CREATE, "effective_at": "1800000000"}
                 ).json()
    assert post(http, f"/v1/billing/credit_grants/{later['id']}/expire", {}).status_code == 400


def test_balance_summary_filters(http: httpx.Client, fake: StripeFake) -> None:
    one = post(http, "/v1/billing/credit_grants", CREATE).json()
    post(http, "/v1/billing/credit_grants", {**CREATE, "amount[monetary][value]": "500"})
    fake.consume(one["id"], 300)
    by_scope = http.get("/v1/billing/credit_balance_summary", params={
        "customer": "cus_1", "filter[type]": "applicability_scope",
        "filter[applicability_scope][price_type]": "metered"}).json()
    assert by_scope["balances"][0]["available_balance"]["monetary"]["value"] == 1200
    missing = http.get("/v1/billing/credit_balance_summary", params={"customer": "cus_1"})
    assert stripe_error(missing)["param"] == "filter"


def test_form_grammar() -> None:
    assert parse_form("a[b][0][c]=1&a[b][1][c]=2&e[]=x&e[]=y&m[k]=") == {
        "a": {"b": [{"c": "1"}, {"c": "2"}]}, "e": ["x", "y"], "m": {"k": ""}}
    with pytest.raises(ValueError, match="Invalid parameter"):
        parse_form("metadata[a[b]]=1")


# -- every request the provider sends uses declared parameters ------------------------------


def test_typeddict_introspection_is_not_vacuous() -> None:
    allowed = declared_paths(CreditGrantCreateParams)
    assert "amount[monetary][value]" in allowed
    assert "applicability_config[scope][prices][i][id]" in allowed
    assert "metadata[*]" in allowed
    assert "idempotency_key" not in allowed
    assert "filter[credit_grant]" in declared_paths(CreditBalanceSummaryRetrieveParams)
    assert undeclared_params("POST", "/v1/billing/credit_grants",
                             [("amount[value]", "1"), ("reason", "x"), ("metadata[a]", "b")]
                             ) == ["amount[value]", "reason"]


def test_every_provider_request_uses_declared_params(provider: Any, fake: StripeFake) -> None:
    """Runs the full operation set, then checks every parameter of every request."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    full = bc.CreditGrant(
        customer_id="cus_p", amount=bc.Money(amount=Decimal("3.00"), currency="USD"),
        name="n", reason="r", category=bc.Category.PAID, category_label="l",
        paid_amount=bc.Money(amount=Decimal(1), currency="USD"), effective_at=start,
        expires_at=start + timedelta(days=3650), priority=Decimal(3),
        scope=bc.Scope(price_ids=("price_1", "price_2")), metadata={"x": "y"},
        idempotency_key="declared-1")
    plain = bc.CreditGrant(customer_id="cus_p", amount=bc.Money(amount=Decimal(1), currency="JPY"))
    for grant in (full, plain):
        created = provider.create_grant(grant)
    list(provider.list_grants("cus_p", page_size=1))
    provider.get_grant(created.id)
    provider.grant_balance(created.id)
    provider.expire_grant(created.id)
    provider.void_grant(created.id)
    assert {endpoint_of(r.method, r.path) for r in fake.requests} == {
        "create", "list", "retrieve", "summary", "expire", "void"}
    checked = 0
    for request in fake.requests:
        assert undeclared_params(request.method, request.path, request.raw_params) == []
        checked += len(request.raw_params)
    assert checked > 20


class CountingGrants(dict):  # type: ignore[type-arg]
    """The fake's grant store, counting every grant it hands out."""

    touched = 0

    def __getitem__(self, key: Any) -> Any:
        CountingGrants.touched += 1
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        CountingGrants.touched += 1
        return super().get(key, default)

    def values(self) -> Any:
        raise AssertionError("a listing must not walk every grant")

    def items(self) -> Any:
        raise AssertionError("a listing must not walk every grant")

    def __iter__(self) -> Any:
        raise AssertionError("a listing must not walk every grant")


def test_listing_costs_the_page_size_not_every_grant(http: httpx.Client, fake: StripeFake) -> None:
    """Issue 8.13: each page touches only its own grants (index by customer, cursor by
    position), so listing N grants costs O(N), not O(N^2)."""
    fake.grants = CountingGrants()
    for n in range(300):
        customer = "cus_many" if n % 3 else "cus_other"
        assert post(http, "/v1/billing/credit_grants",
                    {**CREATE, "customer": customer}).status_code == 200
    CountingGrants.touched = 0
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        query = {"customer": "cus_many", "limit": 25, **({"starting_after": after} if after else {})}
        body = http.get("/v1/billing/credit_grants", params=query).json()
        pages += 1
        seen += [g["id"] for g in body["data"]]
        if not body["has_more"]:
            break
        after = body["data"][-1]["id"]
    assert len(seen) == len(set(seen)) == 200
    assert pages == 8
    assert CountingGrants.touched == 200, "one look-up per grant listed, none for the others"
