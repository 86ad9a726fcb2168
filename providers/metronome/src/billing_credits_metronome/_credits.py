"""``metronome``: contract-era customer credits (``/v1/contracts/customerCredits/*``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import billing_credits as bc
import billing_credits_metronome._ledger as ledger
import billing_credits_metronome._translate as tr

from ._transport import (
    CREATE_CREDIT,
    LIST_CREDITS,
    UPDATE_END_DATE,
    Reply,
    created_id,
    page_of,
)

if TYPE_CHECKING:
    pass

from ._provider import (
    _COMMON_SETTINGS,
    CREDITS_PAGE_MAX,
    _capabilities,
    _env,
    _MetronomeProvider,
    _same_number,
    _same_time,
    _took_over_key,
    _vendor_id,
)


class MetronomeCreditsProvider(_MetronomeProvider):
    """Metronome contract customer credits: /v1/contracts/customerCredits/*.

    Needs ``product_id``: the Metronome product the credit is booked under (required by
    Metronome; not what the credit applies to, which is the scope). Grant ids are
    ``<customer_id>:<credit_id>``, because every customer-credit endpoint needs both.

    ``create_grant`` sends ``customerCredits/create`` (which answers only an id) and reads the
    credit back with ``customerCredits/list`` filtered by ``credit_id``: the grant returned is
    Metronome's. A 409 is answered by finding the customer's credit with that uniqueness key.
    Multi-segment access schedules map to ``schedule``. ``expire_grant`` uses
    ``updateEndDate`` (which can only shorten). Void is not offered: SDK 4.12 has no archive
    endpoint, and ``/v2/contracts/credits/archive`` cannot release the uniqueness key nor be
    checked against the SDK's types; expire the credit instead.
    """

    name = "metronome"
    capabilities = _capabilities(
        scope=frozenset({"product_ids", "product_tags", "contract_ids", "specifiers"}),
        max_segments=None,
        operations=bc.ALL_OPERATIONS - {"void", "consume"},
        in_metadata=frozenset({"paid_amount", "category", "category_label"}),
        updatable=ledger.CREDITS_UPDATABLE,
        balance_as_of="any",
        notes=(
            "customer credits have no paid amount or category: they travel in custom fields "
            "bc_paid_*, bc_category, bc_category_label",
            "reason ↔ description (not shown to end customers)",
            "listing needs a customer: customerCredits/list is per customer",
            "balance: Metronome's usable-now balance (include_balance)",
            "void is not supported; archived credits are not listed",
            "get_balance and ledger: /v1/contracts/customerBalances/list (customer-level "
            "credits, with ledgers); a balance at another moment is summed from the ledgers",
            "update: expires_at through updateEndDate, which can only shorten",
        ),
    )
    consumption_order = ledger.CREDITS_ORDER
    remaining_source = ("customerCredits/list include_balance: balance (usable now) plus the "
                        "amounts of segments not started yet")
    settings = (
        *_COMMON_SETTINGS,
        bc.Setting("product_id", "Metronome product the credit itself is booked under "
                   "(required by Metronome to create; not to list)", env="METRONOME_CREDIT_PRODUCT_ID"),
    )

    def __init__(self, *, product_id: str | None = None, **settings: Any) -> None:
        # Only creating needs product_id (refused then, before any request); listing does not.
        super().__init__(product_id=product_id or _env("METRONOME_CREDIT_PRODUCT_ID"), **settings)

    entity = "contract_credit"
    own_keys = frozenset({tr.PAID_AMOUNT, tr.PAID_UNIT, tr.PAID_UNIT_NAME, tr.CATEGORY,
                          tr.CATEGORY_LABEL, tr.PRIORITY_DEFAULT})

    def _problems(self, grant: bc.CreditGrant) -> list[bc.FieldProblem]:
        return tr.credits_problems(grant, self._config, self._now())

    def _read(self, item: Mapping[str, Any], customer_id: str) -> bc.CreditGrant:
        return tr.credit_from_item(item, customer_id, self._config, self._now(),
                                   provider=self.name)

    def preview(self, grant: bc.CreditGrant) -> list[bc.Adjustment]:
        return list(tr.credit_create_payload(grant, "preview", self._config, self._now())[1])

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        payload, adjustments = tr.credit_create_payload(
            grant, idempotency_key, self._config, self._now())
        customer = grant.customer_id
        try:
            created = yield self._http.call(CREATE_CREDIT, payload, label="customerCredits/create")
        except bc.BadRequestError as refused:
            error = yield from self._key_refusal(refused, payload)
            raise error from None
        except bc.ConflictError as conflict:
            item = yield from self._find_item_by_key(customer, idempotency_key)
            if item is None:
                raise self._conflict(
                    idempotency_key, "by a commit or credit that is not listed for this "
                    "customer (archived, contract-level, or another customer's)",
                    conflict) from conflict
            try:
                differs = [] if _took_over_key(item, idempotency_key) else self._differences(
                    payload, item, start_defaulted=grant.effective_at is None
                    and grant.schedule is None)
            except Exception:  # hostile stored item: not provably the same credit
                differs = ["(unreadable stored fields)"]
            if differs:
                raise self._conflict(
                    idempotency_key, f"by credit {item.get('id')} with different "
                    f"{', '.join(differs)}", conflict) from conflict
            stored: Mapping[str, Any] = item
            found = self._read_one(lambda: self._read(stored, customer), stored,
                                   Reply(stored, conflict.request_id))
            return found.model_copy(update={"adjustments": adjustments, "replayed": True})
        credit = created_id(self.name, "customerCredits/create", created)
        item, reply = yield from self._item(customer, credit)
        if item is None:
            raise bc.ProviderError(
                f"created customer credit {credit} but could not read it back; creating again "
                "with the same idempotency_key returns it", provider=self.name,
                request_id=reply.request_id)
        return self._read_one(lambda: self._read(item, customer), item, reply).model_copy(
            update={"adjustments": adjustments, "replayed": False})

    @staticmethod
    def _differences(payload: Mapping[str, Any], item: Mapping[str, Any], *,
                     start_defaulted: bool) -> list[str]:
        """Which fields of the stored credit differ from this create.

        Segment ends are not compared (``updateEndDate`` shortens them later), nor a start
        the library chose.
        """
        found = []
        if payload["product_id"] != (item.get("product") or {}).get("id"):
            found.append("product_id")
        if not _same_number(payload["priority"], item.get("priority", "NaN")):
            found.append("priority")
        schedule = item.get("access_schedule") or {}
        stored_type = (schedule.get("credit_type") or {}).get("id", tr.USD_CENTS)
        if payload["access_schedule"]["credit_type_id"] != stored_type:
            found.append("credit_type")
        sent_items = payload["access_schedule"]["schedule_items"]
        stored_items = schedule.get("schedule_items") or []
        if len(stored_items) > len(sent_items) or not stored_items:
            found.append("access_schedule")
        else:
            for i, (sent, stored) in enumerate(zip(sent_items, stored_items, strict=False)):
                if not _same_number(sent["amount"], stored["amount"]) or (
                        not (start_defaulted and i == 0)
                        and not _same_time(sent["starting_at"], stored["starting_at"])):
                    found.append("access_schedule")
                    break
        found.extend(key for key in ("name", "description") if payload.get(key) != item.get(key))
        found.extend(
            key for key in ("applicable_product_ids", "applicable_product_tags",
                            "applicable_contract_ids")
            if list(payload.get(key) or ()) != list(item.get(key) or ()))
        sent_specs = [dict(s) for s in payload.get("specifiers") or ()]
        stored_specs = [{k: v for k, v in dict(s).items() if v not in (None, [], {})}
                        for s in item.get("specifiers") or ()]
        if sent_specs != stored_specs:
            found.append("specifiers")
        if dict(payload.get("custom_fields") or {}) != dict(item.get("custom_fields") or {}):
            found.append("custom_fields")
        return found

    def _list_body(self, customer_id: str, **extra: Any) -> dict[str, Any]:
        return {"customer_id": customer_id, "include_balance": True, **extra}

    def _customer_page(self, customer_id: str, cursor: str | None) -> bc.Call[Reply]:
        body = self._list_body(customer_id, limit=CREDITS_PAGE_MAX)
        if cursor:
            body["next_page"] = cursor  # customerCredits/list takes its cursor in the body
        return self._http.call(LIST_CREDITS, body, label="customerCredits/list")

    def _item(self, customer_id: str, credit: str
              ) -> bc.Flow[tuple[Mapping[str, Any] | None, Reply]]:
        reply = yield self._http.call(
            LIST_CREDITS, self._list_body(customer_id, credit_id=credit),
            label="customerCredits/list")
        items, _ = page_of(self.name, "customerCredits/list", reply)
        for item in items:
            if isinstance(item, Mapping) and item.get("id") == credit:
                return item, reply
        return None, reply

    def _split(self, grant_id: str) -> tuple[str, str]:
        parts = tr.split_credit_id(grant_id)
        if parts is None:
            raise bc.NotFoundError(
                f"{grant_id!r} is not a metronome credit id; they look like "
                "'<customer_id>:<credit_id>'", provider=self.name)
        return parts

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        if not query.customer_id:
            raise bc.UnsupportedOperationError(
                self.name, "list", "Metronome lists customer credits per customer: pass "
                "customer_id")
        limit = max(1, min(query.page_size or CREDITS_PAGE_MAX, CREDITS_PAGE_MAX))
        body = self._list_body(query.customer_id, limit=limit)
        if cursor:
            body["next_page"] = cursor
        reply = yield self._http.call(LIST_CREDITS, body, label="customerCredits/list")
        items, next_page = page_of(self.name, "customerCredits/list", reply)
        customer = query.customer_id
        grants, unreadable = bc.read_items(self.name, items, lambda i: self._read(i, customer),
                                           _vendor_id)
        return bc.Page(grants, next_page, unreadable, request_id=reply.request_id)

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        customer, credit = self._split(grant_id)
        item, reply = yield from self._item(customer, credit)
        if item is None:
            raise bc.NotFoundError(f"no customer credit {grant_id!r} (archived credits are "
                                   "not listed)", provider=self.name, request_id=reply.request_id)
        return self._read_one(lambda: self._read(item, customer), item, reply)

    def _expire(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        customer, credit = self._split(grant_id)
        grant = yield from self._get(grant_id)
        now, end, why = self._end_now(grant.effective_at)
        current_end = grant.segments[-1].ends_before
        if grant.status is bc.GrantStatus.EXPIRED or (
                current_end is not None and current_end <= end):
            return grant  # already in the wanted state: already retired
        if grant.status is bc.GrantStatus.SCHEDULED:
            raise bc.ConflictError("the credit is not effective yet and cannot expire before "
                                   "it starts", provider=self.name)
        yield self._http.call(UPDATE_END_DATE, {
            "customer_id": customer, "credit_id": credit,
            "access_ending_before": tr.format_time(end)}, label="customerCredits/updateEndDate")
        read = yield from self._get(grant_id)
        return read.model_copy(update={"adjustments": self._expire_adjustment(now, end, why)})

    # -- balances, ledger, updates (issue 11: see _ledger) ---------------------------------

    def _balance(self, customer_id: str, unit: str | None,
                 at: datetime | None) -> bc.Flow[list[bc.Balance]]:
        return ledger.credits_balance_flow(self, customer_id, unit, at)

    def _ledger_page(self, customer_id: str, grant_id: str | None, since: datetime | None,
                     cursor: str | None) -> bc.Flow[bc.LedgerPage]:
        return ledger.credits_ledger_flow(self, customer_id, grant_id, since, cursor)

    def _update(self, grant_id: str, update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
        return ledger.credits_update_flow(self, grant_id, update)
