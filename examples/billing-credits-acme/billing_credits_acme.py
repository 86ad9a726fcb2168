"""billing-credits provider for Acme Credits, an imaginary vendor (a complete example plugin).

Acme's API (imaginary, JSON over HTTPS, ``Authorization: Bearer <key>``):

- ``POST /v1/credits`` with an ``Idempotency-Key`` header creates a credit; the same key with
  the same body answers the first credit again, with another body 409.
- ``GET /v1/credits?customer=…&limit=…&after=…`` lists, oldest first: ``{"data": [...],
  "next": cursor or null}``. ``GET /v1/credits/{id}`` reads one (404 if none).
- ``POST /v1/credits/{id}/void`` voids one.
- Errors: ``{"error": {"message": …, "code": …}}`` with an HTTP status, and ``Request-Id``.

``AcmeFake`` is that API in memory; ``billing-credits sandbox`` serves it on loopback.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import billing_credits as bc

if TYPE_CHECKING:
    # httpx is imported where it is used, not here: `billing-credits providers` imports every
    # plugin to list it, and should not pay for an HTTP client nobody uses yet.
    import httpx

NAME = "acme"
DEFAULT_BASE_URL = "https://api.acme.example"
MAX_PAGE = 50


# -- translation: neutral ⇄ Acme -------------------------------------------------------------


def _seconds(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _moment(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def to_acme(grant: bc.CreditGrant) -> dict[str, Any]:
    """The body of ``POST /v1/credits`` for a checked grant (amounts as exact decimal text)."""
    return {
        "customer": grant.customer_id,
        "amount": str(grant.amount.amount),
        "currency": grant.amount.currency,
        "cost": None if grant.paid_amount is None else {
            "amount": str(grant.paid_amount.amount), "currency": grant.paid_amount.currency},
        "kind": None if grant.category is None else grant.category.value,
        "label": grant.category_label,
        "name": grant.name,
        "note": grant.reason,
        "priority": None if grant.priority is None else str(grant.priority),
        "starts": _seconds(grant.effective_at),
        "ends": _seconds(grant.expires_at),
        "metadata": dict(grant.metadata),
        "key": grant.idempotency_key,
    }


def from_acme(item: Mapping[str, Any], now: datetime) -> bc.CreditGrant:
    """A credit as Acme returns it, read back as a neutral grant."""
    cost = item.get("cost")
    grant = bc.CreditGrant(
        customer_id=item["customer"],
        amount=bc.Money(amount=Decimal(item["amount"]), currency=item["currency"]),
        paid_amount=None if cost is None else bc.Money(amount=Decimal(cost["amount"]),
                                                       currency=cost["currency"]),
        category=item.get("kind"), category_label=item.get("label"), name=item.get("name"),
        reason=item.get("note"),
        priority=None if item.get("priority") is None else Decimal(item["priority"]),
        effective_at=_moment(item["starts"]), expires_at=_moment(item.get("ends")),
        metadata=item.get("metadata") or {}, idempotency_key=item.get("key"),
    )
    status = bc.GrantStatus.VOIDED if item.get("voided") else grant.status_at(now)
    return bc.CreditGrant.model_validate({
        **grant.model_dump(), "id": item["id"], "provider": NAME, "status": status,
        "created_at": _moment(item["created"]), "raw": dict(item)})


# -- the provider --------------------------------------------------------------------------------


class AcmeProvider(bc.Provider):
    """Acme Credits (an imaginary vendor): the example plugin."""

    name = NAME
    capabilities = bc.Capabilities(
        currencies=frozenset({"USD", "EUR", "GBP"}),
        time_resolution=timedelta(seconds=1),  # Acme stores Unix seconds
        name_max_length=100,
        metadata=bc.MetadataLimits(max_keys=10, max_key_length=40, max_value_length=200),
        operations=frozenset({"create", "list", "get", "void"}),
        notes=("example plugin: see docs/writing-a-provider.md",),
    )
    settings = (
        bc.Setting("api_key", "Acme API key", env="ACME_API_KEY", secret=True),
        bc.Setting("base_url", f"API base URL (default {DEFAULT_BASE_URL})", env="ACME_BASE_URL"),
    )

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 runtime: bc.Runtime | None = None) -> None:
        import os

        super().__init__(runtime=runtime)
        key = api_key or os.environ.get("ACME_API_KEY")
        if not key:
            raise bc.ConfigurationError("provider 'acme' needs api_key (or ACME_API_KEY)")
        bc.register_secret(key)  # never printed, logged or kept in an error
        self.base_url = (base_url or os.environ.get("ACME_BASE_URL") or DEFAULT_BASE_URL)
        bc.check_base_url(self.base_url, credential=True)
        headers = {"Authorization": f"Bearer {key}"}
        import httpx  # on first use (see the top of the module)

        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=30)
        self._aclient = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    def identity(self) -> str:
        return f"{NAME}:{self.base_url}"  # which account: migration journals are tied to it

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        self._client.close()
        await self._aclient.aclose()

    # -- flows: each operation written once, run sync or async by self.runtime ---------

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        body = {**to_acme(grant), "key": grant.idempotency_key}
        item = yield self._call("POST", "/v1/credits", body=body, key=idempotency_key)
        return from_acme(item, datetime.now(UTC))

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        params: dict[str, Any] = {"limit": min(query.page_size or MAX_PAGE, MAX_PAGE)}
        if query.customer_id is not None:
            params["customer"] = query.customer_id
        if cursor is not None:
            params["after"] = cursor
        page = yield self._call("GET", "/v1/credits", params=params)
        now = datetime.now(UTC)
        grants, unreadable = bc.read_items(NAME, page.get("data") or [],
                                           lambda item: from_acme(item, now),
                                           lambda item: item.get("id"))
        return bc.Page(grants, page.get("next"), unreadable)

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        item = yield self._call("GET", f"/v1/credits/{grant_id}")
        return from_acme(item, datetime.now(UTC))

    def _void(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        item = yield self._call("POST", f"/v1/credits/{grant_id}/void")
        return from_acme(item, datetime.now(UTC))

    # -- one HTTP request as a bc.Call, vendor errors mapped onto the project's ---------

    def _call(self, method: str, path: str, *, body: Any = None, params: Any = None,
              key: str | None = None) -> bc.Call[Any]:
        import httpx

        headers = {"Idempotency-Key": key} if key else {}

        def sync() -> Any:
            try:
                response = self._client.request(method, path, json=body, params=params,
                                                headers=headers)
            except httpx.HTTPError as error:
                raise bc.UnavailableError(f"{type(error).__name__}: {error}", provider=NAME) \
                    from None
            return self._answer(response)

        async def async_() -> Any:
            try:
                response = await self._aclient.request(method, path, json=body, params=params,
                                                       headers=headers)
            except httpx.HTTPError as error:
                raise bc.UnavailableError(f"{type(error).__name__}: {error}", provider=NAME) \
                    from None
            return self._answer(response)

        # A POST without an idempotency key (void) is safe to repeat: voiding twice is a no-op.
        return bc.Call(sync, async_, retry_safe=True, label=f"{method} {path}")

    def _answer(self, response: httpx.Response) -> Any:
        request_id = response.headers.get("Request-Id")
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success and isinstance(data, dict):
            return data
        if response.is_success:
            raise bc.InvalidResponseError("Acme answered with something that is not a JSON "
                                          "object", provider=NAME, status=response.status_code,
                                          body=bc.excerpt(response.text), request_id=request_id)
        error = (data or {}).get("error") or {} if isinstance(data, dict) else {}
        cls = bc.error_class_for_status(response.status_code)
        extra: dict[str, Any] = {}
        if cls is bc.RateLimitedError:
            extra["retry_after"] = float(response.headers.get("Retry-After") or 1)
        raise cls(str(error.get("message") or response.reason_phrase), provider=NAME,
                  status=response.status_code, body=data if isinstance(data, dict) else None,
                  request_id=request_id, code=error.get("code"), **extra)


# -- the fake: Acme's API in memory, for tests and the sandbox ----------------------------------


class AcmeFake:
    """A stateful in-memory Acme (a ``billing_credits.testing.FakeApp``)."""

    def __init__(self, api_key: str = "acme_test_key",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.api_key = api_key
        self.clock = clock
        self.credits: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, tuple[str, str]] = {}  # idempotency key → (body, credit id)

    def error(self, status: int, message: str) -> httpx.Response:
        import httpx

        return httpx.Response(status, json={"error": {"message": message}},
                              headers={"Request-Id": f"req_{uuid.uuid4().hex[:12]}"})

    def handle(self, request: httpx.Request) -> httpx.Response:
        import httpx

        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error(401, "invalid API key")
        parts = request.url.path.strip("/").split("/")
        if parts[:2] != ["v1", "credits"]:
            return self.error(404, "no such endpoint")
        if request.method == "POST" and len(parts) == 2:
            return self._create(request)
        if request.method == "GET" and len(parts) == 2:
            return self._list(request)
        credit = self.credits.get(parts[2]) if len(parts) > 2 else None
        if credit is None:
            return self.error(404, "no such credit")
        if request.method == "POST" and parts[3:] == ["void"]:
            credit["voided"] = credit["voided"] or int(self.clock().timestamp())
        return httpx.Response(200, json=credit)

    def _create(self, request: httpx.Request) -> httpx.Response:
        import httpx

        body = request.content.decode()
        key = request.headers.get("idempotency-key")
        if not key:
            return self.error(400, "Idempotency-Key header required")
        if key in self.keys:
            first, credit_id = self.keys[key]
            if first != body:
                return self.error(409, "idempotency key reused with another body")
            return httpx.Response(200, json=self.credits[credit_id])
        data = json.loads(body)
        credit_id = f"acr_{uuid.uuid4().hex[:16]}"
        now = int(self.clock().timestamp())
        self.credits[credit_id] = {**data, "id": credit_id, "created": now, "voided": None,
                                   "starts": data["starts"] if data["starts"] is not None else now}
        self.keys[key] = (body, credit_id)
        return httpx.Response(200, json=self.credits[credit_id])

    def _list(self, request: httpx.Request) -> httpx.Response:
        import httpx

        customer = request.url.params.get("customer")
        limit = int(request.url.params.get("limit", MAX_PAGE))
        after = request.url.params.get("after")
        items = [c for c in self.credits.values() if customer in (None, c["customer"])]
        if after is not None:
            ids = [c["id"] for c in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        more = len(items) > limit
        return httpx.Response(200, json={"data": page, "next": page[-1]["id"] if more else None})


# -- the plugin hooks -------------------------------------------------------------------------


@bc.hookimpl
def register_providers(register: bc.ProviderRegister) -> None:
    register(AcmeProvider)


@contextmanager
def sandbox() -> Iterator[bc.Sandbox]:
    from billing_credits.testing import serve

    fake = AcmeFake()
    with serve(fake) as server:
        yield bc.Sandbox(name=NAME, url=server.url, providers=(NAME,),
                         environment={"ACME_API_KEY": fake.api_key, "ACME_BASE_URL": server.url},
                         seeded=("no credits yet",))


@bc.hookimpl
def register_sandboxes(register: bc.SandboxRegister) -> None:
    register(NAME, sandbox)
