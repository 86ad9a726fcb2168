"""``metronome-plans``: Plans-era v1 credit grants (``/v1/credits/*``, deprecated by Metronome)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import billing_credits as bc
import billing_credits_metronome._ledger as ledger
import billing_credits_metronome._translate as tr

from ._transport import (
    CREATE_GRANT,
    EDIT_GRANT,
    LIST_GRANTS,
    VOID_GRANT,
    Reply,
    created_id,
    page_of,
)

if TYPE_CHECKING:
    pass

from ._provider import (
    _COMMON_SETTINGS,
    _VOIDED,
    ALREADY_VOIDED,
    GRANTS_PAGE_MAX,
    _bool,
    _capabilities,
    _env,
    _MetronomeProvider,
    _same_number,
    _same_time,
    _took_over_key,
    _vendor_id,
)


class MetronomePlansProvider(_MetronomeProvider):
    """Metronome v1 credit grants (Plans, deprecated by Metronome): /v1/credits/*.

    ``create_grant`` sends ``createGrant`` (which answers only an id) and reads the grant back
    with ``listGrants`` filtered by ``credit_grant_ids``: the grant returned is Metronome's.
    A 409 (uniqueness key used) is answered by finding the grant with that key among the
    customer's grants and returning it when it is the same grant; otherwise ``ConflictError``.
    ``void_grant`` voids with ``voidGrant`` (the purchase invoice is left alone; the uniqueness
    key stays burnt unless ``release_uniqueness_key`` is on, see ``releasing_keys``) and returns
    the grant as read just before, with status voided and balance 0: voided grants vanish from
    ``listGrants``. A grant Metronome already voided cannot be read
    back: ``void_grant`` then raises ``NotFoundError`` with ``code`` ``ALREADY_VOIDED``
    ("already retired"; nothing was changed). ``expire_grant`` edits ``expires_at`` to now,
    floored to the hour under the default time alignment (see ``_end_now``); on a grant already
    expired it changes nothing and returns the grant read back.

    With ``invoice_paid_amount`` the instance bills the paid amount
    (``capabilities.invoices_paid_amount``); ``record_only()`` is a copy that never does.
    """

    name = "metronome-plans"
    capabilities = _capabilities(
        scope=frozenset({"product_ids"}), max_segments=1,
        operations=bc.ALL_OPERATIONS - {"consume"}, in_metadata=frozenset({"paid_amount"}),
        updatable=ledger.PLANS_UPDATABLE,
        notes=(
            "paid_amount is sent as 0 (no invoice) unless invoice_paid_amount is set; the cost "
            "basis then travels in custom fields bc_paid_*",
            "category ↔ credit_grant_type; another label is kept in category_label and the "
            "category inferred from paid_amount",
            "balance: what the customer can still use: including_pending when the grant outlives "
            "the billing period, else excluding_pending minus the listed pending deductions",
            "voided grants are not listed by Metronome; get_grant on one raises NotFoundError",
            "get_balance: listGrants excluding_pending now, pending deductions as pending",
            "ledger: /v1/credits/listEntries (posted entries); update: editGrant (name, "
            "expires_at, category via credit_grant_type; refused when the grant's bc_category "
            "field would override it on read-back)",
        ),
    )
    consumption_order = ledger.PLANS_ORDER
    remaining_source = ("listGrants balance: the smaller of excluding_pending and "
                        "including_pending (as of the end of the current billing period)")
    settings = (
        *_COMMON_SETTINGS,
        bc.Setting("invoice_paid_amount", "send a positive paid_amount to Metronome, which "
                   "invoices the customer for it (default false: sent as 0, kept in custom "
                   "fields)"),
        bc.Setting("default_name", "name sent when a grant has none (Metronome requires one; "
                   "default 'Credits'); reads back as None"),
        bc.Setting("release_uniqueness_key", "void with release_uniqueness_key=true, so the "
                   "grant's idempotency key can create a grant again (default off: a late retry "
                   "of the original create would then make a second grant)",
                   env="METRONOME_RELEASE_UNIQUENESS_KEY"),
    )

    entity = "credit_grant"
    own_keys = frozenset({tr.PAID_AMOUNT, tr.PAID_UNIT, tr.PAID_UNIT_NAME, tr.CATEGORY,
                          tr.UNNAMED, tr.PRIORITY_DEFAULT})

    def __init__(self, *, release_uniqueness_key: bool | str | None = None,
                 **settings: Any) -> None:
        super().__init__(**settings)
        given = release_uniqueness_key if release_uniqueness_key is not None else _env(
            "METRONOME_RELEASE_UNIQUENESS_KEY")
        self.release_uniqueness_key = _bool("release_uniqueness_key", given or False)
        self._borrowed = False
        self.capabilities = dataclasses.replace(
            self.capabilities, invoices_paid_amount=self._config.invoice_paid_amount)

    def record_only(self) -> MetronomePlansProvider:
        """``self`` when it does not invoice; else a copy (sharing the connection) that sends
        ``paid_amount`` 0 and keeps the paid amount in custom fields, whatever the settings.
        Closing the copy leaves the connection to the original."""
        if not self._config.invoice_paid_amount:
            return self
        other = copy.copy(self)
        other._config = dataclasses.replace(self._config, invoice_paid_amount=False,
                                            record_only=True)
        other.capabilities = dataclasses.replace(self.capabilities, invoices_paid_amount=False)
        other._borrowed = True
        return other

    def releasing_keys(self) -> MetronomePlansProvider:
        """``self`` when ``release_uniqueness_key`` is on; else a copy (sharing the connection)
        whose ``void_grant`` sends ``release_uniqueness_key: true`` ("If true, resets the
        uniqueness key on this grant so it can be re-used", metronome-sdk
        ``types/v1/credit_grant_void_params.py``).

        For a migration or an import that voids a grant in order to create it again under the
        same idempotency key. Off by default, because Metronome keeps a uniqueness key as long
        as the grant ("Until released", https://docs.metronome.com/api-reference/idempotency):
        once released, a late retry of the original create is no longer refused with 409 and
        makes a second grant."""
        if self.release_uniqueness_key:
            return self
        other = copy.copy(self)
        other.release_uniqueness_key = True
        other._borrowed = True
        return other

    def close(self) -> None:
        if not self._borrowed:
            super().close()

    async def aclose(self) -> None:
        if not self._borrowed:
            await super().aclose()

    def _problems(self, grant: bc.CreditGrant) -> list[bc.FieldProblem]:
        return tr.plans_problems(grant, self._config, self._now())

    def _read(self, item: Mapping[str, Any]) -> bc.CreditGrant:
        return tr.grant_from_item(item, self._config, self._now(), provider=self.name)

    def _read_reply(self, item: Mapping[str, Any], reply: Reply) -> bc.CreditGrant:
        return self._read_one(lambda: self._read(item), item, reply)

    def preview(self, grant: bc.CreditGrant) -> list[bc.Adjustment]:
        return list(tr.grant_create_payload(grant, "preview", self._config, self._now())[1])

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        payload, adjustments = tr.grant_create_payload(
            grant, idempotency_key, self._config, self._now())
        try:
            created = yield self._http.call(CREATE_GRANT, payload, label="createGrant")
        except bc.BadRequestError as refused:
            error = yield from self._key_refusal(refused, payload)
            raise error from None
        except bc.ConflictError as conflict:
            item = yield from self._find_item_by_key(grant.customer_id, idempotency_key)
            if item is None:
                raise self._conflict(
                    idempotency_key, "by a grant that is not listed (voided, or another "
                    "customer's)", conflict) from conflict
            try:
                differs = [] if _took_over_key(item, idempotency_key) else self._differences(
                    payload, item, start_defaulted=grant.effective_at is None)
            except Exception:  # hostile stored item: not provably the same grant
                differs = ["(unreadable stored fields)"]
            if differs:
                raise self._conflict(
                    idempotency_key, f"by grant {item.get('id')} with different "
                    f"{', '.join(differs)}", conflict) from conflict
            stored: Mapping[str, Any] = item
            found = self._read_one(lambda: self._read(stored), stored,
                                   Reply(stored, conflict.request_id))
            return found.model_copy(update={"adjustments": adjustments, "replayed": True})
        grant_id = created_id(self.name, "createGrant", created)
        item, reply = yield from self._item(grant_id)
        if item is None:
            raise bc.ProviderError(
                f"created credit grant {grant_id} but could not read it back; creating again "
                "with the same idempotency_key returns it", provider=self.name,
                request_id=reply.request_id)
        return self._read_reply(item, reply).model_copy(
            update={"adjustments": adjustments, "replayed": False})

    @staticmethod
    def _differences(payload: Mapping[str, Any], item: Mapping[str, Any], *,
                     start_defaulted: bool) -> list[str]:
        """Which fields of the stored grant differ from what this create asked for.

        Fields Metronome lets you edit later (name, expires_at, credit_grant_type) are not
        compared; nor is a start the library chose (the grant had no ``effective_at``).
        """
        found = []
        if payload["customer_id"] != item.get("customer_id"):
            found.append("customer_id")
        for key in ("grant_amount", "paid_amount"):
            sent, stored = payload[key], item.get(key) or {}
            stored_type = (stored.get("credit_type") or {}).get("id")
            if not _same_number(sent["amount"], stored.get("amount", "NaN")) or (
                    sent["credit_type_id"] != stored_type):
                found.append(key)
        if not _same_number(payload["priority"], item.get("priority", "NaN")):
            found.append("priority")
        if not start_defaulted and not _same_time(payload["effective_at"], item["effective_at"]):
            found.append("effective_at")
        if payload.get("reason") != item.get("reason"):
            found.append("reason")
        if list(payload.get("product_ids") or ()) != [p["id"] for p in item.get("products") or ()]:
            found.append("product_ids")
        if dict(payload.get("custom_fields") or {}) != dict(item.get("custom_fields") or {}):
            found.append("custom_fields")
        return found

    def _customer_page(self, customer_id: str, cursor: str | None) -> bc.Call[Reply]:
        query: dict[str, str | int] = {"limit": GRANTS_PAGE_MAX}
        if cursor:
            query["next_page"] = cursor  # listGrants takes its cursor in the query
        return self._http.call(LIST_GRANTS, {"customer_ids": [customer_id]}, query=query,
                               label="listGrants")

    def _item(self, grant_id: str) -> bc.Flow[tuple[Mapping[str, Any] | None, Reply]]:
        reply = yield self._http.call(LIST_GRANTS, {"credit_grant_ids": [grant_id]},
                                      query={"limit": GRANTS_PAGE_MAX}, label="listGrants")
        items, _ = page_of(self.name, "listGrants", reply)
        for item in items:
            if isinstance(item, Mapping) and item.get("id") == grant_id:
                return item, reply
        return None, reply

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        limit = max(1, min(query.page_size or GRANTS_PAGE_MAX, GRANTS_PAGE_MAX))
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["next_page"] = cursor
        body = {"customer_ids": [query.customer_id]} if query.customer_id else {}
        reply = yield self._http.call(LIST_GRANTS, body, query=params, label="listGrants")
        items, next_page = page_of(self.name, "listGrants", reply)
        grants, unreadable = bc.read_items(self.name, items, self._read, _vendor_id)
        return bc.Page(grants, next_page, unreadable, request_id=reply.request_id)

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        item, reply = yield from self._item(grant_id)
        if item is None:
            raise bc.NotFoundError(
                f"no credit grant {grant_id!r} (Metronome does not list voided grants)",
                provider=self.name, request_id=reply.request_id)
        return self._read_reply(item, reply)

    def _void(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        item, reply = yield from self._item(grant_id)
        grant = None if item is None else self._read_reply(item, reply)
        try:
            body: dict[str, Any] = {"id": grant_id}
            if self.release_uniqueness_key:
                body["release_uniqueness_key"] = True  # credit_grant_void_params.py
            yield self._http.call(VOID_GRANT, body, label="voidGrant")
        except (bc.NotFoundError, bc.BadRequestError) as refused:
            voided = bool(_VOIDED.search(f"{refused.message} {refused.code or ''}"))
            if grant is None:
                # Not listed, and Metronome will not void it: voided before (say, a crash
                # between voiding and recording it), or no such grant.
                raise bc.NotFoundError(
                    f"credit grant {grant_id!r} is already voided: nothing changed (Metronome "
                    "keeps no readable record of voided grants)" if voided else
                    f"no credit grant {grant_id!r}: not listed (voided already, or never "
                    "existed) and Metronome will not void it",
                    provider=self.name, status=refused.status, body=refused.body,
                    request_id=refused.request_id,
                    code=ALREADY_VOIDED if voided else "not_listed") from None
            if not voided:
                if isinstance(refused, bc.BadRequestError):
                    raise
                again, _ = yield from self._item(grant_id)
                if again is not None:
                    raise
        if grant is None:  # voided although not listed just before
            raise bc.NotFoundError(
                f"credit grant {grant_id!r} was not listed, yet Metronome voided it",
                provider=self.name, code=ALREADY_VOIDED)
        return grant.model_copy(update={
            "status": bc.GrantStatus.VOIDED, "balance": grant.amount.with_amount(Decimal(0))})

    def _expire(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        grant = yield from self._get(grant_id)
        now, end, why = self._end_now(grant.effective_at)
        if grant.status is bc.GrantStatus.EXPIRED or (
                grant.expires_at is not None and grant.expires_at <= end):
            return grant  # already in the wanted state: already retired
        if grant.status is bc.GrantStatus.SCHEDULED:
            raise bc.ConflictError("the grant is not effective yet and cannot expire before it "
                                   "starts; void it instead", provider=self.name)
        yield self._http.call(EDIT_GRANT, {"id": grant_id, "expires_at": tr.format_time(end)},
                              label="editGrant")
        read = yield from self._get(grant_id)
        return read.model_copy(update={"adjustments": self._expire_adjustment(now, end, why)})


    # -- balances, ledger, updates (issue 11: see _ledger) ---------------------------------

    def _balance(self, customer_id: str, unit: str | None,
                 at: datetime | None) -> bc.Flow[list[bc.Balance]]:
        return ledger.plans_balance_flow(self, customer_id, unit, at)

    def _ledger_page(self, customer_id: str, grant_id: str | None, since: datetime | None,
                     cursor: str | None) -> bc.Flow[bc.LedgerPage]:
        return ledger.plans_ledger_flow(self, customer_id, grant_id, since, cursor)

    def _update(self, grant_id: str, update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
        return ledger.plans_update_flow(self, grant_id, update)
