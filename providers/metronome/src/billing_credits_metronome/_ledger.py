"""Balances, the ledger and grant updates on Metronome (issue 11): pure translation plus flows.

``metronome-plans`` (v1 credit grants, ``metronome-sdk`` 4.12 ``types/v1``):

- balance: ``POST /v1/credits/listGrants``: ``balance.excluding_pending`` is "the grant's current
  balance including all posted deductions", 0 once expired (``CreditGrantListResponse.Balance``);
  ``pending`` is the sum of the grant's ``pending_deductions``.
- ledger: ``POST /v1/credits/listEntries`` (``CreditGrantListEntriesResponse``): per customer, one
  ledger per credit type with ``entries`` (``CreditLedgerEntry``: ``amount`` "the change to the
  customer's credit balance", ``running_balance`` for the credit type, ``credit_grant_id``,
  ``invoice_id``, ``reason``). Only posted ``entries`` are read; ``pending_entries`` are in the
  balance's ``pending``. Cursor ``next_page`` in the query, no ``limit``.
- update: ``POST /v1/credits/editGrant`` changes ``name``, ``expires_at`` and
  ``credit_grant_type`` ("the updated credit grant type"), nothing else
  (``types/v1/credit_grant_edit_params.py``): the category travels in ``credit_grant_type`` as at
  create. A category edit Metronome would not read back as asked (the grant's ``bc_category``
  custom field, which editGrant cannot change, or a label whose category is inferred from the
  paid amount) is refused before the edit.

``metronome`` (contract customer credits):

- balance and ledger: ``POST /v1/contracts/customerBalances/list`` (``ContractListBalancesParams``)
  with ``include_balance`` (``Credit.balance``: usable "at this moment"; expired and future
  segments count 0) and ``include_ledgers`` (``Credit.ledger``, typed entries). A balance as of
  another moment asks for the credits whose schedule covers it (``covering_date``) with their
  ledgers, and sums each open segment's amount and entries up to that moment. Commits in the
  answer are not this provider's grants and are skipped; like ``list_grants``, only
  customer-level credits are read (no ``include_contract_balances``).
- update: ``POST /v1/contracts/customerCredits/updateEndDate`` "can only shorten" the end.

Amount signs: Metronome's docs examples show deductions both as positive amounts (the
``listGrants`` example: ``amount: 20, running_balance: 80``) and the SDK calls an entry's amount
"the change to the balance"; so a deduction or expiration always reads as a decrease of
``|amount|`` and every other entry keeps its sign.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Protocol

import billing_credits as bc
import billing_credits_metronome._translate as tr

from ._transport import EDIT_GRANT, UPDATE_END_DATE, MetronomeHTTP, Reply, page_of

__all__ = [
    "CREDITS_ORDER",
    "CREDITS_UPDATABLE",
    "PLANS_ORDER",
    "PLANS_UPDATABLE",
    "credit_entries",
    "credits_balances",
    "credits_balances_at",
    "plans_balances",
    "plans_edit_body",
    "plans_entries",
]

LIST_ENTRIES = "/v1/credits/listEntries"
LIST_BALANCES = "/v1/contracts/customerBalances/list"
BALANCES_PAGE_MAX = 25

PLANS_UPDATABLE = frozenset({"expires_at", "name", "category", "category_label"})
EDIT_GRANT_DOC = "metronome-sdk types/v1/credit_grant_edit_params.py"
CREDITS_UPDATABLE = frozenset({"expires_at"})

MANAGE_CREDITS = "https://docs.metronome.com/invoicing/how-billing-works/manage-credits/"
PRIORITIZATION = "https://docs.metronome.com/pricing-packaging/apply-credits-commits/prioritization-rules"
PRIORITIZATION_STAGING = ("https://docs.staging.metronome.com/pricing-packaging/apply-credits-"
                          "commits/prioritization-rules")
CREATE_CREDIT_PARAMS = "metronome-sdk types/v1/customers/credit_create_params.py"
PLANS_UNREAD = ("the page continues with a further rule for grants of equal priority and expiry "
                "('If two credit grants h…') whose text could not be read in any copy "
                "consulted (docs and pages search corpora); it is not implemented: ties after "
                "expiry go by grant id and are reported")
CREATE_CREDIT_DOC = ("https://docs.metronome.com/api-reference/credits-and-commits/create-a-credit "
                     "('Priority considerations')")

PLANS_ORDER = bc.ConsumptionOrder(
    provider="metronome-plans",
    rules=(
        bc.OrderRule("priority", "asc",
                     f"{MANAGE_CREDITS}; metronome-sdk types/v1/credit_grant_create_params.py "
                     "(priority, required)", note="lower first"),
        bc.OrderRule("expires_at", "asc", MANAGE_CREDITS,
                     note="on a priority tie the grant expiring sooner applies first; "
                     + PLANS_UNREAD),
    ),
    documented_tie_break=False,
    scope_aware=True,
)
"""Metronome Plans grants: priority, then the sooner expiry. ``product_ids`` order is Metronome's
order for the line items *of one invoice* a grant pays ("The array ordering specified here will
be used to determine the order in which credits will be applied to invoice line items",
``credit_grant_create_params.py``), not an order between grants: a usage here is one line item.
The manage-credits page does document a rule after expiry ("If two credit grants h…"), but its
text was cut off in every copy read: ``PLANS_UNREAD``. So ``documented_tie_break`` is False:
ties after expiry go by grant id and the engine reports each one."""


def _group_value_filters(grant: bc.CreditGrant) -> int | None:
    """The number of group-value specifiers of a credit ("specifiers with only
    presentation_group_value and/or pricing_group_value defined"); None for a credit with none
    (Metronome: credits scoped by product ids or tags "have no usage applicability")."""
    count = sum(1 for s in grant.scope.specifiers
                if (s.pricing_group_values or s.presentation_group_values)
                and s.product_id is None and not s.product_tags)
    return count or None


def _contract_level(grant: bc.CreditGrant) -> int:
    """0 for a contract-level credit (Metronome's ``Credit.contract`` is set), else 1."""
    return 0 if isinstance((grant.raw or {}).get("contract"), Mapping) else 1


CREDITS_ORDER = bc.ConsumptionOrder(
    provider="metronome",
    rules=(
        bc.OrderRule("priority", "asc",
                     "metronome-sdk types/v1/customers/credit_create_params.py ('If multiple "
                     "credits or commits are applicable, the one with the lower priority will "
                     "apply first')", note="lower first"),
        bc.OrderRule("contract_before_customer", "asc",
                     f"{CREATE_CREDIT_DOC} (seed001: 'If there is a tie, contract level commits "
                     "and credits will be applied before customer level'); vendor-surface.md §3",
                     note="on a priority tie, contract-level before customer-level (the "
                     "prioritization-rules page itself does not list this rule)",
                     key=_contract_level),
        bc.OrderRule("cost_basis", "asc", PRIORITIZATION,
                     note="$0 cost basis first; customer credits are all free",
                     key=lambda grant: Decimal(0)),
        bc.OrderRule("fewest_products", "asc", PRIORITIZATION,
                     note="fewer applicable products first; all products last"),
        bc.OrderRule("fewest_usage_filters", "asc", PRIORITIZATION_STAGING,
                     note="usage applicability: fewer group-value specifiers first (credits "
                     "without any last: where Metronome puts them is not documented); the "
                     "staging copy states it for rollover commits, after product applicability, "
                     "and its prepaid list is cut off before it: placed here by that pattern. "
                     "The engine draws no such credit (usage carries no group values)",
                     key=_group_value_filters),
        bc.OrderRule("expires_at", "asc", PRIORITIZATION,
                     note="earlier ending_before of the segment in use first"),
        bc.OrderRule("starts_at", "asc", PRIORITIZATION,
                     note="earlier starting_at of the segment in use first"),
        bc.OrderRule("fewest_contracts", "asc",
                     f"{PRIORITIZATION}; {CREATE_CREDIT_PARAMS} applicable_contract_ids ('If not "
                     "provided, the credit applies to all contracts')",
                     note="fewer applicable contracts first; no applicable_contract_ids = all "
                     "the customer's contracts, last. The page's sentence ('based on number of "
                     "contracts a commit is applicable …') is cut off in the copy read: the "
                     "direction follows its pattern for products ('fewest … first')"),
    ),
    documented_tie_break=False,
    scope_aware=True,
)
"""Metronome customer credits: priority; on a tie contract-level before customer-level (the
create-a-credit page); then the prioritization-rules page in its order (cost basis, product
applicability, usage applicability from the staging copy, ``ending_before``, ``starting_on``,
the number of contracts the credit applies to). A customer-level credit applies to the contracts
in ``applicable_contract_ids`` (``scope.contract_ids``), or to all of them when it has none
(``credit_create_params.py``), so that last rule does tell them apart. Nothing is documented
after it (the copy read is cut off there): ``documented_tie_break=False``, and the engine breaks
remaining ties by id and reports them."""


def _data(reply: Reply, what: str, provider: str) -> tuple[list[Mapping[str, Any]], str | None]:
    """A page's ``data`` (a list of objects) and its next cursor, or ``InvalidResponseError``
    with Metronome's request id."""
    items, cursor = page_of(provider, what, reply)
    if not all(isinstance(item, Mapping) for item in items):
        raise bc.InvalidResponseError(f"{what}: the answer has no list of objects in 'data'",
                                      provider=provider, status=200, body=bc.excerpt(reply.body),
                                      request_id=reply.request_id)
    return items, cursor


def _money(amount: Any, credit_type: Mapping[str, Any] | None,
           config: tr.TranslationConfig) -> bc.Money:
    return tr.money_from_vendor(amount, credit_type, config)


# -- metronome-plans -----------------------------------------------------------------------


def plans_balances(items: Iterable[Mapping[str, Any]], customer_id: str,
                   config: tr.TranslationConfig, now: datetime,
                   unit: str | None = None) -> list[bc.Balance]:
    """One ``Balance`` per credit type from ``listGrants`` items of one customer.

    A grant counts when it is effective now and not expired: its usable part is
    ``balance.excluding_pending``, its pending part the sum of its ``pending_deductions``.
    """
    rows: dict[str, list[tuple[bc.BalancePart, bc.Money, Mapping[str, Any]]]] = {}
    for item in items:
        with bc.reading_vendor_payload(config.provider, "listGrants item", item):
            effective = tr.parse_time(item["effective_at"])
            expires = tr.parse_time(item["expires_at"])
            if not effective <= now < expires:
                continue
            credit_type = item["grant_amount"].get("credit_type")
            usable = _money(item["balance"]["excluding_pending"], credit_type, config)
            pending = _money(bc.exact_sum(tr.to_decimal(e["amount"]).copy_abs()
                                          for e in item.get("pending_deductions") or ()),
                             credit_type, config)
            priority = tr.to_decimal(item["priority"]) if item.get("priority") is not None else None
            if unit is not None and usable.unit_key != unit and usable.currency != unit.upper():
                continue
            part = bc.BalancePart(grant_id=str(item["id"]), usable=usable, pending=pending,
                                  expires_at=tr._end(expires, config), priority=priority)
        rows.setdefault(usable.unit_key, []).append((part, usable, item))
    return [
        bc.Balance(
            customer_id=customer_id,
            usable=parts[0][1].with_amount(bc.exact_sum(p.usable.amount for p, _, _ in parts)),
            pending=parts[0][1].with_amount(bc.exact_sum(p.pending.amount for p, _, _ in parts)),
            parts=tuple(p for p, _, _ in parts),
            as_of=now,
            source="listGrants: balance.excluding_pending (posted deductions) per effective, "
                   "unexpired grant; pending = sum of pending_deductions",
            raw={"grants": [dict(item) for _, _, item in parts]},
        )
        for _, parts in sorted(rows.items())
    ]


def _plans_kind(entry: Mapping[str, Any], amount: Decimal) -> tuple[bc.LedgerKind, Decimal]:
    reason = str(entry.get("reason") or "").lower()
    if "expir" in reason:
        return bc.LedgerKind.EXPIRED, amount.copy_abs().copy_negate()
    if "deduction" in reason or (entry.get("invoice_id") and amount < 0):
        return bc.LedgerKind.CONSUMED, amount.copy_abs().copy_negate()
    if amount > 0 and ("grant" in reason or not reason):
        return bc.LedgerKind.GRANTED, amount
    return bc.LedgerKind.ADJUSTED, amount


def plans_entry(entry: Mapping[str, Any], customer_id: str, credit_type: Mapping[str, Any] | None,
                config: tr.TranslationConfig) -> bc.LedgerEntry:
    """A ``CreditLedgerEntry`` as a neutral entry.

    Kind from Metronome's ``reason``: an expiration → expired (−), an invoice deduction →
    consumed (−, reference: the invoice), a positive grant entry → granted (+), anything else
    adjusted with its own sign. An entry of the wrong shape is ``InvalidResponseError``
    (``bc.reading_vendor_payload``).
    """
    with bc.reading_vendor_payload(config.provider, "listEntries entry", entry):
        return _plans_entry(entry, customer_id, credit_type, config)


def _plans_entry(entry: Mapping[str, Any], customer_id: str,
                 credit_type: Mapping[str, Any] | None,
                 config: tr.TranslationConfig) -> bc.LedgerEntry:
    amount = tr.to_decimal(entry["amount"])
    kind, signed = _plans_kind(entry, amount)
    money = _money(signed, credit_type, config)
    running = entry.get("running_balance")
    invoice = entry.get("invoice_id")
    return bc.LedgerEntry(
        customer_id=customer_id,
        grant_id=str(entry["credit_grant_id"]) if entry.get("credit_grant_id") else None,
        kind=kind,
        amount=money,
        at=tr.parse_time(str(entry["effective_at"])),
        running_balance=None if running is None else _money(running, credit_type, config),
        reference=str(invoice) if invoice and kind is not bc.LedgerKind.GRANTED else None,
        raw=dict(entry),
    )


def plans_entries(data: Sequence[Mapping[str, Any]], customer_id: str,
                  config: tr.TranslationConfig, grant_id: str | None = None,
                  since: datetime | None = None) -> list[bc.LedgerEntry]:
    """The posted entries of a ``listEntries`` page for ``customer_id`` (one grant's only when
    ``grant_id`` is given; Metronome has no such filter)."""
    out = []
    for customer in data:
        with bc.reading_vendor_payload(config.provider, "listEntries customer", customer):
            if customer.get("customer_id") != customer_id:
                continue
            ledgers = [(ledger.get("credit_type"), list(ledger.get("entries") or ()))
                       for ledger in customer.get("ledgers") or ()]
        for credit_type, entries in ledgers:
            for entry in entries:
                with bc.reading_vendor_payload(config.provider, "listEntries entry", entry):
                    if grant_id is not None and entry.get("credit_grant_id") != grant_id:
                        continue
                read = plans_entry(entry, customer_id, credit_type, config)
                if since is None or read.at >= since:
                    out.append(read)
    return out


def _grant_type_edit(changes: Mapping[str, Any], current: bc.CreditGrant | None,
                     problems: list[bc.FieldProblem]) -> str | None:
    """The ``credit_grant_type`` to send for a category change, or None (with a problem) when
    Metronome would not read it back as asked."""
    category = changes.get("category", current.category if current is not None else None)
    if isinstance(category, str):
        category = bc.Category(category)
    label = changes.get("category_label",
                        current.category_label if current is not None else None)
    grant_type: str | None = label or (category.value if category is not None else None)
    if grant_type is None:
        problems.append(bc.FieldProblem("category", "editGrant cannot clear "
                                        f"credit_grant_type ({EDIT_GRANT_DOC})"))
        return None
    raw = (current.raw or {}) if current is not None else {}
    fields = {str(k): str(v) for k, v in (raw.get("custom_fields") or {}).items()}
    paid = current.paid_amount if current is not None else None
    read_back = tr._category_from(grant_type, paid, fields)
    if read_back != (category, label):
        why = (f"the grant's {tr.CATEGORY} custom field ({fields.get(tr.CATEGORY)}) decides its "
               "category on read-back and editGrant cannot change custom fields"
               if tr.CATEGORY in fields else
               "Metronome infers the category of a label from the paid amount")
        shown = read_back[0].value if read_back[0] is not None else "none"
        problems.append(bc.FieldProblem(
            "category", f"credit_grant_type {grant_type!r} would read back as category "
            f"{shown}, label {read_back[1]!r}: {why}; not edited"))
        return None
    return grant_type


def plans_edit_body(grant_id: str, update: bc.GrantUpdate, config: tr.TranslationConfig,
                    effective_at: datetime, current: bc.CreditGrant | None = None,
                    ) -> tuple[dict[str, Any], list[bc.Adjustment]]:
    """The ``editGrant`` body for ``update``, with the adjustments Metronome's time alignment
    makes; ``NotRepresentableError`` for what editGrant cannot change, and for a category
    change ``current`` (the grant as read) would not read back as asked."""
    changes = update.changes()
    problems = [bc.FieldProblem(name, "editGrant changes only name, expires_at and "
                                f"credit_grant_type (the category) ({EDIT_GRANT_DOC})")
                for name in sorted(set(changes) - PLANS_UPDATABLE)]
    body: dict[str, Any] = {"id": grant_id}
    adjustments: list[bc.Adjustment] = []
    if "name" in changes:
        name = changes["name"]
        if not name:
            problems.append(bc.FieldProblem("name", "Metronome requires a grant name"))
        else:
            body["name"] = name
    if "expires_at" in changes:
        expires = changes["expires_at"] or config.far_future
        if (found := tr.time_problem("expires_at", expires, config.alignment)) is not None:
            problems.append(found)
        else:
            expires = tr.align("expires_at", expires, end=True, alignment=config.alignment,
                                adjustments=adjustments)
            if expires <= effective_at:
                problems.append(bc.FieldProblem("expires_at", "must be after the grant starts"))
            body["expires_at"] = tr.format_time(expires)
    if "category" in changes or "category_label" in changes:
        grant_type = _grant_type_edit(changes, current, problems)
        if grant_type is not None:
            body["credit_grant_type"] = grant_type
    if problems:
        raise bc.NotRepresentableError(config.provider, problems)
    return body, adjustments


# -- metronome (customer credits) ----------------------------------------------------------


def _credits_only(items: Iterable[Mapping[str, Any]], provider: str) -> list[Mapping[str, Any]]:
    out = []
    for item in items:
        with bc.reading_vendor_payload(provider, "customerBalances item", item):
            if item.get("type") == "CREDIT":
                out.append(item)
    return out



def _credit_balances(customer_id: str, rows: Mapping[str, list[tuple[bc.BalancePart, bc.Money,
                                                                    Mapping[str, Any]]]],
                     as_of: datetime, source: str, notes: tuple[str, ...] = ()
                     ) -> list[bc.Balance]:
    """One ``Balance`` per unit from the customer credits' parts (Metronome reports no pending
    amount for them: 0), with ``notes`` saying what the figure includes."""
    return [
        bc.Balance(
            customer_id=customer_id,
            usable=parts[0][1].with_amount(bc.exact_sum(p.usable.amount for p, _, _ in parts)),
            pending=parts[0][1].with_amount(Decimal(0)),
            parts=tuple(p for p, _, _ in parts),
            as_of=as_of,
            source=source,
            notes=notes,
            raw={"credits": [dict(item) for _, _, item in parts]},
        )
        for _, parts in sorted(rows.items())
    ]

def credits_balances(items: Iterable[Mapping[str, Any]], customer_id: str,
                     config: tr.TranslationConfig, now: datetime,
                     unit: str | None = None) -> list[bc.Balance]:
    """One ``Balance`` per credit type from ``customerBalances/list`` items (credits only)."""
    rows: dict[str, list[tuple[bc.BalancePart, bc.Money, Mapping[str, Any]]]] = {}
    for item in _credits_only(items, config.provider):
        with bc.reading_vendor_payload(config.provider, "customerBalances item", item):
            schedule = item.get("access_schedule") or {}
            credit_type = schedule.get("credit_type")
            usable = _money(item.get("balance") or 0, credit_type, config)
            ends = [tr.parse_time(s["ending_before"]) for s in schedule.get("schedule_items") or ()]
            priority = tr.to_decimal(item["priority"]) if item.get("priority") is not None else None
            if unit is not None and usable.unit_key != unit and usable.currency != unit.upper():
                continue
            current = [e for e in ends if e > now]
            part = bc.BalancePart(
                grant_id=tr.credit_id(customer_id, str(item["id"])), usable=usable,
                expires_at=tr._end(min(current), config) if current else None, priority=priority)
        rows.setdefault(usable.unit_key, []).append((part, usable, item))
    return _credit_balances(customer_id, rows, now,
                            "customerBalances/list include_balance: balance (usable now) per "
                            "customer-level credit; pending not reported by Metronome (0)",
                            (MANUAL_INCLUDED,))


CREDIT_BALANCE_DOC = ("metronome-sdk types/shared/credit.py Credit.balance: 'All manual ledger "
                      "entries associated with active credit or commit segments are included in "
                      "the balance, including future-dated manual ledger entries'")
MANUAL_INCLUDED = ("includes every manual ledger entry of the credit, future-dated ones too, as "
                   f"Metronome's balance does ({CREDIT_BALANCE_DOC})")
MANUAL_EXCLUDED = ("excludes every ledger entry dated after as_of, manual ones too (Metronome's "
                   "own balance for now includes future-dated manual entries: "
                   f"{CREDIT_BALANCE_DOC})")


def _signed(entry: Mapping[str, Any]) -> Decimal:
    """A credit ledger entry's effect on the balance: deductions and expirations decrease it by
    ``|amount|``, a segment start adds it, any other entry keeps its own sign."""
    amount = tr.to_decimal(entry["amount"])
    kind = bc.LedgerKind(_CREDIT_KINDS.get(str(entry.get("type")), "adjusted"))
    if kind is bc.LedgerKind.GRANTED:
        return amount.copy_abs()
    if kind is bc.LedgerKind.ADJUSTED:
        return amount
    return amount.copy_abs().copy_negate()


def credits_balances_at(items: Iterable[Mapping[str, Any]], customer_id: str,
                        config: tr.TranslationConfig, at: datetime,
                        unit: str | None = None, now: datetime | None = None
                        ) -> list[bc.Balance]:
    """Balances as of ``at`` from ``customerBalances/list`` items with ledgers.

    Per credit: each segment open at ``at`` (``starting_at <= at < ending_before``) holds its
    amount plus its ledger entries up to ``at``; entries without a segment (manual ones) up to
    ``at`` count for the credit while one of its segments is open (none open: the credit holds
    0); never below zero, as Metronome's own balance. For a future
    ``at`` this is what is left if no more usage is recorded.

    Manual entries dated after ``at``: Metronome's balance "at this moment" includes them
    (``CREDIT_BALANCE_DOC``). So for ``at`` at or after ``now`` (the present or the future) they
    count too, and ``get_balance(c)`` and ``get_balance(c, at=now)`` agree; for a past ``at``
    they do not (they had not happened). Each balance says which in ``notes``.
    """
    future_manual = now is not None and at >= now
    rows: dict[str, list[tuple[bc.BalancePart, bc.Money, Mapping[str, Any]]]] = {}
    for item in _credits_only(items, config.provider):
        with bc.reading_vendor_payload(config.provider, "customerBalances item", item):
            schedule = item.get("access_schedule") or {}
            credit_type = schedule.get("credit_type")
            open_segments = {}
            for segment in schedule.get("schedule_items") or ():
                if tr.parse_time(segment["starting_at"]) <= at < tr.parse_time(
                        segment["ending_before"]):
                    open_segments[segment.get("id")] = segment
            changes = [tr.to_decimal(s["amount"]) for s in open_segments.values()]
            for entry in item.get("ledger") or ():
                if entry.get("type") == "CREDIT_SEGMENT_START":
                    continue
                if tr.parse_time(str(entry["timestamp"])) > at and not (
                        future_manual and entry.get("type") == "CREDIT_MANUAL"):
                    continue
                segment_id = entry.get("segment_id")
                # manual entries (no segment) count only while a segment is open: "expired and
                # upcoming ... segments contribute 0 ... manual ledger entries associated with
                # active credit or commit segments are included" (CREDIT_BALANCE_DOC)
                if (segment_id is None and open_segments) or segment_id in open_segments:
                    changes.append(_signed(entry))
            total = bc.exact_sum(changes)  # never rounded to the default 28 digits
            usable = _money(max(total, Decimal(0)), credit_type, config)
            ends = [tr.parse_time(s["ending_before"]) for s in open_segments.values()]
            priority = tr.to_decimal(item["priority"]) if item.get("priority") is not None else None
            if unit is not None and usable.unit_key != unit and usable.currency != unit.upper():
                continue
            part = bc.BalancePart(
                grant_id=tr.credit_id(customer_id, str(item["id"])), usable=usable,
                expires_at=tr._end(min(ends), config) if ends else None, priority=priority)
        rows.setdefault(usable.unit_key, []).append((part, usable, item))
    return _credit_balances(customer_id, rows, at,
                            "customerBalances/list covering_date + include_ledgers: each segment "
                            "open at the moment, with its ledger entries up to it; pending not "
                            "reported (0)",
                            (MANUAL_INCLUDED if future_manual else MANUAL_EXCLUDED,))


# Values of bc.LedgerKind (plain text: the models load on first use, not with the provider).
_CREDIT_KINDS: dict[str, str] = {
    "CREDIT_SEGMENT_START": "granted",
    "CREDIT_AUTOMATED_INVOICE_DEDUCTION": "consumed",
    "CREDIT_EXPIRATION": "expired",
}


def credit_entries(item: Mapping[str, Any], customer_id: str, config: tr.TranslationConfig,
                   since: datetime | None = None) -> list[bc.LedgerEntry]:
    """A credit's ``ledger`` (``Credit.ledger``) as neutral entries, in Metronome's order.

    ``CREDIT_SEGMENT_START`` → granted (+), ``CREDIT_AUTOMATED_INVOICE_DEDUCTION`` → consumed
    (−|amount|, reference: the invoice), ``CREDIT_EXPIRATION`` → expired (−|amount|); the other
    types (canceled, credited, manual, seat-based adjustment, rollover) → adjusted with their
    own sign. Metronome reports no running balance for credits.
    """
    with bc.reading_vendor_payload(config.provider, "customerBalances item", item):
        credit_type = (item.get("access_schedule") or {}).get("credit_type")
        grant_id = tr.credit_id(customer_id, str(item["id"]))
        ledger = list(item.get("ledger") or ())
    out = []
    for entry in ledger:
        with bc.reading_vendor_payload(config.provider, "credit ledger entry", entry):
            kind = bc.LedgerKind(_CREDIT_KINDS.get(str(entry.get("type")), "adjusted"))
            amount = tr.to_decimal(entry["amount"])
            if kind is bc.LedgerKind.GRANTED:
                amount = amount.copy_abs()
            elif kind is not bc.LedgerKind.ADJUSTED:
                amount = amount.copy_abs().copy_negate()
            invoice = entry.get("invoice_id")
            read = bc.LedgerEntry(
                customer_id=customer_id, grant_id=grant_id, kind=kind,
                amount=_money(amount, credit_type, config),
                at=tr.parse_time(str(entry["timestamp"])),
                reference=str(invoice) if invoice else None,
                raw=dict(entry),
            )
        if since is None or read.at >= since:
            out.append(read)
    return out


# -- flows -----------------------------------------------------------------------------------


@contextmanager
def _answered(reply: Reply) -> Iterator[None]:
    """An unreadable item of ``reply`` (``InvalidResponseError``) carries its request id."""
    try:
        yield
    except bc.InvalidResponseError as error:
        if error.request_id is None:
            error.request_id = reply.request_id
        if error.status is None:
            error.status = 200
        raise


class MetronomeCalls(Protocol):
    """What the flows need of a Metronome provider: its transport, translation settings and
    readers. The providers pass themselves; this module never imports them."""

    name: ClassVar[str]
    max_empty_pages: ClassVar[int]

    def listing_guard(self, what: str = ...) -> bc.ListingGuard: ...
    _http: MetronomeHTTP

    @property
    def config(self) -> tr.TranslationConfig: ...

    def _now(self) -> datetime: ...

    def _customer_page(self, customer_id: str, cursor: str | None) -> bc.Call[Reply]: ...

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]: ...


class CreditsCalls(MetronomeCalls, Protocol):
    """``MetronomeCalls`` plus the customer-credit id split (``customer/credit``)."""

    def _split(self, grant_id: str) -> tuple[str, str]: ...


def _follow(guard: bc.ListingGuard, cursor: str | None,
            found: list[Mapping[str, Any]], reply: Reply) -> str | None:
    """The next cursor of a paging loop inside one flow (None: done), through the core's
    ``ListingGuard``: a cursor seen before, empty pages in a row, items repeated under fresh
    cursors or the ``max_listing_pages`` ceiling end it with ``InvalidResponseError``."""
    ids = [item.get("id") if isinstance(item.get("id"), str) else None for item in found
           if isinstance(item, Mapping)]
    return guard.page(ids, cursor or None, request_id=reply.request_id, items=bool(found))


def _now_only(provider: str, at: datetime | None) -> None:
    if at is not None:
        raise bc.NotRepresentableError(provider, [bc.FieldProblem(
            "at", "Metronome reports balances as of now only")])


def plans_balance_flow(provider: MetronomeCalls, customer_id: str, unit: str | None,
                       at: datetime | None) -> bc.Flow[list[bc.Balance]]:
    _now_only(provider.name, at)
    items: list[Mapping[str, Any]] = []
    cursor: str | None = None
    guard = provider.listing_guard("Metronome listGrants")
    while True:
        page = yield provider._customer_page(customer_id, cursor)
        found, following = _data(page, "listGrants", provider.name)
        items += found
        cursor = _follow(guard, following, found, page)
        if cursor is None:
            break
    return plans_balances(items, customer_id, provider.config, provider._now(), unit)


def plans_ledger_flow(provider: MetronomeCalls, customer_id: str, grant_id: str | None,
                      since: datetime | None, cursor: str | None) -> bc.Flow[bc.LedgerPage]:
    body: dict[str, Any] = {"customer_ids": [customer_id]}
    if since is not None:
        body["starting_on"] = tr.format_time(since)
    query: dict[str, str | int] = {"sort": "asc"}
    if cursor:
        query["next_page"] = cursor
    page = yield provider._http.call(LIST_ENTRIES, body, query=query, label="listEntries")
    found, following = _data(page, "listEntries", provider.name)
    with _answered(page):
        entries = plans_entries(found, customer_id, provider.config, grant_id, since)
    return bc.LedgerPage(entries, following, request_id=page.request_id)


def plans_update_flow(provider: MetronomeCalls, grant_id: str,
                      update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
    grant = yield from provider._get(grant_id)
    assert grant.effective_at is not None
    body, adjustments = plans_edit_body(grant_id, update, provider.config, grant.effective_at,
                                        grant)
    if len(body) > 1:
        yield provider._http.call(EDIT_GRANT, body, label="editGrant")
    read = yield from provider._get(grant_id)
    return read.model_copy(update={"adjustments": tuple(adjustments)})


def _balances_body(customer_id: str, cursor: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"customer_id": customer_id, "limit": BALANCES_PAGE_MAX, **extra}
    if cursor:
        body["next_page"] = cursor  # customerBalances/list takes its cursor in the body
    return body


def credits_balance_flow(provider: CreditsCalls, customer_id: str,
                         unit: str | None, at: datetime | None) -> bc.Flow[list[bc.Balance]]:
    """Now: Metronome's ``balance``. Another moment: ``covering_date`` and the ledgers."""
    extra: dict[str, Any] = {"include_balance": True}
    if at is not None:
        extra = {"include_ledgers": True, "covering_date": tr.format_time(at)}
    items: list[Mapping[str, Any]] = []
    cursor: str | None = None
    guard = provider.listing_guard("Metronome customerBalances/list")
    while True:
        page = yield provider._http.call(
            LIST_BALANCES, _balances_body(customer_id, cursor, **extra),
            label="customerBalances/list")
        found, following = _data(page, "customerBalances/list", provider.name)
        items += found
        cursor = _follow(guard, following, found, page)
        if cursor is None:
            break
    if at is not None:
        return credits_balances_at(items, customer_id, provider.config, at, unit,
                                   now=provider._now())
    return credits_balances(items, customer_id, provider.config, provider._now(), unit)


def credits_ledger_flow(provider: CreditsCalls, customer_id: str,
                        grant_id: str | None, since: datetime | None,
                        cursor: str | None) -> bc.Flow[bc.LedgerPage]:
    extra: dict[str, Any] = {"include_ledgers": True}
    if grant_id is not None:
        customer, credit = provider._split(grant_id)
        if customer != customer_id:
            return bc.LedgerPage([], None)
        extra["id"] = credit
    page = yield provider._http.call(LIST_BALANCES, _balances_body(customer_id, cursor, **extra),
                                     label="customerBalances/list")
    found, following = _data(page, "customerBalances/list", provider.name)
    with _answered(page):
        entries = [e for item in _credits_only(found, provider.name)
                   for e in credit_entries(item, customer_id, provider.config, since)]
    return bc.LedgerPage(entries, following, request_id=page.request_id)


def credits_update_flow(provider: CreditsCalls, grant_id: str,
                        update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
    changes = update.changes()
    config = provider.config
    problems = [bc.FieldProblem(name, "updateEndDate changes only the end date")
                for name in sorted(set(changes) - CREDITS_UPDATABLE)]
    if problems:
        raise bc.NotRepresentableError(provider.name, problems)
    customer, credit = provider._split(grant_id)
    grant = yield from provider._get(grant_id)
    if "expires_at" not in changes:
        return grant
    wanted = changes["expires_at"] or config.far_future
    if (found := tr.time_problem("expires_at", wanted, config.alignment)) is not None:
        raise bc.NotRepresentableError(provider.name, [found])
    adjustments: list[bc.Adjustment] = []
    end = tr.align("expires_at", wanted, end=True, alignment=config.alignment,
                    adjustments=adjustments)
    current = grant.segments[-1].ends_before or config.far_future
    if end > current:
        raise bc.NotRepresentableError(provider.name, [bc.FieldProblem(
            "expires_at", f"updateEndDate can only shorten a credit (it ends "
            f"{tr.format_time(current)})")])
    if end <= grant.segments[0].starts_at:
        raise bc.NotRepresentableError(provider.name, [bc.FieldProblem(
            "expires_at", "must be after the credit starts")])
    if end != current:
        yield provider._http.call(UPDATE_END_DATE, {
            "customer_id": customer, "credit_id": credit,
            "access_ending_before": tr.format_time(end)}, label="customerCredits/updateEndDate")
    read = yield from provider._get(grant_id)
    return read.model_copy(update={"adjustments": tuple(adjustments)})
