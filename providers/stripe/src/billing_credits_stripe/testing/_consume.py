"""Usage for ``StripeFake``: credits applied in Stripe's order, and the credit balance
transactions Stripe would show for them.

Stripe applies billing credits to invoices for metered prices
(https://docs.stripe.com/billing/subscriptions/usage-based/billing-credits/implementation-guide:
"Billing credits only apply to subscription line items that link to a meter price"); grants are
evaluated in ``priority`` order, 0 first, 100 last, unset read as 50
(``stripe/billing/_credit_grant.py``; https://docs.stripe.com/changelog/acacia/2025-02-24/billing-credits-priority).
Stripe documents no order between grants of equal priority: the fake takes the grant id, and
says so (``billing_credits_stripe._ledger.STRIPE_ORDER`` declares no documented tie-break).

Transactions have the shape of ``stripe.billing.CreditBalanceTransaction``
(``stripe/billing/_credit_balance_transaction.py``): ``type`` ``credit`` (``credits_granted``)
or ``debit`` (``credits_applied`` with ``invoice`` and ``invoice_line_item``,
``credits_expired``, ``credits_voided``), amounts as ``{"type": "monetary", "monetary":
{"currency", "value"}}`` with a positive ``value``. The list (``GET
/v1/billing/credit_balance_transactions``) is newest first, ``limit`` 1-100 (default 10),
``starting_after``/``ending_before`` (``CreditBalanceTransactionListParams``), and the fake
requires ``customer`` or ``customer_account``: the SDK marks both optional, the API reference's
example (https://docs.stripe.com/api/billing/credit-balance-transaction/list) always names the
customer, and what Stripe answers without one is not documented in the sources read. The
shapes match that page's example response.

Which transactions exist is derived from the grants' state when asked: ``credits_granted``
once a grant is effective, one ``credits_applied`` per draw, ``credits_voided`` (what was left
when it was voided) or ``credits_expired`` (what was left when it expired). Ids are stable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Protocol

from ._checks import StripeError, _integer, _invalid, _missing, _string, _unknown

__all__ = ["TRANSACTIONS", "consume", "transaction_route", "transactions"]

TRANSACTIONS = "/v1/billing/credit_balance_transactions"
_ONE_TRANSACTION = re.compile(r"^/v1/billing/credit_balance_transactions/([^/]+)$")
DEFAULT_PRIORITY = 50


class FakeState(Protocol):
    """What usage needs of ``StripeFake`` (its state), so this module does not import the fake."""

    grants: dict[str, dict[str, Any]]
    consumed: dict[str, int]
    applied: list[dict[str, Any]]

    def clock(self) -> int: ...

    def grant_now(self, grant: Mapping[str, Any]) -> int: ...

    def customer_now(self, customer: str | None) -> int: ...

    def expiry_committed(self, grant: Mapping[str, Any]) -> bool: ...

    def _id(self, prefix: str) -> str: ...


def _stable_id(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return prefix + digest[:24]


def _money(currency: str, value: int) -> dict[str, Any]:
    return {"monetary": {"currency": currency, "value": value}, "type": "monetary"}


# -- usage (bound as StripeFake.consume) ----------------------------------------------

def consume(fake: FakeState, target: str, value: int, *, price: str | None = None,
            at: int | None = None, invoice: str | None = None) -> list[dict[str, Any]]:
    """Apply ``value`` minor units of usage; return the ``credits_applied`` transactions.

    ``target`` a grant id: draw from that grant only (as an invoice would). ``target`` a
    customer id: draw from the customer's grants in Stripe's order (priority, then grant
    id), each only as far as it has credit left, skipping grants not effective at ``at``
    (default: the fake's clock, or the customer's test clock's ``frozen_time``: a grant and its
    transactions belong to the clock, ``stripe/billing/_credit_grant.py`` ``test_clock``),
    expired, voided, or whose scope does not hold ``price``
    (``price_type=metered`` holds every metered price; ``price=None`` is a metered price
    not listed by any grant). Usage no grant can pay is left to the invoice: not drawn.
    """
    invoice_id = invoice or fake._id("in_")
    if target in fake.grants:
        moment = fake.grant_now(fake.grants[target]) if at is None else at
        return [_draw(fake, fake.grants[target], value, moment, invoice_id)]
    moment = fake.customer_now(target) if at is None else at
    left = value
    drawn = []
    for grant in _usable(fake, target, price, moment):
        if left <= 0:
            break
        take = min(left, _left(fake, grant))
        if take > 0:
            drawn.append(_draw(fake, grant, take, moment, invoice_id))
            left -= take
    return drawn

def _usable(fake: FakeState, customer: str, price: str | None,
            at: int) -> list[dict[str, Any]]:
    found = []
    for grant in fake.grants.values():
        if customer not in (grant["customer"], grant["customer_account"]):
            continue
        start = grant["effective_at"] if grant["effective_at"] is not None else grant["created"]
        if grant["voided_at"] is not None or start > at:
            continue
        if grant["expires_at"] is not None and grant["expires_at"] <= at:
            continue
        scope = grant["applicability_config"]["scope"]
        if scope.get("price_type") != "metered" and price not in [
                p["id"] for p in scope.get("prices") or ()]:
            continue
        found.append(grant)
    return sorted(found, key=lambda g: (
        DEFAULT_PRIORITY if g.get("priority") is None else g["priority"], g["id"]))

def _left(fake: FakeState, grant: Mapping[str, Any]) -> int:
    return max(int(grant["amount"]["monetary"]["value"]) - fake.consumed.get(grant["id"], 0), 0)

def _draw(fake: FakeState, grant: dict[str, Any], value: int, at: int,
          invoice: str) -> dict[str, Any]:
    fake.consumed[grant["id"]] = fake.consumed.get(grant["id"], 0) + value
    currency = grant["amount"]["monetary"]["currency"]
    record = {
        "id": fake._id("cbtxn_"), "object": "billing.credit_balance_transaction",
        "created": fake.clock(), "credit": None, "credit_grant": grant["id"],
        "debit": {"amount": _money(currency, value),
                  "credits_applied": {"invoice": invoice,
                                      "invoice_line_item": fake._id("il_")},
                  "type": "credits_applied"},
        "effective_at": at, "livemode": grant["livemode"], "test_clock": grant["test_clock"],
        "type": "debit",
    }
    fake.applied.append(record)
    return record

# -- transactions --------------------------------------------------------------

def transactions(fake: FakeState, grant: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every credit balance transaction of ``grant`` now (on its test clock's time, if any),
    oldest first. A ``credits_expired`` entry is listed only once the expiry is committed
    (``expiry_committed``: https://docs.stripe.com/api/billing/credit-balance-summary/object,
    "expired billing credits for which expiration ledger transaction entries haven't yet been
    committed")."""
    now = fake.grant_now(grant)
    currency = grant["amount"]["monetary"]["currency"]
    value = int(grant["amount"]["monetary"]["value"])
    start = grant["effective_at"] if grant["effective_at"] is not None else grant["created"]
    common = {"object": "billing.credit_balance_transaction", "credit_grant": grant["id"],
              "livemode": grant["livemode"], "test_clock": grant["test_clock"]}
    out: list[dict[str, Any]] = []
    if start <= now:
        out.append({**common, "id": _stable_id("cbtxn_", grant["id"], "granted"),
                    "created": start, "effective_at": start, "type": "credit", "debit": None,
                    "credit": {"amount": _money(currency, value),
                               "credits_application_invoice_voided": None,
                               "type": "credits_granted"}})
    applied = [t for t in fake.applied if t["credit_grant"] == grant["id"]]
    out += applied
    used = sum(t["debit"]["amount"]["monetary"]["value"] for t in applied)
    left = max(value - used, 0)
    end, kind = None, None
    if grant["voided_at"] is not None:
        end, kind = grant["voided_at"], "credits_voided"
    elif fake.expiry_committed(grant):
        end, kind = grant["expires_at"], "credits_expired"
    if kind is not None and left > 0 and start <= end:
        out.append({**common, "id": _stable_id("cbtxn_", grant["id"], kind),
                    "created": end, "effective_at": end, "type": "debit", "credit": None,
                    "debit": {"amount": _money(currency, left), "credits_applied": None,
                              "type": kind}})
    return out

def transaction_route(fake: FakeState, method: str, path: str,
                       params: dict[str, Any]) -> dict[str, Any] | None:
    """Answer the transaction endpoints; None for any other path."""
    match = _ONE_TRANSACTION.match(path)
    if path != TRANSACTIONS and match is None:
        return None
    if method != "GET":
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")
    if match is not None:
        _unknown(params, {"expand"})
        for grant in fake.grants.values():
            for transaction in transactions(fake, grant):
                if transaction["id"] == match.group(1):
                    return transaction
        raise StripeError(404, f"No such credit balance transaction: '{match.group(1)}'",
                          code="resource_missing", param="id")
    _unknown(params, {"credit_grant", "customer", "customer_account", "ending_before",
                      "expand", "limit", "starting_after"})
    limit = _integer(params, "limit", minimum=1, maximum=100)
    limit = 10 if limit is None else limit
    customer = _string(params, "customer")
    account = _string(params, "customer_account")
    if customer is None and account is None:
        raise _missing("customer")
    grant_id = _string(params, "credit_grant")
    grants = [g for g in fake.grants.values()
              if (customer is None or g["customer"] == customer)
              and (account is None or g["customer_account"] == account)]
    if grant_id is not None:
        grants = [g for g in grants if g["id"] == grant_id]
        if not grants:
            raise StripeError(404, f"No such credit grant: '{grant_id}'",
                              code="resource_missing", param="credit_grant")
    items = [t for g in grants for t in transactions(fake, g)]
    order = {t["id"]: i for i, t in enumerate(fake.applied)}
    items.sort(key=lambda t: (t["effective_at"], t["created"], order.get(t["id"], -1),
                              t["id"]), reverse=True)
    after = _string(params, "starting_after")
    before = _string(params, "ending_before")
    if after is not None and before is not None:
        raise _invalid("starting_after", "You may only specify one of these parameters: "
                       "starting_after, ending_before.")
    ids = [t["id"] for t in items]
    if after is not None or before is not None:
        cursor = after if after is not None else before
        if cursor not in ids:
            raise StripeError(404, f"No such credit balance transaction: '{cursor}'",
                              code="resource_missing",
                              param="starting_after" if after is not None else "ending_before")
        index = ids.index(cursor)
        if after is not None:
            page, more = items[index + 1:index + 1 + limit], index + 1 + limit < len(items)
        else:
            page, more = items[max(0, index - limit):index], index - limit > 0
    else:
        page, more = items[:limit], limit < len(items)
    return {"object": "list", "data": page, "has_more": more, "url": TRANSACTIONS}
