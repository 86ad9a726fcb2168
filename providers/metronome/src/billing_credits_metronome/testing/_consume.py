"""Usage for ``MetronomeFake``: credits burnt in Metronome's order, and the ledgers Metronome
would show for them.

v1 credit grants (Plans): ``consume_grants`` draws usage from the customer's grants by
``priority`` (lower first) and, on a tie, the grant expiring sooner
(https://docs.metronome.com/invoicing/how-billing-works/manage-credits/). That page goes on with
a rule for equal priority and expiry ("If two credit grants h…") whose text could not be read in
any copy consulted, so the fake takes the grant id there (``_ledger.PLANS_UNREAD``). A grant
with ``product_ids`` pays only for those products. Each draw is a deduction on the grant
(``listGrants`` ``deductions`` /
``pending_deductions``, amounts as positive numbers with the grant's running balance, as in
Metronome's ``listGrants`` example) and an entry of ``POST /v1/credits/listEntries``
(``CreditGrantListEntriesResponse``: per customer, one ledger per credit type, ``entries`` with
``amount`` "the change to the customer's credit balance" (negative for a deduction or an
expiration) and ``running_balance`` for the credit type; ``starting_balance`` and
``ending_balance``; ``pending_entries``; entries of voided grants left out).
``CreditGrantListEntriesParams``: ``starting_on`` inclusive, ``ending_before`` "must not be in
the future" (400) and defaults to the start of the next billing period, ``sort`` ``asc``
(default) or ``desc``, cursor ``next_page`` in the query and no ``limit``; the fake answers in
one page.

Contract customer credits: ``consume_credits`` applies Metronome's prioritisation rules
(https://docs.metronome.com/pricing-packaging/apply-credits-commits/prioritization-rules):
``priority`` (lower first), contract-level before customer-level (the fake holds customer-level
credits only), $0 cost basis first (credits are all free), fewer applicable products, earlier
``ending_before``, earlier ``starting_at``, fewer applicable contracts (a credit without
``applicable_contract_ids`` applies to all contracts, "If not provided, the credit applies to
all contracts", ``types/v1/customers/credit_create_params.py``: last); then the credit id (the
fake's choice). Usage draws on the segment active at its time, and on a credit with
``applicable_contract_ids`` only when billed under one of them (``contract_id``). Credits scoped
by product tags or specifiers are never drawn: a usage record here carries a product id and a
contract id only, nothing to match tags or group values against (the engine's ``admits`` says
the same), so the usage-applicability rule (group-value specifiers, staging copy of the
prioritization page) never decides a draw here. Each draw is a
``CREDIT_AUTOMATED_INVOICE_DEDUCTION`` in ``Credit.ledger``
(after ``CREDIT_SEGMENT_START``; ``CREDIT_EXPIRATION`` for what a segment had left when it
ended), read through ``POST /v1/contracts/customerBalances/list``
(``ContractListBalancesParams``; items are ``Credit``/``Commit``; ``limit`` defaults to 25 and
the cursor is in the body).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from billing_credits_metronome._translate import USD_CENTS, format_time, parse_time, to_decimal

from ._state import FakeState, _bad, _Credit, _Grant

__all__ = [
    "LIST_BALANCES",
    "LIST_BALANCES_FIELDS",
    "LIST_ENTRIES",
    "LIST_ENTRIES_FIELDS",
    "LIST_ENTRIES_QUERY",
    "add_manual_entry",
    "consume_credits",
    "consume_grants",
    "list_balances",
    "list_entries",
]

LIST_ENTRIES = "/v1/credits/listEntries"
LIST_ENTRIES_FIELDS = frozenset({"credit_type_ids", "customer_ids", "ending_before",
                                 "starting_on"})
LIST_ENTRIES_QUERY = frozenset({"next_page", "sort"})
LIST_BALANCES = "/v1/contracts/customerBalances/list"
LIST_BALANCES_FIELDS = frozenset({
    "customer_id", "id", "access_type", "covering_date", "effective_before",
    "exclude_zero_balances", "include_archived", "include_balance", "include_contract_balances",
    "include_ledgers", "limit", "next_page", "starting_at",
})

def _at(fake: FakeState, at: datetime | None) -> datetime:
    return (fake.clock() if at is None else at).astimezone(UTC)


# -- v1 credit grants ---------------------------------------------------------------

def _grant_used(fake: FakeState, grant: _Grant) -> Decimal:
    return sum((to_decimal(e["amount"]) for e in grant.deductions + grant.pending),
               Decimal(0))

def consume_grants(fake: FakeState, customer_id: str, amount: Decimal | int, *,
                   credit_type: str = USD_CENTS, product_id: str | None = None,
                   at: datetime | None = None, invoice_id: str | None = None,
                   pending: bool = False) -> list[dict[str, Any]]:
    """Draw ``amount`` (in the credit type's unit) from the customer's v1 grants in
    Metronome's order; return the deductions made. ``pending``: on a draft invoice
    (``pending_deductions``). What no grant can pay is left to the invoice."""
    moment = _at(fake, at)
    invoice = invoice_id or str(uuid.uuid4())
    usable = []
    for grant in fake.grants.values():
        item = grant.item
        if grant.voided or item["customer_id"] != customer_id:
            continue
        if item["grant_amount"]["credit_type"]["id"] != credit_type:
            continue
        if not parse_time(item["effective_at"]) <= moment < parse_time(item["expires_at"]):
            continue
        products = [p["id"] for p in item.get("products") or ()]
        if products and product_id not in products:
            continue
        usable.append(grant)
    usable.sort(key=lambda g: (to_decimal(g.item["priority"]),
                               parse_time(g.item["expires_at"]), g.item["id"]))
    left = Decimal(amount)
    made = []
    for grant in usable:
        if left <= 0:
            break
        used = _grant_used(fake, grant)
        take = min(left, grant.amount - used)
        if take <= 0:
            continue
        entry = {
            "amount": take, "reason": "Automated invoice deduction",
            "running_balance": grant.amount - used - take,
            "effective_at": format_time(moment), "created_by": "Metronome System",
            "credit_grant_id": grant.item["id"], "invoice_id": invoice,
        }
        (grant.pending if pending else grant.deductions).append(entry)
        fake.grant_draws.append(entry)
        made.append(entry)
        left -= take
    return made

def _grant_events(fake: FakeState, grant: _Grant,
                  now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(posted, pending) ledger entries of one grant (``_seq``: the order of draws)."""
    item = grant.item
    effective = parse_time(item["effective_at"])
    expires = parse_time(item["expires_at"])
    posted: list[dict[str, Any]] = []
    if effective <= now:
        granted = {"amount": grant.amount, "created_by": "Metronome System",
                   "credit_grant_id": item["id"], "effective_at": item["effective_at"],
                   "reason": "Credit grant"}
        if item.get("invoice_id"):
            granted["invoice_id"] = item["invoice_id"]
        posted.append(granted)
    order = {id(e): i for i, e in enumerate(fake.grant_draws)}
    posted += [{**e, "amount": -to_decimal(e["amount"]), "_seq": order.get(id(e), -1)}
               for e in grant.deductions]
    used = sum((to_decimal(e["amount"]) for e in grant.deductions), Decimal(0))
    if expires <= now and grant.amount - used > 0:
        posted.append({"amount": -(grant.amount - used), "created_by": "Metronome System",
                       "credit_grant_id": item["id"], "effective_at": item["expires_at"],
                       "reason": "Credit grant expiration"})
    pending = [{**e, "amount": -to_decimal(e["amount"])} for e in grant.pending]
    return posted, pending

def list_entries(fake: FakeState, query: dict[str, str], body: dict[str, Any]) -> Any:
    fake._fields(query, LIST_ENTRIES_QUERY, where="query ")
    fake._fields(body, LIST_ENTRIES_FIELDS)
    if query.get("next_page") is not None:
        fake._offset(query["next_page"])
    sort = query.get("sort", "asc")
    if sort not in ("asc", "desc"):
        raise _bad("sort must be asc or desc")
    now = fake.clock()
    customers = fake._strings(body["customer_ids"], "customer_ids") if body.get(
        "customer_ids") is not None else None
    types = fake._strings(body["credit_type_ids"], "credit_type_ids") if body.get(
        "credit_type_ids") is not None else None
    starting = fake._time(body["starting_on"], "starting_on", hour=False) if body.get(
        "starting_on") is not None else None
    ending = parse_time(fake._period_end())
    if body.get("ending_before") is not None:
        ending = fake._time(body["ending_before"], "ending_before", hour=False)
        if ending > now:
            raise _bad("ending_before must not be in the future")
    ledgers: dict[str, dict[str, list[Any]]] = {}
    for grant in fake.grants.values():
        item = grant.item
        if grant.voided or (customers is not None and item["customer_id"] not in customers):
            continue
        type_id = item["grant_amount"]["credit_type"]["id"]
        if types is not None and type_id not in types:
            continue
        posted, pending = _grant_events(fake, grant, now)
        slot = ledgers.setdefault(item["customer_id"], {}).setdefault(type_id, [[], []])
        slot[0] += posted
        slot[1] += pending
    data = []
    for customer, by_type in ledgers.items():
        out = []
        for type_id, (posted, pending) in by_type.items():
            posted.sort(key=lambda e: (parse_time(e["effective_at"]), e["amount"] < 0,
                                       e.get("_seq", -1)))
            running = Decimal(0)
            before = Decimal(0)
            entries = []
            for entry in posted:
                running += entry["amount"]
                moment = parse_time(entry["effective_at"])
                if moment >= ending:
                    continue
                if starting is not None and moment < starting:
                    before = running
                    continue
                entries.append({**{k: v for k, v in entry.items() if k != "_seq"},
                                "running_balance": running})
            end_balance = entries[-1]["running_balance"] if entries else before
            waiting = sum((e["amount"] for e in pending), Decimal(0))
            first = min((parse_time(g.item["effective_at"]) for g in fake.grants.values()
                         if g.item["customer_id"] == customer), default=now)
            pending_entries = [{**e, "running_balance": end_balance} for e in pending]
            if sort == "desc":
                entries.reverse()
            out.append({
                "credit_type": {"id": type_id, "name": fake.credit_types[type_id]},
                "starting_balance": {
                    "effective_at": format_time(starting or first),
                    "excluding_pending": before, "including_pending": before},
                "ending_balance": {
                    "effective_at": format_time(ending),
                    "excluding_pending": end_balance,
                    "including_pending": end_balance + waiting},
                "entries": entries,
                "pending_entries": pending_entries,
            })
        data.append({"customer_id": customer, "ledgers": out})
    return {"data": data, "next_page": None}

# -- contract customer credits --------------------------------------------------------------

def _segment_used(fake: FakeState, credit_id: str, segment_id: str) -> Decimal:
    return sum((-to_decimal(e["amount"]) for e in fake.credit_ledgers.get(credit_id, ())
                if e.get("segment_id") == segment_id), Decimal(0))

def consume_credits(fake: FakeState, customer_id: str, amount: Decimal | int, *,
                    credit_type: str = USD_CENTS, product_id: str | None = None,
                    at: datetime | None = None, invoice_id: str | None = None,
                    contract_id: str | None = None) -> list[dict[str, Any]]:
    """Draw ``amount`` (in the credit type's unit) from the customer's credits in
    Metronome's prioritisation order; return the ledger entries made. ``contract_id``: the
    contract the usage is billed under. What no credit can pay is left to the invoice."""
    moment = _at(fake, at)
    invoice = invoice_id or str(uuid.uuid4())
    candidates = []
    for credit_id, credit in fake.credits.items():
        item = credit.item
        if credit.customer_id != customer_id or credit.archived:
            continue
        if item["access_schedule"]["credit_type"]["id"] != credit_type:
            continue
        if item.get("applicable_product_tags") or item.get("specifiers"):
            continue
        products = item.get("applicable_product_ids") or []
        if products and product_id not in products:
            continue
        contracts = item.get("applicable_contract_ids") or []
        if contracts and contract_id not in contracts:
            continue
        candidates += [
            (credit_id, credit, segment, products) for segment in credit.segments
            if parse_time(segment["starting_at"]) <= moment < parse_time(segment["ending_before"])]
    # prioritization-rules: priority, contract-level first, cost basis, fewest products,
    # ending_before, starting_on, "number of contracts a commit is applicable" (fewest first,
    # all contracts last); then the credit id (the fake's choice, not documented).
    candidates.sort(key=lambda c: (
        to_decimal(c[1].item["priority"]), 0 if c[1].item.get("contract") else 1, 0,
        len(c[3]) if c[3] else float("inf"), parse_time(c[2]["ending_before"]),
        parse_time(c[2]["starting_at"]),
        len(c[1].item.get("applicable_contract_ids") or ()) or float("inf"), c[0]))
    left = Decimal(amount)
    made = []
    for credit_id, _credit, segment, _ in candidates:
        if left <= 0:
            break
        take = min(left, segment["amount"] - _segment_used(fake, credit_id, segment["id"]))
        if take <= 0:
            continue
        entry = {"amount": -take, "invoice_id": invoice, "segment_id": segment["id"],
                 "timestamp": format_time(moment),
                 "type": "CREDIT_AUTOMATED_INVOICE_DEDUCTION"}
        fake.credit_ledgers.setdefault(credit_id, []).append(entry)
        made.append(entry)
        left -= take
    return made

def _credit_ledger(fake: FakeState, credit: _Credit, now: datetime) -> list[dict[str, Any]]:
    """``Credit.ledger`` now: segment starts, deductions, expirations, by time."""
    credit_id = credit.item["id"]
    events: list[dict[str, Any]] = []
    for segment in credit.segments:
        if parse_time(segment["starting_at"]) <= now:
            events.append({"type": "CREDIT_SEGMENT_START", "amount": segment["amount"],
                           "segment_id": segment["id"], "timestamp": segment["starting_at"]})
        left = segment["amount"] - _segment_used(fake, credit_id, segment["id"])
        if parse_time(segment["ending_before"]) <= now and left > 0:
            events.append({"type": "CREDIT_EXPIRATION", "amount": -left,
                           "segment_id": segment["id"],
                           "timestamp": segment["ending_before"]})
    events += fake.credit_ledgers.get(credit_id, [])
    rank = {"CREDIT_SEGMENT_START": 0, "CREDIT_AUTOMATED_INVOICE_DEDUCTION": 1,
            "CREDIT_EXPIRATION": 2}
    return sorted(events, key=lambda e: (parse_time(e["timestamp"]), rank.get(e["type"], 1)))

def add_manual_entry(fake: FakeState, credit_id: str, amount: Decimal | int, timestamp: datetime,
                     reason: str = "manual adjustment") -> dict[str, Any]:
    """A manual ledger entry on a customer credit (``LedgerCreditManualLedgerEntry``:
    ``amount``, ``reason``, ``timestamp``, ``type: CREDIT_MANUAL``, no segment;
    metronome-sdk ``types/shared/credit.py``), dated ``timestamp``, possibly in the future."""
    entry = {"amount": Decimal(amount), "reason": reason, "timestamp": format_time(timestamp),
             "type": "CREDIT_MANUAL"}
    fake.credit_ledgers.setdefault(credit_id, []).append(entry)
    return entry

def _credit_balance(fake: FakeState, credit: _Credit, now: datetime) -> Decimal:
    """``Credit.balance``: usable at this moment (expired and future segments count 0).

    Manual entries count whatever their date: "All manual ledger entries associated with active
    credit or commit segments are included in the balance, including future-dated manual
    ledger entries", and when negative manual entries exceed what is left "the balance will be
    0" (metronome-sdk ``types/shared/credit.py`` ``Credit.balance``)."""
    active = [s for s in credit.segments
              if parse_time(s["starting_at"]) <= now < parse_time(s["ending_before"])]
    usable = sum((s["amount"] - _segment_used(fake, credit.item["id"], s["id"]) for s in active),
                 Decimal(0))
    if active:
        usable += sum((to_decimal(e["amount"]) for e in fake.credit_ledgers.get(
            credit.item["id"], ()) if e.get("type") == "CREDIT_MANUAL"), Decimal(0))
    return max(usable - credit.deducted, Decimal(0))

def list_balances(fake: FakeState, query: dict[str, str], body: dict[str, Any]) -> Any:
    fake._fields(body, LIST_BALANCES_FIELDS, ("customer_id",))
    customer = fake._uuid(body["customer_id"], "customer_id")
    limit = fake._limit(body.get("limit"), 25, 25)
    offset = fake._offset(body.get("next_page"))
    for flag in ("exclude_zero_balances", "include_archived", "include_balance",
                 "include_contract_balances", "include_ledgers"):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            raise _bad(f"{flag} must be a boolean")
    if body.get("access_type") not in (None, "SPEND", "QUANTITY"):
        raise _bad("access_type must be SPEND or QUANTITY")
    times = {name: fake._time(body[name], name, hour=False)
             for name in ("covering_date", "effective_before", "starting_at")
             if body.get(name) is not None}
    now = fake.clock()
    selected = []
    for credit_id, credit in fake.credits.items():
        if credit.customer_id != customer:
            continue
        if body.get("id") is not None and credit_id != body["id"]:
            continue
        if credit.archived and not body.get("include_archived"):
            continue
        access = credit.item["access_schedule"].get("access_type", "SPEND")
        if body.get("access_type") is not None and access != body["access_type"]:
            continue
        windows = [(parse_time(s["starting_at"]), parse_time(s["ending_before"]))
                   for s in credit.segments]
        if "covering_date" in times and not any(
                a <= times["covering_date"] < b for a, b in windows):
            continue
        if "starting_at" in times and not any(b > times["starting_at"] for _, b in windows):
            continue
        if "effective_before" in times and not any(
                a < times["effective_before"] for a, _ in windows):
            continue
        if body.get("exclude_zero_balances") and _credit_balance(fake, credit, now) == 0:
            continue
        selected.append(fake._credit_view(credit, balance=bool(body.get("include_balance")),
                                          ledgers=bool(body.get("include_ledgers"))))
    more = offset + limit < len(selected)
    return {"data": selected[offset:offset + limit],
            "next_page": f"cursor_{offset + limit:x}" if more else None}

