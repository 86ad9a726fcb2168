"""Issue 9 on Stripe: a misbehaving vendor (a loopback server that does it on purpose) ends in
one error of the project's own, with the request id, and never shows the key."""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from billing_credits_stripe import StripeProvider

import billing_credits as bc
from billing_credits.testing import Drip, serve

KEY = "sk_test_hostileSECRETkey0123456789"
NOW_H = datetime(2026, 1, 2, tzinfo=UTC)
RESTRICTED = "rk_test_proxyECHOkey98765"


def grant_json(grant_id: str, **changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": grant_id, "object": "billing.credit_grant",
        "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": 1000}},
        "applicability_config": {"scope": {"price_type": "metered"}}, "category": "paid",
        "created": 1767225600, "updated": 1767225600, "customer": "cus_h",
        "customer_account": None, "effective_at": 1767225600, "expires_at": None,
        "livemode": False, "metadata": {}, "name": None, "priority": 50, "test_clock": None,
        "voided_at": None,
    }
    obj.update(changes)
    return obj


class Hostile:
    """A FakeApp answering each request with ``answer(request)``, numbering request ids."""

    def __init__(self, answer: Callable[[httpx.Request], tuple[int, Any]]) -> None:
        self.answer = answer
        self.seen: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        status, body = self.answer(request)
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers={
            "Request-Id": f"req_hostile_{len(self.seen)}", "Content-Type": "application/json"})

    def error(self, status: int, message: str) -> httpx.Response:
        return httpx.Response(status, json={"error": {"type": "api_error", "message": message}})


@pytest.fixture
def hostile() -> Iterator[Callable[..., StripeProvider]]:
    stack: list[Any] = []

    def make(answer: Callable[[httpx.Request], tuple[int, Any]], **settings: Any
             ) -> StripeProvider:
        app = Hostile(answer)
        server = serve(app)
        running = server.__enter__()
        stack.append(server)
        return StripeProvider(settings.pop("api_key", KEY), base_url=running.url,
                              runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)), **settings)

    yield make
    for server in stack:
        server.__exit__(None, None, None)


def no_secret(error: BaseException, *secrets: str) -> None:
    """The error, its repr, body, the whole chain and its traceback hold no secret."""
    texts = [str(error), repr(error), repr(getattr(error, "body", None)),
             "".join(traceback.format_exception(error))]
    for secret in secrets or (KEY,):
        for text in texts:
            assert secret not in text
    assert error.__cause__ is None
    assert error.__context__ is None, "the SDK exception (with request headers) is not kept"


def test_a_cycling_cursor_ends_with_the_request_id(hostile: Callable[..., StripeProvider]) -> None:
    ids = iter(["credgr_A", "credgr_B", "credgr_A", "credgr_B"])
    provider = hostile(lambda request: (200, {"object": "list", "data": [grant_json(next(ids))],
                                              "has_more": True, "url": "/v1/billing/credit_grants"}))
    with pytest.raises(bc.InvalidResponseError) as error:
        list(provider.list_grants("cus_h"))
    assert error.value.request_id == "req_hostile_3"
    assert "cursor" in str(error.value)


@pytest.mark.parametrize("body", [
    {"object": "list", "data": "not a list", "has_more": False},
    {"object": "list", "data": [], "has_more": "yes"},
    {"object": "billing.credit_grant", "id": "credgr_x"},
    [1, 2, 3],
    {"object": "list", "data": [], "has_more": True},
])
def test_a_list_of_the_wrong_shape_is_an_invalid_response(
        body: Any, hostile: Callable[..., StripeProvider]) -> None:
    provider = hostile(lambda request: (200, body))
    with pytest.raises(bc.InvalidResponseError) as error:
        list(provider.list_grants("cus_h"))
    assert error.value.request_id == "req_hostile_1"
    assert isinstance(error.value.body, str)
    assert len(error.value.body) <= bc._errors.EXCERPT_LIMIT + 40


@pytest.mark.parametrize("body", [
    {"object": "billing.credit_grant", "id": "credgr_x", "amount": "lots"},
    {"object": "customer", "id": "cus_x"},
    b"<html>proxy error</html>",
    b"\xff\xfe not json",
])
def test_a_grant_of_the_wrong_shape_is_an_invalid_response(
        body: Any, hostile: Callable[..., StripeProvider]) -> None:
    provider = hostile(lambda request: (200, body))
    with pytest.raises(bc.InvalidResponseError) as error:
        provider.get_grant("credgr_x")
    assert error.value.request_id == "req_hostile_1"
    no_secret(error.value)


def test_one_unreadable_item_never_stops_the_listing(
        hostile: Callable[..., StripeProvider]) -> None:
    items = [
        grant_json("credgr_ok"),
        grant_json("credgr_zzz", amount={"type": "monetary",
                                         "monetary": {"currency": "zzz", "value": 5}}),
        grant_json("credgr_edited", metadata={"bc_paid_amount": "garbage", "bc_flags": "%%%"}),
        "not even an object",
    ]
    provider = hostile(lambda request: (200, {"object": "list", "data": items,
                                              "has_more": False}))
    seen: list[bc.UnreadableGrant] = []
    read = list(provider.list_grants("cus_h", on_unreadable=seen.append))
    assert [g.id for g in read] == ["credgr_ok", "credgr_edited"]
    edited = read[1]
    assert edited.metadata["bc_paid_amount"] == "garbage", "kept, reported, not dropped"
    assert any(a.field == "paid_amount" for a in edited.adjustments)
    assert [(u.vendor_id, u.provider) for u in seen] == [("credgr_zzz", "stripe"),
                                                          (None, "stripe")]
    assert "zzz" in seen[0].problem
    with pytest.raises(bc.UnreadableGrantsError) as error:
        list(provider.list_grants("cus_h"))
    assert len(error.value.entries) == 2


def test_page_request_id_is_stripes(hostile: Callable[..., StripeProvider]) -> None:
    provider = hostile(lambda request: (200, {"object": "list", "data": [grant_json("credgr_1")],
                                              "has_more": False}))
    page = provider.runtime.run(provider._list_page(bc.ListQuery("cus_h"), None))
    assert page.request_id == "req_hostile_1"


@pytest.mark.parametrize("status", [401, 500, 400])
def test_an_echoed_authorization_header_never_shows_the_key(
        status: int, hostile: Callable[..., StripeProvider]) -> None:
    def echo(request: httpx.Request) -> tuple[int, Any]:
        header = request.headers.get("authorization", "")
        return status, {"error": {"type": "invalid_request_error",
                                  "message": f"Invalid API Key provided: {header}",
                                  "headers": dict(request.headers)}}

    for key in (KEY, RESTRICTED):
        provider = hostile(echo, api_key=key)
        with pytest.raises(bc.ProviderError) as error:
            provider.get_grant("credgr_x")
        assert error.value.request_id == "req_hostile_1"
        no_secret(error.value, key)
        with pytest.raises(bc.ProviderError) as created:
            provider.create_grant(bc.CreditGrant(
                customer_id="cus_h", amount=bc.Money(amount=1, currency="USD")))
        no_secret(created.value, key)


def test_the_key_is_registered_as_a_secret() -> None:
    StripeProvider("sk_test_registeredButShapelessXYZ", base_url="http://127.0.0.1:9")
    assert "sk_test_registeredButShapelessXYZ" not in bc._secrets.redact(
        "echo sk_test_registeredButShapelessXYZ")
    StripeProvider("weird-key-without-prefix", base_url="http://127.0.0.1:9")
    assert bc._secrets.redact("x weird-key-without-prefix") == f"x {bc._secrets.MASK}"


def test_a_key_over_plain_http_to_another_host_is_refused() -> None:
    with pytest.raises(bc.ConfigurationError, match="plain http"):
        StripeProvider(KEY, base_url="http://stripe-proxy.example.com")
    with pytest.raises(bc.ConfigurationError, match="http"):
        StripeProvider(KEY, base_url="ftp://127.0.0.1")


@pytest.mark.parametrize(("setting", "value"), [
    ("rate_limit", "nan"), ("rate_limit", "inf"), ("timeout", "-1"), ("timeout", "1e999"),
    ("max_retries", "2.5"), ("max_retries", "many"), ("include_balance", "maybe"),
    ("find_existing", "sometimes"), ("base_url", "not a url"),
])
def test_bad_settings_are_one_configuration_error_naming_the_setting(setting: str,
                                                                     value: str) -> None:
    with pytest.raises(bc.ConfigurationError, match=setting):
        bc.get_provider("stripe", api_key=KEY, **{setting: value})


async def test_async_errors_are_the_same(hostile: Callable[..., StripeProvider]) -> None:
    def echo(request: httpx.Request) -> tuple[int, Any]:
        if request.url.path.endswith("credgr_shape"):
            return 200, {"object": "list"}
        return 401, {"error": {"type": "invalid_request_error",
                               "message": f"Invalid API Key provided: "
                                          f"{request.headers.get('authorization')}"}}

    provider = hostile(echo)
    with pytest.raises(bc.AuthenticationError) as error:
        await provider.aget_grant("credgr_x")
    no_secret(error.value)
    with pytest.raises(bc.InvalidResponseError) as shape:
        await provider.aget_grant("credgr_shape")
    assert shape.value.request_id == "req_hostile_2"
    no_secret(shape.value)
    await provider.aclose()


def test_debug_logs_never_hold_the_key(hostile: Callable[..., StripeProvider],
                                       caplog: pytest.LogCaptureFixture) -> None:
    """The stripe SDK logs response bodies at debug level; an echoed key is masked there."""
    def echo(request: httpx.Request) -> tuple[int, Any]:
        return 500, {"error": {"type": "api_error",
                               "message": f"upstream said {request.headers.get('authorization')}"}}

    provider = hostile(echo)
    with caplog.at_level("DEBUG"), pytest.raises(bc.UnavailableError):
        provider.get_grant("credgr_x")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "upstream said" in logged, "the SDK did log the body"
    assert KEY not in logged


@pytest.mark.parametrize("summary", [
    {"object": "billing.credit_balance_summary", "balances": [
        {"available_balance": {"monetary": {"currency": "usd", "value": "lots"}}}]},
    {"object": "billing.credit_balance_summary", "balances": "none"},
    {"object": "list", "data": []},
])
def test_a_balance_summary_of_the_wrong_shape_is_an_invalid_response(
        summary: Any, hostile: Callable[..., StripeProvider]) -> None:
    def answer(request: httpx.Request) -> tuple[int, Any]:
        if request.url.path.endswith("credit_balance_summary"):
            return 200, summary
        return 200, grant_json("credgr_b")

    provider = hostile(answer, include_balance=True)
    with pytest.raises(bc.InvalidResponseError) as error:
        provider.get_grant("credgr_b")
    assert error.value.request_id == "req_hostile_2"
    no_secret(error.value)


# -- issue 9.4: reading a grant, a summary or a transaction of the wrong shape ----------------

_BROKEN_GRANTS = [  # each raised KeyError/TypeError/AttributeError/OverflowError/... before
    {"applicability_config": 5},
    {"applicability_config": {"scope": "nul\0byte"}},
    {"applicability_config": {"scope": {"prices": [{}]}}},  # read as price id "None" before
    {"applicability_config": {"scope": {"prices": "price_1"}}},  # one price per character before
    {"amount": 1.5},
    {"amount": {"type": "monetary", "monetary": 5}},
    {"amount": {"type": "monetary", "monetary": {"currency": "usd"}}},
    {"amount": {"type": "monetary", "monetary": {"currency": 5, "value": 1000}}},
    {"amount": {"type": "monetary", "monetary": {"currency": "usd", "value": "1000"}}},
    {"created": {}}, {"created": "1767225600"}, {"created": 10**20}, {"created": True},
    {"effective_at": 1.5e18}, {"expires_at": "never"}, {"voided_at": None, "expires_at": [1]},
    {"customer": 5, "customer_account": None}, {"customer": None, "customer_account": {}},
    {"metadata": {"bc_flags": 5}}, {"metadata": {"bc_paid_amount": 12}}, {"metadata": "x"},
    {"metadata": {"k": 5}}, {"priority": "high"}, {"category": ["paid"]}, {"name": 5},
]


@pytest.mark.parametrize("changes", _BROKEN_GRANTS)
def test_a_grant_of_the_wrong_shape_reads_as_an_invalid_response(changes: dict[str, Any]) -> None:
    from billing_credits_stripe import _translate as tr

    item = grant_json("credgr_broken", **changes)
    with pytest.raises(bc.InvalidResponseError) as caught:
        tr.from_stripe(item, now=NOW_H)
    assert caught.value.provider == "stripe"
    assert "credgr_broken" in caught.value.message
    assert caught.value.body == bc.excerpt(item)


def test_broken_grants_are_unreadable_items_of_a_listing(
        hostile: Callable[..., StripeProvider]) -> None:
    items = [grant_json("credgr_ok"), *(grant_json(f"credgr_b{i}", **changes)
                                        for i, changes in enumerate(_BROKEN_GRANTS))]
    provider = hostile(lambda request: (200, {"object": "list", "data": items,
                                              "has_more": False}))
    seen: list[bc.UnreadableGrant] = []
    read = list(provider.list_grants("cus_h", on_unreadable=seen.append))
    assert [g.id for g in read] == ["credgr_ok"]
    assert [u.vendor_id for u in seen] == [f"credgr_b{i}" for i in range(len(_BROKEN_GRANTS))]
    assert all("cannot be read" in u.problem for u in seen)


def test_a_summary_or_transaction_of_the_wrong_shape_is_an_invalid_response() -> None:
    from billing_credits_stripe import _ledger as sl
    from billing_credits_stripe import _translate as tr

    for summary in ({"balances": 5}, {"balances": [{"available_balance": "x"}]},
                    {"balances": [{"ledger_balance": {"monetary": {"currency": "usd", "value": "1"}}}]}):
        with pytest.raises(bc.InvalidResponseError, match="credit balance summary"):
            tr.balance_from_summary(summary, "USD")
        with pytest.raises(bc.InvalidResponseError, match="credit balance summary"):
            sl.summary_values(summary, "USD")
    transaction = {"id": "cbtxn_1", "type": "credit", "effective_at": 1767225600,
                   "credit": {"type": "credits_granted",
                              "amount": {"type": "monetary",
                                         "monetary": {"currency": "usd", "value": 10}}}}
    for broken in ({**transaction, "effective_at": 10**20}, {**transaction, "credit": {"type": 5}},
                   {**transaction, "credit_grant": 5}, {**transaction, "id": 5}):
        with pytest.raises(bc.InvalidResponseError, match="credit balance transaction"):
            sl.entry_from_transaction(broken, "cus_h")


@pytest.mark.parametrize("operation", ["balance", "ledger"])
def test_has_more_without_items_is_an_invalid_response_not_a_short_answer(
        operation: str, hostile: Callable[..., StripeProvider]) -> None:
    """A page saying ``has_more`` with no item to page from ended the balance's grant listing
    and the ledger silently (a balance or ledger missing whatever came after): it is refused,
    as ``list_grants`` refuses it, naming the request."""
    provider = hostile(lambda request: (200, {"object": "list", "data": [], "has_more": True,
                                              "url": request.url.path}))
    call = (lambda: provider.get_balance("cus_h")) if operation == "balance" \
        else (lambda: list(provider.list_ledger("cus_h")))
    with pytest.raises(bc.InvalidResponseError) as error:
        call()
    assert error.value.request_id == "req_hostile_1"
    assert "has_more" in str(error.value)


def test_a_balance_listing_that_cycles_names_the_request(
        hostile: Callable[..., StripeProvider]) -> None:
    ids = iter(["credgr_A", "credgr_B", "credgr_A", "credgr_B"])
    provider = hostile(lambda request: (200, {"object": "list", "data": [grant_json(next(ids))],
                                              "has_more": True, "url": "/v1/billing/credit_grants"}))
    with pytest.raises(bc.InvalidResponseError) as error:
        provider.get_balance("cus_h")
    assert error.value.request_id == "req_hostile_3"


@pytest.mark.parametrize("body", [
    {"error": {"type": "api_error", "message": "A" * 2_000_000}},
    {"message": "A" * 2_000_000},
    b"<html>" + b"A" * 2_000_000 + b"</html>",
])
def test_a_huge_error_body_gives_a_bounded_error(
        body: Any, hostile: Callable[..., StripeProvider]) -> None:
    """A 2 MB error answer made a 2 MB exception message (printed whole by the CLI) and body."""
    provider = hostile(lambda request: (500, body))
    with pytest.raises(bc.ProviderError) as error:
        list(provider.list_grants("cus_h"))
    assert len(str(error.value)) < 1_000
    assert len(repr(error.value.body)) < 1_000


# -- total deadline and body limit (issue 9 review) -------------------------------------------


def _drip_provider(url: str) -> StripeProvider:
    return StripeProvider(KEY, base_url=url, timeout=2.0,
                          runtime=bc.Runtime(retry=bc.RetryPolicy(attempts=1)))


def _deadline(error: BaseException, started: float) -> None:
    took = time.monotonic() - started
    assert isinstance(error, bc.UnavailableError)
    assert error.retryable
    assert "total deadline" in str(error)
    no_secret(error)
    assert took < 2.0 + 1.5, f"took {took:.2f}s with timeout=2"


@pytest.mark.parametrize("call", ["list_grants", "get_balance"])
def test_a_slow_drip_ends_at_the_total_deadline(call: str) -> None:
    """Headers then one byte every 0.5 s kept a call with timeout=2 waiting forever: httpx's
    timeouts are per read."""
    with Drip() as drip:
        provider = _drip_provider(drip.url)
        started = time.monotonic()
        run: Callable[[], object] = {
            "list_grants": lambda: list(provider.list_grants("cus_h")),
            "get_balance": lambda: provider.get_balance("cus_h"),
        }[call]
        with pytest.raises(bc.UnavailableError) as error:
            run()
        _deadline(error.value, started)
        provider.close()


@pytest.mark.parametrize("call", ["list_grants", "get_balance"])
async def test_a_slow_drip_ends_at_the_total_deadline_async(call: str) -> None:
    with Drip() as drip:
        provider = _drip_provider(drip.url)
        started = time.monotonic()
        async def listing() -> object:
            return [grant async for grant in provider.alist_grants("cus_h")]

        arun = listing if call == "list_grants" else (lambda: provider.aget_balance("cus_h"))
        with pytest.raises(bc.UnavailableError) as error:
            await arun()
        _deadline(error.value, started)
        await provider.aclose()


@pytest.mark.parametrize("length", [17 * 1024 * 1024, None])
async def test_an_oversized_answer_is_an_invalid_response(length: int | None) -> None:
    """A 36 MB 200 answer of junk items was read whole (minutes); now it stops at 16 MiB, by its
    Content-Length or, without one, while it streams (sync and async)."""
    with Drip(piece=b"[" * 1_048_576, every=0.0, length=length,
              headers="Request-Id: req_huge\r\n") as drip:
        provider = _drip_provider(drip.url)

        async def listing() -> object:
            return [grant async for grant in provider.alist_grants("cus_h")]

        for run in ("sync", "async"):
            started = time.monotonic()
            with pytest.raises(bc.InvalidResponseError) as error:
                await (asyncio.to_thread(lambda: list(provider.list_grants("cus_h"))) if run == "sync"
                       else listing())
            assert time.monotonic() - started < 2.0
            assert error.value.request_id == "req_huge"
            assert "larger than" in str(error.value)
            assert len(repr(error.value.body)) < 1_000
            no_secret(error.value)
        await provider.aclose()
