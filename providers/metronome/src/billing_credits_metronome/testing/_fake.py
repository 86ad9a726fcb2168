"""``MetronomeFake``: a stateful fake of Metronome's two credit APIs on the core fake kit.

Endpoints (all ``POST``, JSON bodies, ``{"message": ...}`` errors):

- ``/v1/credits/createGrant``, ``/v1/credits/listGrants`` (``limit`` 1-100 and ``next_page`` in
  the query), ``/v1/credits/editGrant``, ``/v1/credits/voidGrant`` (voided grants vanish from
  ``listGrants``);
- ``/v1/contracts/customerCredits/create``, ``/v1/contracts/customerCredits/list``
  (``limit`` 1-25 and ``next_page`` in the body), ``/v1/contracts/customerCredits/updateEndDate``
  (can only shorten);
- ``/v1/credits/listEntries`` and ``/v1/contracts/customerBalances/list`` (balances and ledgers),
  with ``consume_grants`` / ``consume_credits`` applying usage in Metronome's order (see
  ``_consume``).

Validation follows the documented contract: unknown and missing fields (the key sets equal the
``metronome-sdk`` 4.12 params types, checked in tests), uuid ids, known credit types, JSON
numbers for amounts and priorities, RFC 3339 times (on the hour unless
``require_hour_boundaries=False``), ``uniqueness_key`` 1-128 characters and unique (409),
custom-field values of at most 200 characters, ``credit_grant_ids`` alone, ``specifiers``
without ``applicable_product_ids``/``applicable_product_tags``. Responses have the shapes of
the SDK's response models (checked in tests).

Custom fields: ``/v1/customFields/addKey`` and ``/v1/customFields/listKeys``. A create whose
``custom_fields`` hold a key not on the entity's allow list (``credit_grant`` for v1 grants,
``contract_credit`` for customer credits) is refused with 400: addKey "Add[s] a key to the
allow list for an entity" (https://docs.metronome.com/api-reference/custom-fields/create-a-custom-field-key)
and removeKey "remov[es] a custom field key from the allowlist ... preventing future use of that
key" (SDK ``metronome/resources/v1/custom_fields.py``). The refusal's wording is the fake's own
(Metronome documents only ``{"message"}`` 400s; vendor-surface.md §6 item 3). addKey on a key
already registered answers 400 ``Duplicate custom field key`` (observed against a Metronome
sandbox, practitioner notes found through the code index); keys are at most 100 characters
("There is a 100 character limit on custom field keys", SDK docs for ``add_key``).

Balances of v1 grants follow ``CreditGrantListResponse.Balance``
(``metronome/types/v1/credit_grant_list_response.py``): as of the end of the current billing
period (``effective_at``; the fake's periods are calendar months); ``excluding_pending`` takes
the posted deductions and "if the grant has expired, this amount will be 0";
``including_pending`` also takes the pending ones and "if the grant expires before the end of
the customer's current billing period, this amount will be 0". ``deduct(..., pending=True)``
records a pending deduction (a draft invoice's), ``post_pending`` finalizes them.

Listing a page costs O(page size): grants and credits are indexed by customer in creation
order, and a cursor is a position in that order.

Reach it with ``billing_credits.testing.FakeTransport(fake)`` or ``serve(fake)``; faults
(429 with ``Retry-After``, 5xx, timeouts after commit, rate limits) come from the kit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from billing_credits_metronome._translate import USD_CENTS, format_time, parse_time, to_decimal
from billing_credits_metronome._transport import dumps, loads

from ._consume import (
    LIST_BALANCES,
    LIST_ENTRIES,
    LIST_ENTRIES_QUERY,
    _credit_balance,
    _credit_ledger,
    list_balances,
    list_entries,
)
from ._consume import add_manual_entry as _add_manual_entry
from ._consume import consume_credits as _consume_credits
from ._consume import consume_grants as _consume_grants
from ._state import _bad, _Credit, _Grant, _RefusedError

__all__ = [
    "ADD_KEY_FIELDS",
    "CREATE_CREDIT_FIELDS",
    "CREATE_GRANT_FIELDS",
    "EDIT_GRANT_FIELDS",
    "LIST_CREDITS_FIELDS",
    "LIST_GRANTS_FIELDS",
    "LIST_KEYS_FIELDS",
    "UPDATE_END_DATE_FIELDS",
    "VOID_GRANT_FIELDS",
    "MetronomeFake",
]

CREATE_GRANT_FIELDS = frozenset({
    "customer_id", "expires_at", "grant_amount", "name", "paid_amount", "priority",
    "credit_grant_type", "custom_fields", "effective_at", "invoice_date", "product_ids",
    "reason", "rollover_settings", "uniqueness_key",
})
CREATE_GRANT_REQUIRED = frozenset({
    "customer_id", "expires_at", "grant_amount", "name", "paid_amount", "priority"})
LIST_GRANTS_FIELDS = frozenset({
    "credit_grant_ids", "credit_type_ids", "customer_ids", "effective_before",
    "not_expiring_before"})
LIST_GRANTS_QUERY = frozenset({"limit", "next_page"})
EDIT_GRANT_FIELDS = frozenset({"id", "credit_grant_type", "expires_at", "name"})
VOID_GRANT_FIELDS = frozenset({"id", "release_uniqueness_key", "void_credit_purchase_invoice"})
CREATE_CREDIT_FIELDS = frozenset({
    "access_schedule", "customer_id", "priority", "product_id", "applicable_contract_ids",
    "applicable_product_ids", "applicable_product_tags", "custom_fields", "description", "name",
    "netsuite_sales_order_id", "rate_type", "salesforce_opportunity_id", "specifiers",
    "uniqueness_key",
})
CREATE_CREDIT_REQUIRED = frozenset({"access_schedule", "customer_id", "priority", "product_id"})
ACCESS_SCHEDULE_FIELDS = frozenset({"schedule_items", "access_type", "credit_type_id"})
SCHEDULE_ITEM_FIELDS = frozenset({"amount", "ending_before", "starting_at"})
SPECIFIER_FIELDS = frozenset({
    "presentation_group_values", "pricing_group_values", "product_id", "product_tags"})
LIST_CREDITS_FIELDS = frozenset({
    "customer_id", "covering_date", "credit_id", "effective_before", "include_archived",
    "include_balance", "include_contract_credits", "include_ledgers", "limit", "next_page",
    "starting_at",
})
UPDATE_END_DATE_FIELDS = frozenset({"access_ending_before", "credit_id", "customer_id"})
ADD_KEY_FIELDS = frozenset({"enforce_uniqueness", "entity", "key"})
LIST_KEYS_FIELDS = frozenset({"entities"})
CUSTOM_FIELD_ENTITIES = frozenset({
    "alert", "billable_metric", "charge", "commit", "contract_credit", "contract_product",
    "contract", "credit_grant", "customer_plan", "customer", "discount", "invoice", "plan",
    "professional_service", "product", "rate_card", "scheduled_charge", "subscription",
    "package_commit", "package_credit", "package_subscription", "package_scheduled_charge",
})
"""``CustomFieldAddKeyParams.entity`` (``metronome/types/v1/custom_field_add_key_params.py``)."""

_HOUR_SECONDS = 3600


def _now() -> datetime:
    return datetime.now(UTC)


class MetronomeFake:
    """A stateful fake of Metronome's v1 credit grants and contract customer credits.

    ``strict_ids``: customer, product and credit type ids must be uuids, as Metronome's are
    (turn off to replay generated data). ``token``: when set, requests must carry
    ``Authorization: Bearer <token>`` (else 401).
    ``clock``: "now" for defaults, balances and statuses. ``credit_types``: extra credit types
    (id → name) besides USD (cents). ``requests`` records ``(path, query, body)`` for tests.
    ``custom_field_keys``: keys already registered, per entity (``{"credit_grant": [...]}``);
    ``register_custom_field_keys(entity, keys)`` adds more, as ``addKey`` would.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        clock: Callable[[], datetime] = _now,
        require_hour_boundaries: bool = True,
        credit_types: Mapping[str, str] | None = None,
        products: Mapping[str, str] | None = None,
        strict_ids: bool = True,
        custom_field_keys: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.token = token
        self.strict_ids = strict_ids
        self.clock = clock
        self.require_hour_boundaries = require_hour_boundaries
        self.credit_types: dict[str, str] = {USD_CENTS: "USD (cents)", **(credit_types or {})}
        self.products: dict[str, str] = dict(products or {})
        self.grants: dict[str, _Grant] = {}
        self.credits: dict[str, _Credit] = {}
        self.grant_keys: dict[str, str] = {}
        self.credit_keys: dict[str, str] = {}
        self.field_keys: dict[str, dict[str, bool]] = {}
        for entity, keys in (custom_field_keys or {}).items():
            self.register_custom_field_keys(entity, keys)
        self._grant_order: list[str] = []
        self._grants_by_customer: dict[str, list[str]] = {}
        self._credits_by_customer: dict[str, list[str]] = {}
        self._credits_indexed = 0  # how many credits the per-customer index holds
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.credit_ledgers: dict[str, list[dict[str, Any]]] = {}
        self.grant_draws: list[dict[str, Any]] = []
        self._routes: dict[str, Callable[[dict[str, str], Any], Any]] = {
            "/v1/credits/createGrant": self._create_grant,
            "/v1/credits/listGrants": self._list_grants,
            "/v1/credits/editGrant": self._edit_grant,
            "/v1/credits/voidGrant": self._void_grant,
            "/v1/contracts/customerCredits/create": self._create_credit,
            "/v1/contracts/customerCredits/list": self._list_credits,
            "/v1/contracts/customerCredits/updateEndDate": self._update_end_date,
            "/v1/customFields/addKey": self._add_key,
            "/v1/customFields/listKeys": self._list_keys,
            LIST_ENTRIES: lambda q, b: list_entries(self, q, b),
            LIST_BALANCES: lambda q, b: list_balances(self, q, b),
        }

    # -- FakeApp --------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        query = dict(request.url.params)
        if self.token is not None and request.headers.get("authorization") != (
                f"Bearer {self.token}"):
            return self.error(401, "Unauthorized")
        route = self._routes.get(path)
        if route is None:
            return self.error(404, f"No route for {request.method} {path}")
        if request.method != "POST":
            return self.error(405, "Method not allowed")
        try:
            body = loads(request.content or b"{}")
        except ValueError:
            return self.error(400, "Body is not valid JSON")
        self.requests.append((path, query, body))
        try:
            if not isinstance(body, dict):
                raise _bad("Body must be a JSON object")
            allowed = {"/v1/credits/listGrants": LIST_GRANTS_QUERY,
                       LIST_ENTRIES: LIST_ENTRIES_QUERY,
                       "/v1/customFields/listKeys": frozenset({"next_page"})}.get(path,
                                                                                 frozenset())
            self._fields(query, allowed, where="query parameter ")
            result = route(query, body)
        except _RefusedError as refused:
            return self.error(refused.status, refused.message, refused.code)
        return httpx.Response(200, content=dumps(result),
                              headers={"content-type": "application/json",
                                       "x-request-id": uuid.uuid4().hex})

    def error(self, status: int, message: str, code: str | None = None) -> httpx.Response:
        body = {"message": message} if code is None else {"code": code, "message": message}
        return httpx.Response(status, content=dumps(body),
                              headers={"content-type": "application/json",
                                       "x-request-id": uuid.uuid4().hex})

    # -- test helpers ---------------------------------------------------------------------

    def deduct(self, grant_id: str, amount: Decimal | int, *, pending: bool = False,
               invoice_id: str | None = None, reason: str = "Automated invoice deduction") -> None:
        """Record usage against a v1 grant, as an invoice would (in its credit type's unit)."""
        grant = self.grants[grant_id]
        used = sum((to_decimal(e["amount"]) for e in grant.deductions + grant.pending),
                   Decimal(0))
        value = Decimal(amount)
        entry = {
            "amount": value, "reason": reason, "running_balance": grant.amount - used - value,
            "effective_at": format_time(self.clock()), "created_by": "Metronome System",
            "credit_grant_id": grant_id, "invoice_id": invoice_id or str(uuid.uuid4()),
        }
        (grant.pending if pending else grant.deductions).append(entry)

    def post_pending(self, grant_id: str) -> None:
        """Finalize the draft invoice: the grant's pending deductions become posted."""
        grant = self.grants[grant_id]
        grant.deductions.extend(grant.pending)
        grant.pending.clear()

    def register_custom_field_keys(self, entity: str, keys: Iterable[str]) -> None:
        """Put ``keys`` on ``entity``'s allow list, as ``/v1/customFields/addKey`` does."""
        self.field_keys.setdefault(entity, {}).update(dict.fromkeys(keys, False))

    def deduct_credit(self, credit_id: str, amount: Decimal | int) -> None:
        """Record usage against a customer credit (in its credit type's unit)."""
        self.credits[credit_id].deducted += Decimal(amount)

    consume_grants = _consume_grants
    consume_credits = _consume_credits
    add_manual_entry = _add_manual_entry

    # -- validation helpers -----------------------------------------------------------------

    @staticmethod
    def _fields(body: Mapping[str, Any], allowed: frozenset[str],
                required: Iterable[str] = (), where: str = "") -> None:
        for key in body:
            if key not in allowed:
                raise _bad(f"Unknown field {where}{key}")
        for key in required:
            if body.get(key) is None:
                raise _bad(f"Missing required field {where}{key}")

    def _uuid(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not value:
            raise _bad(f"{name} must be a string")
        if self.strict_ids:
            try:
                uuid.UUID(value)
            except ValueError:
                raise _bad(f"{name} must be a uuid") from None
        return value

    @staticmethod
    def _number(value: Any, name: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise _bad(f"{name} must be a number")
        return Decimal(value)

    @staticmethod
    def _string(value: Any, name: str, *, min_length: int = 0) -> str:
        if not isinstance(value, str) or len(value) < min_length:
            raise _bad(f"{name} must be a string of at least {min_length} characters")
        return value

    def _time(self, value: Any, name: str, *, hour: bool = True) -> datetime:
        if not isinstance(value, str):
            raise _bad(f"{name} must be an RFC 3339 timestamp")
        try:
            moment = parse_time(value)
        except ValueError:
            raise _bad(f"{name} must be an RFC 3339 timestamp with an offset") from None
        if hour and self.require_hour_boundaries and (
                moment.minute or moment.second or moment.microsecond):
            raise _bad(f"{name} must be on an hour boundary")
        return moment

    def _credit_type(self, value: Any, name: str) -> dict[str, str]:
        type_id = self._uuid(value, name)
        if type_id not in self.credit_types:
            raise _RefusedError(404, f"Credit type {type_id} not found")
        return {"id": type_id, "name": self.credit_types[type_id]}

    def _key(self, body: Mapping[str, Any], used: Mapping[str, str], what: str) -> str | None:
        key = body.get("uniqueness_key")
        if key is None:
            return None
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise _bad("uniqueness_key must be 1-128 characters")
        if key in used:
            raise _RefusedError(409, f"A {what} with uniqueness key {key!r} already exists")
        return key

    def _custom_fields(self, value: Any, entity: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise _bad("custom_fields must map strings to strings")
        allowed = self.field_keys.get(entity, {})
        unknown = sorted(k for k in value if k not in allowed)
        if unknown:
            raise _bad(f"Custom field key(s) not on the allow list for entity {entity}: "
                       f"{', '.join(unknown)}. Add them with /v1/customFields/addKey")
        for key, text in value.items():
            if len(text) > 200:
                raise _bad(f"Custom field {key!r}: values are limited to 200 characters")
        return dict(value)

    @staticmethod
    def _strings(value: Any, name: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _bad(f"{name} must be a list of non-empty strings")
        return list(value)

    @staticmethod
    def _limit(value: Any, maximum: int, default: int) -> int:
        if value is None:
            return default
        try:
            limit = int(value)
        except (TypeError, ValueError):
            raise _bad("limit must be an integer") from None
        if not 1 <= limit <= maximum:
            raise _bad(f"limit must be between 1 and {maximum}")
        return limit

    @staticmethod
    def _offset(cursor: Any) -> int:
        if cursor is None:
            return 0
        if not isinstance(cursor, str) or not cursor.startswith("cursor_"):
            raise _bad("Invalid next_page cursor")
        try:
            return int(cursor.removeprefix("cursor_"), 16)
        except ValueError:
            raise _bad("Invalid next_page cursor") from None

    @staticmethod
    def _scan(base: list[str], offset: int, limit: int, get: Callable[[str], Any],
              matches: Callable[[Any], bool], view: Callable[[Any], dict[str, Any]],
              ) -> dict[str, Any]:
        """One page: from position ``offset`` of ``base`` (ids in creation order), the next
        ``limit`` matching records, viewed; the cursor is the position after the last one
        looked at. Costs O(limit + records skipped), never O(all records)."""
        chunk: list[dict[str, Any]] = []
        position = offset
        while position < len(base) and len(chunk) < limit:
            record = get(base[position])
            position += 1
            if record is not None and matches(record):
                chunk.append(view(record))
        more = position < len(base)
        return {"data": chunk, "next_page": f"cursor_{position:x}" if more else None}

    def _reindex(self) -> None:
        """Rebuild the per-customer indexes when records were put into ``grants`` /
        ``credits`` directly (benchmarks seed state that way)."""
        if len(self._grant_order) != len(self.grants):
            self._grant_order = list(self.grants)
            self._grants_by_customer = {}
            for grant_id, grant in self.grants.items():
                self._grants_by_customer.setdefault(grant.item["customer_id"], []).append(
                    grant_id)
        if self._credits_indexed != len(self.credits):  # O(1) check: pages cost O(page size)
            self._credits_by_customer = {}
            for credit_id, credit in self.credits.items():
                self._credits_by_customer.setdefault(credit.customer_id, []).append(credit_id)
            self._credits_indexed = len(self.credits)

    def _period_end(self) -> str:
        now = self.clock()
        year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        return format_time(datetime(year, month, 1, tzinfo=UTC))

    # -- v1 credit grants -------------------------------------------------------------------

    def _create_grant(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        self._fields(body, CREATE_GRANT_FIELDS, CREATE_GRANT_REQUIRED)
        customer = self._uuid(body["customer_id"], "customer_id")
        name = self._string(body["name"], "name", min_length=1)
        amounts: dict[str, dict[str, Any]] = {}
        values: dict[str, Decimal] = {}
        for money_key in ("grant_amount", "paid_amount"):
            money = body[money_key]
            if not isinstance(money, dict):
                raise _bad(f"{money_key} must be an object")
            self._fields(money, frozenset({"amount", "credit_type_id"}),
                         ("amount", "credit_type_id"), f"{money_key}.")
            values[money_key] = self._number(money["amount"], f"{money_key}.amount")
            amounts[money_key] = {"amount": values[money_key],
                                  "credit_type": self._credit_type(money["credit_type_id"],
                                                                   f"{money_key}.credit_type_id")}
        if values["grant_amount"] <= 0:
            raise _bad("grant_amount.amount must be positive")
        if values["paid_amount"] < 0:
            raise _bad("paid_amount.amount must not be negative")
        priority = self._number(body["priority"], "priority")
        effective = (self._time(body["effective_at"], "effective_at")
                     if body.get("effective_at") is not None else self.clock())
        expires = self._time(body["expires_at"], "expires_at")
        if expires <= effective:
            raise _bad("expires_at must be after effective_at")
        if body.get("rollover_settings") is not None:
            raise _bad("rollover_settings is not enabled for this client")
        key = self._key(body, self.grant_keys, "credit grant")
        custom_fields = self._custom_fields(body.get("custom_fields"), "credit_grant")
        grant_id = str(uuid.uuid4())
        item: dict[str, Any] = {
            "id": grant_id, "name": name, "customer_id": customer,
            "effective_at": format_time(effective), "expires_at": format_time(expires),
            "priority": priority, **amounts, "custom_fields": custom_fields,
        }
        for optional in ("reason", "credit_grant_type"):
            if body.get(optional) is not None:
                item[optional] = self._string(body[optional], optional)
        if body.get("product_ids") is not None:
            ids = [self._uuid(p, "product_ids") for p in self._strings(body["product_ids"],
                                                                       "product_ids")]
            item["products"] = [{"id": p, "name": self.products.get(p, f"Product {p[:8]}")}
                                for p in ids]
        if key is not None:
            item["uniqueness_key"] = key
            self.grant_keys[key] = grant_id
        if values["paid_amount"] > 0:
            item["invoice_id"] = str(uuid.uuid4())
        self.grants[grant_id] = _Grant(item, values["grant_amount"])
        self._grant_order.append(grant_id)
        self._grants_by_customer.setdefault(customer, []).append(grant_id)
        return {"data": {"id": grant_id}}

    def _grant_view(self, grant: _Grant) -> dict[str, Any]:
        item = dict(grant.item)
        now = self.clock()
        posted = grant.amount - sum((to_decimal(e["amount"]) for e in grant.deductions),
                                    Decimal(0))
        pending = posted - sum((to_decimal(e["amount"]) for e in grant.pending), Decimal(0))
        expired = now >= parse_time(item["expires_at"])
        period_end = self._period_end()
        item["balance"] = {
            "effective_at": period_end,
            "excluding_pending": Decimal(0) if expired else posted,
            "including_pending": Decimal(0) if parse_time(item["expires_at"]) < parse_time(
                period_end) else pending,
        }
        item["deductions"] = list(grant.deductions)
        item["pending_deductions"] = list(grant.pending)
        return item

    def _list_grants(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        self._fields(query, LIST_GRANTS_QUERY, where="query ")
        self._fields(body, LIST_GRANTS_FIELDS)
        limit = self._limit(query.get("limit"), 100, 100)
        offset = self._offset(query.get("next_page"))
        ids = self._strings(body["credit_grant_ids"], "credit_grant_ids") if body.get(
            "credit_grant_ids") is not None else None
        customers = self._strings(body["customer_ids"], "customer_ids") if body.get(
            "customer_ids") is not None else None
        types = self._strings(body["credit_type_ids"], "credit_type_ids") if body.get(
            "credit_type_ids") is not None else None
        if ids is not None and (customers is not None or types is not None):
            raise _bad("credit_grant_ids cannot be combined with customer_ids or credit_type_ids")
        effective_before = self._time(body["effective_before"], "effective_before", hour=False) \
            if body.get("effective_before") is not None else None
        not_expiring = self._time(body["not_expiring_before"], "not_expiring_before",
                                  hour=False) if body.get("not_expiring_before") is not None \
            else None
        if ids is not None:
            base = list(dict.fromkeys(ids))  # direct lookups: O(ids)
        elif customers is not None and len(customers) == 1:
            self._reindex()
            base = self._grants_by_customer.get(customers[0], [])
        else:
            self._reindex()
            base = self._grant_order

        def matches(grant: _Grant) -> bool:
            item = grant.item
            if grant.voided:
                return False
            if customers is not None and item["customer_id"] not in customers:
                return False
            if types is not None and item["grant_amount"]["credit_type"]["id"] not in types:
                return False
            if effective_before is not None and parse_time(item["effective_at"]) >= (
                    effective_before):
                return False
            return not (not_expiring is not None
                        and parse_time(item["expires_at"]) < not_expiring)

        return self._scan(base, offset, limit,
                          lambda gid: self.grants.get(gid) if gid in self.grants else None,
                          matches, self._grant_view)

    def _live_grant(self, body: Mapping[str, Any]) -> _Grant:
        grant_id = self._uuid(body.get("id"), "id")
        grant = self.grants.get(grant_id)
        if grant is None or grant.voided:
            raise _RefusedError(404, f"Credit grant {grant_id} not found")
        return grant

    def _edit_grant(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        self._fields(body, EDIT_GRANT_FIELDS, ("id",))
        grant = self._live_grant(body)
        if body.get("expires_at") is not None:
            expires = self._time(body["expires_at"], "expires_at")
            if expires <= parse_time(grant.item["effective_at"]):
                raise _bad("expires_at must be after effective_at")
            grant.item["expires_at"] = format_time(expires)
        if body.get("name") is not None:
            grant.item["name"] = self._string(body["name"], "name", min_length=1)
        if body.get("credit_grant_type") is not None:
            grant.item["credit_grant_type"] = self._string(body["credit_grant_type"],
                                                           "credit_grant_type")
        return {"data": {"id": grant.item["id"]}}

    def _void_grant(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        self._fields(body, VOID_GRANT_FIELDS, ("id",))
        grant_id = self._uuid(body.get("id"), "id")
        known = self.grants.get(grant_id)
        if known is not None and known.voided:
            # Metronome's answer to voiding twice is not documented; this is the one the
            # issue's stand-in gave (issue 8.6: "failed with credit_grant_voided").
            raise _RefusedError(400, f"Credit grant {grant_id} is already voided",
                                "credit_grant_voided")
        grant = self._live_grant(body)
        grant.voided = True
        key = grant.item.get("uniqueness_key")
        if body.get("release_uniqueness_key") is True and key is not None:
            self.grant_keys.pop(key, None)
        return {"data": {"id": grant.item["id"]}}

    # -- customer credits -------------------------------------------------------------------

    def _access_schedule(
        self, schedule: Any
    ) -> tuple[dict[str, str], list[dict[str, Any]], str | None]:
        if not isinstance(schedule, dict):
            raise _bad("access_schedule must be an object")
        self._fields(schedule, ACCESS_SCHEDULE_FIELDS, ("schedule_items",), "access_schedule.")
        credit_type = self._credit_type(schedule.get("credit_type_id", USD_CENTS),
                                        "access_schedule.credit_type_id")
        raw_items = schedule["schedule_items"]
        if not isinstance(raw_items, list) or not raw_items:
            raise _bad("access_schedule.schedule_items needs at least one item")
        segments = []
        for i, entry in enumerate(raw_items):
            where = f"access_schedule.schedule_items.{i}."
            if not isinstance(entry, dict):
                raise _bad(f"{where} must be an object")
            self._fields(entry, SCHEDULE_ITEM_FIELDS, SCHEDULE_ITEM_FIELDS, where)
            start = self._time(entry["starting_at"], f"{where}starting_at")
            end = self._time(entry["ending_before"], f"{where}ending_before")
            if end <= start:
                raise _bad(f"{where}ending_before must be after starting_at")
            segments.append({"id": str(uuid.uuid4()),
                             "amount": self._number(entry["amount"], f"{where}amount"),
                             "starting_at": format_time(start),
                             "ending_before": format_time(end)})
        access_type = schedule.get("access_type")
        if access_type not in (None, "SPEND", "QUANTITY"):
            raise _bad("access_schedule.access_type must be SPEND or QUANTITY")
        return credit_type, segments, access_type

    def _create_credit(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        self._fields(body, CREATE_CREDIT_FIELDS, CREATE_CREDIT_REQUIRED)
        customer = self._uuid(body["customer_id"], "customer_id")
        product = self._uuid(body["product_id"], "product_id")
        priority = self._number(body["priority"], "priority")
        credit_type, segments, access_type = self._access_schedule(body["access_schedule"])
        specifiers = body.get("specifiers")
        if specifiers is not None and (body.get("applicable_product_ids") is not None
                                       or body.get("applicable_product_tags") is not None):
            raise _bad("specifiers cannot be used together with applicable_product_ids or "
                       "applicable_product_tags")
        if body.get("rate_type") not in (None, "COMMIT_RATE", "LIST_RATE"):
            raise _bad("rate_type must be COMMIT_RATE or LIST_RATE")
        key = self._key(body, self.credit_keys, "commit or credit")
        credit_id = str(uuid.uuid4())
        access: dict[str, Any] = {"credit_type": credit_type, "schedule_items": segments}
        if access_type is not None:
            access["access_type"] = access_type
        item: dict[str, Any] = {
            "id": credit_id, "type": "CREDIT",
            "product": {"id": product, "name": self.products.get(product, "Credit product")},
            "access_schedule": access, "priority": priority,
            "created_at": format_time(self.clock()), "created_by": "billing-credits fake",
        }
        if body.get("name") is not None:
            item["name"] = self._string(body["name"], "name", min_length=1)
        if body.get("description") is not None:
            item["description"] = self._string(body["description"], "description")
        for list_key in ("applicable_product_ids", "applicable_product_tags",
                         "applicable_contract_ids"):
            if body.get(list_key) is not None:
                item[list_key] = self._strings(body[list_key], list_key)
        if specifiers is not None:
            if not isinstance(specifiers, list):
                raise _bad("specifiers must be a list")
            checked = []
            for i, spec in enumerate(specifiers):
                if not isinstance(spec, dict):
                    raise _bad(f"specifiers.{i} must be an object")
                self._fields(spec, SPECIFIER_FIELDS, where=f"specifiers.{i}.")
                checked.append(dict(spec))
            item["specifiers"] = checked
        custom_fields = self._custom_fields(body.get("custom_fields"), "contract_credit")
        if custom_fields:
            item["custom_fields"] = custom_fields
        for optional in ("rate_type", "netsuite_sales_order_id", "salesforce_opportunity_id"):
            if body.get(optional) is not None:
                item[optional] = body[optional]
        if key is not None:
            item["uniqueness_key"] = key
            self.credit_keys[key] = credit_id
        self.credits[credit_id] = _Credit(customer, item, segments)
        self._credits_by_customer.setdefault(customer, []).append(credit_id)
        self._credits_indexed += 1
        return {"data": {"id": credit_id}}

    def _credit_view(self, credit: _Credit, *, balance: bool, ledgers: bool) -> dict[str, Any]:
        item = dict(credit.item)
        item["access_schedule"] = {**item["access_schedule"],
                                   "schedule_items": [dict(s) for s in credit.segments]}
        if balance:
            item["balance"] = _credit_balance(self, credit, self.clock())
        if ledgers:
            item["ledger"] = _credit_ledger(self, credit, self.clock())
        return item

    def _list_credits(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        self._fields(body, LIST_CREDITS_FIELDS, ("customer_id",))
        customer = self._uuid(body["customer_id"], "customer_id")
        limit = self._limit(body.get("limit"), 25, 25)
        offset = self._offset(body.get("next_page"))
        for flag in ("include_archived", "include_balance", "include_contract_credits",
                     "include_ledgers"):
            if body.get(flag) is not None and not isinstance(body[flag], bool):
                raise _bad(f"{flag} must be a boolean")
        covering = self._time(body["covering_date"], "covering_date", hour=False) if body.get(
            "covering_date") is not None else None
        starting = self._time(body["starting_at"], "starting_at", hour=False) if body.get(
            "starting_at") is not None else None
        before = self._time(body["effective_before"], "effective_before", hour=False) if body.get(
            "effective_before") is not None else None
        self._reindex()
        credit_id = body.get("credit_id")
        base = ([credit_id] if isinstance(credit_id, str) else []) if credit_id is not None \
            else self._credits_by_customer.get(customer, [])

        def matches(credit: _Credit) -> bool:
            if credit.customer_id != customer:
                return False
            if credit.archived and not body.get("include_archived"):
                return False
            windows = [(parse_time(s["starting_at"]), parse_time(s["ending_before"]))
                       for s in credit.segments]
            if covering is not None and not any(a <= covering < b for a, b in windows):
                return False
            if starting is not None and not any(b > starting for _, b in windows):
                return False
            return not (before is not None and not any(a < before for a, _ in windows))

        return self._scan(base, offset, limit, self.credits.get, matches,
                          lambda c: self._credit_view(
                              c, balance=bool(body.get("include_balance")),
                              ledgers=bool(body.get("include_ledgers"))))

    def _update_end_date(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        self._fields(body, UPDATE_END_DATE_FIELDS, UPDATE_END_DATE_FIELDS)
        customer = self._uuid(body["customer_id"], "customer_id")
        credit_id = self._uuid(body["credit_id"], "credit_id")
        credit = self.credits.get(credit_id)
        if credit is None or credit.customer_id != customer or credit.archived:
            raise _RefusedError(404, f"Credit {credit_id} not found")
        end = self._time(body["access_ending_before"], "access_ending_before")
        current = parse_time(credit.segments[-1]["ending_before"])
        if end > current:
            raise _bad("access_ending_before can only move the end date earlier")
        first = parse_time(credit.segments[0]["starting_at"])
        if end <= first:
            raise _bad("access_ending_before must be after the credit starts")
        kept = [
            {**segment, "ending_before": min(segment["ending_before"], format_time(end),
                                             key=parse_time)}
            for segment in credit.segments if parse_time(segment["starting_at"]) < end
        ]
        credit.segments = kept
        return {"data": {"id": credit_id}}

    # -- custom fields ----------------------------------------------------------------------

    def _add_key(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        self._fields(body, ADD_KEY_FIELDS, ADD_KEY_FIELDS)
        entity = body["entity"]
        if entity not in CUSTOM_FIELD_ENTITIES:
            raise _bad(f"entity must be one of {', '.join(sorted(CUSTOM_FIELD_ENTITIES))}")
        key = self._string(body["key"], "key", min_length=1)
        if len(key) > 100:
            raise _bad("There is a 100 character limit on custom field keys")
        if not isinstance(body["enforce_uniqueness"], bool):
            raise _bad("enforce_uniqueness must be a boolean")
        keys = self.field_keys.setdefault(entity, {})
        if key in keys:
            raise _bad("Duplicate custom field key")
        keys[key] = body["enforce_uniqueness"]
        return {"data": {"id": str(uuid.uuid4())}}

    def _list_keys(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        self._fields(body, LIST_KEYS_FIELDS)
        entities = body.get("entities")
        if entities is not None:
            entities = self._strings(entities, "entities")
        found = [{"entity": entity, "key": key, "enforce_uniqueness": unique}
                 for entity, keys in self.field_keys.items()
                 if entities is None or entity in entities
                 for key, unique in keys.items()]
        return {"data": found, "next_page": None}
