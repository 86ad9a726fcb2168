"""What a ``listGrants`` item says is left of a grant, and the summary of its balances and
deductions a read keeps in ``raw["_summary"]`` (pure; no I/O).

Split from ``_translate`` (by concept): Metronome's balance fields by their documented meaning
(``grant_balance``), its ledger entries added up exactly (``ledger_summary``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from ._wire import _EPOCH, exact_total, parse_time, to_decimal

__all__ = ["grant_balance", "ledger_summary", "number_text", "pending_total", "period_end"]


_SMALL_INT = 10**100
"""Integers below this in size add up exactly in ``bc.shared_exact_context()`` (160 digits) in any number a
listing holds, so their ``int`` sum is the exact sum."""


def ledger_summary(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    if not entries:  # the common case, an empty list: nothing to add up
        return {"count": 0, "amount": "0", "invoice_ids": []}
    listed = entries if type(entries) is list else list(entries)
    whole: int | None = 0
    invoices = []
    for entry in listed:  # (one loop: whole-number amounts added up, invoices collected)
        amount = entry.get("amount", 0)
        if whole is not None:
            if type(amount) is int and -_SMALL_INT < amount < _SMALL_INT:
                whole += amount
            else:
                whole = None
        invoice = entry.get("invoice_id")
        if invoice:
            invoices.append(invoice)
    if whole is None:  # a fraction or a huge number: added up exactly
        total = str(exact_total([to_decimal(e.get("amount", 0)) for e in listed]))
    else:
        total = str(whole)  # whole numbers far inside 160 digits: the same text
    return {
        "count": len(listed),
        "amount": total,
        "invoice_ids": sorted({str(i) for i in invoices}) if invoices else [],
    }


def pending_total(entries: Any) -> Decimal | None:
    """What the listed pending deductions will take, or None when that is not known.

    A ``CreditLedgerEntry.amount`` is "an amount representing the change to the customer's
    credit balance" (``metronome/types/v1/credit_ledger_entry.py``); the docs' example writes a
    deduction as a positive 20 (seed003). Either way a deduction takes its magnitude.
    """
    if not isinstance(entries, list):
        return None
    amounts = []
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("amount") is None:
            return None
        amounts.append(to_decimal(entry["amount"]).copy_abs())
    return exact_total(amounts)  # never rounded to the default 28 digits


_ZERO = Decimal(0)


_LAST_PERIOD_END: list[tuple[str, datetime]] = [("", _EPOCH)]


def period_end(text: str) -> datetime:
    """``parse_time`` of a balance's ``effective_at``, the end of the customer's billing
    period: the same text on every grant of a customer's page, so the last one is kept."""
    last = _LAST_PERIOD_END[0]
    if last[0] == text:
        return last[1]
    moment = parse_time(text)
    _LAST_PERIOD_END[0] = (text, moment)
    return moment


def grant_balance(item: Mapping[str, Any], *, expires_at: datetime,
                  now: datetime) -> tuple[Decimal | None, str]:
    """The neutral balance of a ``listGrants`` item, in its credit type's unit, and the rule used.

    Neutral meaning: what the customer can still use, now or in windows to come; credit
    already consumed by usage counts zero, whether its deduction is posted or still pending on
    a draft invoice. Metronome's fields, by their documented meaning
    (``CreditGrantListResponse.Balance`` in ``metronome/types/v1/credit_grant_list_response.py``;
    https://docs.metronome.com/api-reference/credit-grants/list-credit-grants):

    - ``balance`` is "the effective balance of the grant as of the end of the customer's
      current billing period" (``effective_at``, "the end_date of the customer's current
      billing period"); "expiration deductions will be included only if the grant expires
      before the end of the current billing period";
    - ``excluding_pending``: "the grant's current balance including all posted deductions. If
      the grant has expired, this amount will be 0";
    - ``including_pending``: "... including all posted and pending deductions. If the grant
      expires before the end of the customer's current billing period, this amount will be 0".

    So:

    - expired (``now >= expires_at``): 0;
    - the grant outlives the billing period (``expires_at`` after ``balance.effective_at``):
      ``including_pending``, Metronome's own figure for "posted and pending deductions taken";
    - the grant expires within the period: ``including_pending`` is 0 by the rule above (the
      expiration is counted as a deduction), which says nothing about what is usable until
      then. The balance is ``excluding_pending`` minus the pending deductions listed on the
      grant (``pending_deductions``: usage already incurred, which the draft invoice will take),
      never below 0. When the pending deductions are not given, nothing is certain to be
      taken: ``excluding_pending``.

    None when the item has no balance (``balance.excluding_pending`` missing).
    """
    data = item.get("balance")
    if now >= expires_at:
        return Decimal(0), "expired"
    if not (type(data) is dict or isinstance(data, Mapping)) \
            or data.get("excluding_pending") is None:
        return None, "no balance"
    posted = data["excluding_pending"]
    including = data.get("including_pending")
    ends = data.get("effective_at")  # the end of the customer's billing period
    if including is not None and type(ends) is str and expires_at > period_end(ends):
        usable = Decimal(including) if type(including) is int else to_decimal(including)
        return (_ZERO if usable < 0 else usable), "including_pending"  # max(usable, 0)
    posted = Decimal(posted) if type(posted) is int else to_decimal(posted)
    pending = pending_total(item.get("pending_deductions"))
    if pending is None:
        return max(posted, Decimal(0)), "excluding_pending (pending deductions not listed)"
    return max(exact_total((posted, pending.copy_negate())), Decimal(0)), \
        "excluding_pending - pending_deductions"


def number_text(value: Any) -> str | None:
    """A vendor number's exact decimal text (None for None)."""
    if type(value) is int:  # the common case: the decimal text of an int is its own
        return str(value)
    return None if value is None else str(to_decimal(value))
