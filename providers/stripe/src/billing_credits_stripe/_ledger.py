"""Balances, the ledger and grant updates on Stripe (issue 11): pure translation plus the flows.

Stripe sources (API version ``2026-10-28.endive``, the ``stripe`` SDK's types):

- balance: ``GET /v1/billing/credit_balance_summary`` (``stripe/billing/_credit_balance_summary.py``)
  answers for *now* only and needs a filter; it is read once per live grant with
  ``filter[type]=credit_grant``, so every part of the balance names its grant. Stripe documents
  the two figures (https://docs.stripe.com/api/billing/credit-balance-summary/object):
  ``ledger_balance`` "taking into account ledger transactions that have been committed to the
  ledger"; ``available_balance`` "equal to ledger balance less any expired billing credits for
  which expiration ledger transaction entries haven't yet been committed to the ledger. In
  future, this will also take into account any usage that hasn't yet been invoiced". So
  ``usable`` is the smaller of the two; what the ledger balance holds beyond the available one
  is expired credit whose expiry is not posted yet (said in the balance's ``notes``; it is not
  ``pending``, which stays 0: the summary reports no pending usage), and neither figure deducts
  usage not yet invoiced (``uninvoiced_usage_deducted=False``). How long Stripe takes to post
  an expiry is not documented.
- test clocks: a grant on a test clock is read at the clock's ``frozen_time`` (see
  ``StripeProvider._moments``).
- ledger: ``GET /v1/billing/credit_balance_transactions`` (``…/_credit_balance_transaction.py``):
  ``credit`` transactions (``credits_granted``, ``credits_application_invoice_voided``) and
  ``debit`` ones (``credits_applied``, ``credits_expired``, ``credits_voided``). Amounts there are
  "a positive integer" in minor units; the sign comes from ``type``. Stripe reports no running
  balance. The list has no date filter: ``since`` is applied here.
- update: ``POST /v1/billing/credit_grants/{id}`` changes only ``expires_at`` (``""`` clears it)
  and ``metadata`` (merged; a key set to ``""`` is unset) (``_credit_grant_update_params.py``).
- consumption order: ``priority`` 0-100, lower first ("The highest priority is 0 and the lowest
  is 100", ``stripe/billing/_credit_grant.py``;
  https://docs.stripe.com/changelog/acacia/2025-02-24/billing-credits-priority). Stripe documents
  no rule after priority in the sources read, so the order says so
  (``documented_tie_break=False``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import billing_credits as bc
import billing_credits_stripe._translate as tr

if TYPE_CHECKING:
    from stripe.params.billing import (
        CreditBalanceTransactionListParams,
        CreditGrantUpdateParams,
    )

    from ._answer import Answer

T = TypeVar("T")

__all__ = [
    "BALANCE_SOURCE",
    "STRIPE_ORDER",
    "UPDATABLE_FIELDS",
    "balances_from_summaries",
    "entry_from_transaction",
    "summary_values",
    "transaction_list_params",
    "update_params",
]

UPDATABLE_FIELDS = frozenset({"expires_at", "metadata"})
"""What ``POST /v1/billing/credit_grants/{id}`` can change (``CreditGrantUpdateParams``)."""

BALANCE_SOURCE = (
    "credit_balance_summary (filter[type]=credit_grant, one call per live grant): usable = "
    "min(available_balance, ledger_balance); ledger_balance - available_balance is expired "
    "credit whose expiry is not yet posted (https://docs.stripe.com/api/billing/"
    "credit-balance-summary/object), not pending; pending 0 (not reported)"
)

SUMMARY_DOC = "https://docs.stripe.com/api/billing/credit-balance-summary/object"
UNINVOICED_NOTE = (
    "usage not yet invoiced is not deducted: Stripe's available_balance \"in future\" will "
    f"take it into account, not yet ({SUMMARY_DOC})"
)

PRIORITY_CITES = (
    "https://docs.stripe.com/changelog/acacia/2025-02-24/billing-credits-priority; stripe SDK "
    "stripe/billing/_credit_grant.py CreditGrant.priority ('The highest priority is 0 and the "
    "lowest is 100')"
)

STRIPE_ORDER = bc.ConsumptionOrder(
    provider=tr.PROVIDER_NAME,
    rules=(
        bc.OrderRule(
            "priority", "asc", PRIORITY_CITES,
            note="integers 0-100, lower first; Stripe reads an unset priority as 50",
            key=lambda grant: grant.priority if grant.priority is not None
            else Decimal(tr.DEFAULT_PRIORITY)),
    ),
    documented_tie_break=False,
    scope_aware=True,
)
"""Stripe's consumption order. Stripe documents priority only
(https://docs.stripe.com/billing/subscriptions/usage-based/billing-credits#multiple-credit-grants
is where the changelog points; no stored copy of that section could be read: the docs and pages
search corpora hold the guide only to its opening, in three copies, and no public repository
quotes the anchor or its likely sentences). A third party
(https://docs.stigg.io/documentation/modeling-your-pricing-in-stigg/credits/credit-consumption-logic)
lists expires_at, category, effective_at and created after priority; that is not Stripe's word,
so it is not adopted: ties are broken by grant id and reported by the engine."""


# -- balance ---------------------------------------------------------------------------------


@bc.reads_vendor_payload(tr.PROVIDER_NAME, "credit balance summary")
def summary_values(summary: Mapping[str, Any], currency: str) -> tuple[int, int]:
    """``(available_balance, ledger_balance)`` in minor units of ``currency`` from a credit
    balance summary (zeros when Stripe lists no balance in it)."""
    available = ledger = 0
    for entry in summary.get("balances") or ():
        for kind in ("available_balance", "ledger_balance"):
            monetary = (entry.get(kind) or {}).get("monetary") or {}
            if str(monetary.get("currency", "")).upper() != currency.upper():
                continue
            value = monetary.get("value")
            # "A positive integer representing the amount" (_credit_balance_summary.py)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bc.InvalidResponseError(
                    f"credit balance summary: {kind} value {value!r} is not a non-negative "
                    "integer",
                    provider=tr.PROVIDER_NAME, body=bc.excerpt(dict(summary)))
            if kind == "available_balance":
                available += value
            else:
                ledger += value
    return available, ledger


_FIGURES = ("available_balance", "ledger_balance")


def _figures_given(summary: Mapping[str, Any], currency: str) -> set[str]:
    """Which of the two figures the summary gives an amount for in ``currency``: ``monetary``
    is nullable (``Optional[Monetary]``, ``stripe/billing/_credit_balance_summary.py``), and a
    figure without one has no amount to read."""
    given: set[str] = set()
    entries = summary.get("balances")
    for entry in entries if isinstance(entries, list) else ():
        for kind in _FIGURES:
            holder = entry.get(kind) if isinstance(entry, Mapping) else None
            monetary = holder.get("monetary") if isinstance(holder, Mapping) else None
            if isinstance(monetary, Mapping) and \
                    str(monetary.get("currency", "")).upper() == currency.upper():
                given.add(kind)
    return given


def balances_from_summaries(
    customer_id: str,
    summaries: Sequence[tuple[bc.CreditGrant, Mapping[str, Any]]],
    as_of: datetime,
) -> list[bc.Balance]:
    """One ``Balance`` per currency from each live grant's credit balance summary.

    ``usable`` is the smaller of ``available_balance`` and ``ledger_balance`` (the cautious
    figure); ``pending`` is 0 (the summary reports no pending usage). What the ledger balance
    holds beyond the available one is expired credit whose expiry Stripe has not posted yet
    (``SUMMARY_DOC``): the customer cannot use it and it is not coming back; ``notes`` give the
    amount per grant. An available balance above the ledger one is not explained by Stripe's
    documentation: ``usable`` stays the smaller and ``notes`` say so. Neither figure deducts
    usage not yet invoiced (``uninvoiced_usage_deducted=False``).
    """
    by_currency: dict[str, list[tuple[bc.CreditGrant, bc.Money, Decimal, Mapping[str, Any]]]] = {}
    unread: dict[str, list[str]] = {}
    for grant, summary in summaries:
        currency = grant.amount.currency
        assert currency is not None  # Stripe grants are monetary
        available, ledger = summary_values(summary, currency)
        with bc.reading_vendor_payload(tr.PROVIDER_NAME, "credit balance summary", summary):
            usable = tr.from_minor_units(currency, min(available, ledger))
            beyond = tr.from_minor_units(currency, ledger - available).amount
        [*missing] = set(_FIGURES) - _figures_given(summary, currency)
        if len(missing) == 1:  # one figure without an amount: no difference can be read
            unread.setdefault(currency, []).append(
                f"grant {grant.id}: Stripe's summary gives no amount for {missing[0]} in "
                f"{currency} (monetary null or absent): read as 0, usable is the smaller")
            beyond = Decimal(0)
        by_currency.setdefault(currency, []).append((grant, usable, beyond, summary))
    balances = []
    for currency, rows in sorted(by_currency.items()):
        parts = tuple(
            bc.BalancePart(grant_id=grant.id or "", usable=usable,
                           expires_at=grant.expires_at, priority=grant.priority)
            for grant, usable, _, _ in rows)
        notes = [UNINVOICED_NOTE]
        notes += unread.get(currency, [])
        for grant, _, beyond, _ in rows:
            if beyond > 0:
                notes.append(
                    f"grant {grant.id}: {beyond} {currency} expired credit not yet posted to "
                    "Stripe's ledger (ledger_balance - available_balance): not usable, not "
                    f"pending ({SUMMARY_DOC})")
            elif beyond < 0:
                notes.append(
                    f"grant {grant.id}: available_balance exceeds ledger_balance by "
                    f"{-beyond} {currency}, which Stripe's documentation does not explain; "
                    "usable is the smaller")
        balances.append(bc.Balance(
            customer_id=customer_id,
            usable=bc.Money(amount=bc.exact_sum(p.usable.amount for p in parts), currency=currency),
            pending=bc.Money(amount=Decimal(0), currency=currency),
            parts=parts,
            as_of=as_of,
            source=BALANCE_SOURCE,
            uninvoiced_usage_deducted=False,
            notes=tuple(notes),
            raw={"summaries": {grant.id: dict(summary) for grant, _, _, summary in rows}},
        ))
    return balances


# -- ledger ----------------------------------------------------------------------------------


def transaction_list_params(
    customer_id: str, grant_id: str | None, *, starting_after: str | None = None,
    limit: int = tr.MAX_PAGE_SIZE,
) -> CreditBalanceTransactionListParams:
    """``GET /v1/billing/credit_balance_transactions`` parameters for one page."""
    params: dict[str, Any] = {"customer": customer_id, "limit": limit}
    if grant_id is not None:
        params["credit_grant"] = grant_id
    if starting_after is not None:
        params["starting_after"] = starting_after
    return params  # type: ignore[return-value]


# Values of bc.LedgerKind (plain text: the models load on first use, not with the provider).
_CREDIT_KINDS = {
    "credits_granted": "granted",
    "credits_application_invoice_voided": "adjusted",
}
_DEBIT_KINDS = {
    "credits_applied": "consumed",
    "credits_expired": "expired",
    "credits_voided": "voided",
}


def _id_of(value: Any) -> str | None:
    """An expandable field's id (a string, or an expanded object's ``id``)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _bad(obj: Mapping[str, Any], problem: str) -> bc.InvalidResponseError:
    return bc.InvalidResponseError(
        f"credit balance transaction {obj.get('id')!r}: {problem}", provider=tr.PROVIDER_NAME,
        body=bc.excerpt(dict(obj)))


@bc.reads_vendor_payload(tr.PROVIDER_NAME, "credit balance transaction")
def entry_from_transaction(obj: Mapping[str, Any], customer_id: str) -> bc.LedgerEntry:
    """A ``billing.credit_balance_transaction`` as a neutral ledger entry (exact, signed).

    ``credit``: ``credits_granted`` → granted (+), ``credits_application_invoice_voided`` →
    adjusted (+, credits given back; reference: the invoice). ``debit``: ``credits_applied`` →
    consumed (−, reference: the invoice), ``credits_expired`` → expired (−),
    ``credits_voided`` → voided (−).

    One rule for what Stripe does not name (its SDK declares the enums open:
    ``type: Optional[Union[Literal["credit", "debit"], str]]`` and the sub-types
    ``Union[Literal[...], str]``, ``stripe/billing/_credit_balance_transaction.py``; the OpenAPI
    spec marks ``type`` ``"nullable": true``): an entry whose kind cannot be named reads as
    **adjusted**, signed by the detail present (``credit`` +, ``debit`` −), the whole entry kept
    in ``raw``. That covers an unknown sub-type, and a ``type`` of null with exactly one of
    ``credit``/``debit`` present. Refused (``InvalidResponseError`` naming the entry), never
    guessed: a ``type`` other than credit, debit or null, or a null ``type`` with neither or both
    details (no amount can be read). A transaction of the wrong shape raises nothing else
    (``bc.reads_vendor_payload``).
    """
    kind_name = obj.get("type")
    if kind_name is None:
        present = [name for name in ("credit", "debit") if isinstance(obj.get(name), Mapping)]
        if len(present) != 1:
            raise _bad(obj, "type is null and " + (
                "neither credit nor debit details are present" if not present else
                "both credit and debit details are present") + ": no amount can be read")
        kind_name = present[0]
        detail = obj[kind_name]
        kind = bc.LedgerKind.ADJUSTED
        sub = detail.get("type")
    elif kind_name not in ("credit", "debit"):
        raise _bad(obj, f"type {kind_name!r} is neither credit, debit nor null")
    else:
        detail = obj.get(kind_name)
        if not isinstance(detail, Mapping):
            raise _bad(obj, f"no {kind_name} details")
        sub = detail.get("type")
        kinds = _CREDIT_KINDS if kind_name == "credit" else _DEBIT_KINDS
        kind = bc.LedgerKind(kinds.get(str(sub), "adjusted"))
    amount = detail.get("amount") or {}
    monetary = amount.get("monetary") if isinstance(amount, Mapping) else None
    if not isinstance(monetary, Mapping) or amount.get("type") != "monetary":
        raise _bad(obj, "amount is not monetary")
    value = monetary.get("value")
    currency = monetary.get("currency")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(obj, f"amount value {value!r} is not a non-negative integer")
    if not isinstance(currency, str):
        raise _bad(obj, f"currency {currency!r} is not a string")
    money = tr.from_minor_units(currency, value)
    if kind_name == "debit":
        money = money.with_amount(-money.amount)
    stamp = obj.get("effective_at", obj.get("created"))
    if isinstance(stamp, bool) or not isinstance(stamp, int):
        raise _bad(obj, f"effective_at {stamp!r} is not a Unix timestamp")
    for field in ("id", "credit_grant"):
        if obj.get(field) is not None and _id_of(obj.get(field)) is None:
            raise _bad(obj, f"{field} {obj.get(field)!r} is not an id")
    reference = None
    applied = detail.get(sub) if isinstance(sub, str) else None
    if isinstance(applied, Mapping):
        reference = _id_of(applied.get("invoice"))
    at = tr.from_timestamp(stamp)
    assert at is not None
    return bc.LedgerEntry(
        customer_id=customer_id,
        grant_id=_id_of(obj.get("credit_grant")),
        kind=kind,
        amount=money,
        at=at,
        reference=reference,
        vendor_id=_id_of(obj.get("id")),
        raw=dict(obj),
    )


# -- update ----------------------------------------------------------------------------------


def _metadata_problems(metadata: Mapping[str, str], existing: Mapping[str, str]) -> list[str]:
    found = []
    for key, value in metadata.items():
        if key.startswith(tr.RESERVED_PREFIX):
            found.append(f"key {key!r}: keys starting with {tr.RESERVED_PREFIX!r} are reserved")
        if not key or len(key) > tr.MAX_METADATA_KEY_LENGTH or "[" in key or "]" in key:
            found.append(f"key {key!r}: Stripe keys are 1-{tr.MAX_METADATA_KEY_LENGTH} "
                         "characters without '[' or ']'")
        if not value:
            found.append(f"key {key!r}: an empty value would unset the key on Stripe")
        if len(value) > tr.MAX_METADATA_VALUE_LENGTH:
            found.append(f"key {key!r}: values are at most {tr.MAX_METADATA_VALUE_LENGTH} "
                         "characters")
    reserved = [k for k in existing if k.startswith(tr.RESERVED_PREFIX)]
    if len(metadata) + len(reserved) > tr.MAX_METADATA_KEYS:
        found.append(f"{len(metadata)} keys plus {len(reserved)} kept by billing-credits exceed "
                     f"Stripe's {tr.MAX_METADATA_KEYS}")
    return found


def update_params(update: bc.GrantUpdate, existing_metadata: Mapping[str, str] | None
                  ) -> CreditGrantUpdateParams:
    """The update request for ``update``'s explicitly set fields, or ``NotRepresentableError``.

    ``expires_at=None`` clears the expiry (``expires_at=""``: the credits never expire).
    ``metadata`` replaces the grant's own metadata: keys it no longer has are unset (``""``);
    the library's ``bc_`` keys are kept. ``name`` cannot be changed on Stripe.
    """
    changes = update.changes()
    problems: list[bc.FieldProblem] = []
    params: dict[str, Any] = {}
    problems += [bc.FieldProblem(name, "Stripe cannot change it after creation (only "
                                 "expires_at and metadata)")
                 for name in sorted(set(changes) - UPDATABLE_FIELDS)]
    if "expires_at" in changes:
        expires = changes["expires_at"]
        if expires is None:
            params["expires_at"] = ""
        else:
            try:
                params["expires_at"] = tr.to_timestamp(expires)
            except ValueError as error:
                problems.append(bc.FieldProblem("expires_at", f"{error}: Stripe keeps whole "
                                                "seconds"))
    if "metadata" in changes:
        wanted = dict(changes["metadata"] or {})
        existing = dict(existing_metadata or {})
        problems += [bc.FieldProblem("metadata", p) for p in _metadata_problems(wanted, existing)]
        sent: dict[str, str] = {k: "" for k in existing
                                if not k.startswith(tr.RESERVED_PREFIX) and k not in wanted}
        sent.update(wanted)
        if sent:
            params["metadata"] = sent
    if problems:
        raise bc.NotRepresentableError(tr.PROVIDER_NAME, problems)
    return params  # type: ignore[return-value]


# -- flows (driven by StripeProvider, through its validated transport) ---------------------


class StripeCalls(Protocol):
    """What the flows need of the provider: its validated transport and the readers of its
    answers. ``StripeProvider`` passes itself; this module never imports the provider class."""

    def _call(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
              label: str, idempotency_key: str | None = None,
              retry_safe: bool = True) -> bc.Call[Answer]: ...

    def _list_of(self, answer: Answer) -> tuple[list[Any], bool]: ...

    def listing_guard(self, what: str = ...) -> bc.ListingGuard: ...

    def _next_cursor(self, answer: Answer, items: list[Any], has_more: bool,
                     seen: set[str] | None = None) -> str | None: ...

    def _clock(self) -> datetime: ...

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]: ...

    def _with_balance(self, grant: bc.CreditGrant) -> bc.Flow[bc.CreditGrant]: ...

    def _read(self, answer: Answer) -> bc.Flow[bc.CreditGrant]: ...

    def _moments(self, objs: Iterable[Any], known: dict[str, datetime] | None = None,
                 advancing: set[str] | None = None) -> bc.Flow[dict[str, datetime]]: ...

    def _moment(self, obj: Any, moments: Mapping[str, datetime]) -> datetime: ...


TRANSACTIONS_PATH = "/v1/billing/credit_balance_transactions"


def _items(provider: StripeCalls, answer: Answer, what: str) -> tuple[list[dict[str, Any]], bool]:
    """A list answer's objects (each a JSON object with an id) and ``has_more``; any other shape
    is ``InvalidResponseError`` with the request id."""
    items, has_more = provider._list_of(answer)
    if not all(isinstance(item, Mapping) and isinstance(item.get("id"), str) for item in items):
        raise answer.invalid(f"{what}: an item is not an object with an id")
    return [dict(item) for item in items], has_more


def _each(answer: Answer, what: str, items: Iterable[dict[str, Any]],
          read: Callable[[dict[str, Any]], T]) -> list[T]:
    """``read`` (a reader decorated with ``bc.reads_vendor_payload``) of every item of a
    validated answer; an unreadable item is ``InvalidResponseError`` with the request id."""
    try:
        return [read(item) for item in items]
    except bc.ProviderError as error:
        problem = error.message
    raise answer.invalid(f"{what}: {problem}")


def _live(grants: Iterable[bc.CreditGrant]) -> list[bc.CreditGrant]:
    """Grants that can hold usable credit now, by Stripe's own fields (not voided, effective,
    not expired)."""
    return [g for g in grants if g.status is bc.GrantStatus.ACTIVE]


def _read_at(provider: StripeCalls, moments: Mapping[str, datetime],
             item: Mapping[str, Any]) -> bc.CreditGrant:
    """A listed grant read at the time it lives on (its test clock's, else the provider's)."""
    return tr.from_stripe(item, now=provider._moment(item, moments))


def balance_flow(provider: StripeCalls, customer_id: str, unit: str | None,
                 at: datetime | None) -> bc.Flow[list[bc.Balance]]:
    """Every credit grant of the customer (paged), then one balance summary per live grant.

    A customer on a test clock: its grants are read, and the balance is as of, the clock's
    ``frozen_time`` (the grants belong to the clock; ``StripeProvider._moments``)."""
    if at is not None:
        raise bc.NotRepresentableError(tr.PROVIDER_NAME, [bc.FieldProblem(
            "at", "Stripe's credit balance summary answers for now only")])
    cursor: str | None = None
    guard = provider.listing_guard("Stripe credit_grants.list")
    grants: list[bc.CreditGrant] = []
    clocks: dict[str, datetime] = {}
    advancing: set[str] = set()
    while True:
        params = tr.list_params(customer_id, limit=tr.MAX_PAGE_SIZE, starting_after=cursor)
        answer = yield provider._call("get", tr.GRANTS_PATH, params, label="credit_grants.list")
        items, has_more = _items(provider, answer, "credit_grants.list")
        moments = yield from provider._moments(items, clocks, advancing)
        grants += _each(answer, "credit_grants.list", items,
                        partial(_read_at, provider, moments))
        cursor = guard.page([item["id"] for item in items],
                            provider._next_cursor(answer, items, has_more),
                            request_id=answer.request_id, items=bool(items))
        if cursor is None:
            break
    as_of = provider._clock()
    clock_notes: list[str] = []
    if len(clocks) == 1:
        [(clock_id, as_of)] = clocks.items()
        clock_notes.append(f"as of test clock {clock_id}'s frozen_time")
    elif clocks:
        clock_notes.append("the customer's grants are on several test clocks "
                           f"({', '.join(sorted(clocks))}): each grant read at its own clock's "
                           "frozen_time; as_of is this library's clock")
    clock_notes += [f"test clock {clock_id} is advancing: Stripe is still moving its objects "
                    "to a later frozen_time, so these figures may change (read again once its "
                    "status is ready)" for clock_id in sorted(advancing)]
    chosen = [g for g in _live(grants)
              if unit is None or (g.amount.currency or "").upper() == unit.upper()]
    summaries = []
    for grant in chosen:
        summary_params = tr.balance_params(customer_id, grant.id or "")
        answer = yield provider._call("get", tr.SUMMARY_PATH, summary_params,
                                      label="credit_balance_summary.retrieve")
        summaries.append((grant, dict(answer.mapping("billing.credit_balance_summary"))))
    balances = balances_from_summaries(customer_id, summaries, as_of)
    return [b.model_copy(update={"notes": (*b.notes, *clock_notes)}) for b in balances]


def ledger_flow(provider: StripeCalls, customer_id: str, grant_id: str | None,
                since: datetime | None, cursor: str | None) -> bc.Flow[bc.LedgerPage]:
    """One page of entries: Stripe pages until one holds an entry at or after ``since`` (Stripe
    has no date filter), so filtered-out pages never look like a run of empty pages."""
    guard = provider.listing_guard("Stripe credit_balance_transactions.list")
    if cursor is not None:
        guard.remember(cursor)
    while True:
        params = transaction_list_params(customer_id, grant_id, starting_after=cursor)
        answer = yield provider._call("get", TRANSACTIONS_PATH, params,
                                      label="credit_balance_transactions.list")
        items, has_more = _items(provider, answer, "credit_balance_transactions.list")
        entries = _each(answer, "credit_balance_transactions.list", items,
                        partial(entry_from_transaction, customer_id=customer_id))
        if since is not None:
            entries = [e for e in entries if e.at >= since]
        next_cursor = provider._next_cursor(answer, items, has_more)
        if entries or next_cursor is None:
            return bc.LedgerPage(entries, next_cursor, request_id=answer.request_id)
        # Pages wholly before ``since``, followed inside this one flow: guarded here too.
        cursor = guard.page([item["id"] for item in items], next_cursor,
                            request_id=answer.request_id, items=True)


def update_flow(provider: StripeCalls, grant_id: str,
                update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
    """Read the grant (for its metadata, when metadata changes), then update it.

    Everything that can be refused without the grant's current metadata (a field Stripe cannot
    change, such as ``name``; an expiry finer than a second; a metadata key or value Stripe
    would refuse or read as "unset") is refused before any request."""
    existing: Mapping[str, str] | None = None
    update_params(update, {})  # the refusals that do not depend on the stored metadata
    if "metadata" in update.model_fields_set:
        answer = yield provider._call("get", tr.grant_path(grant_id),
                                      label="credit_grants.retrieve")
        metadata = answer.mapping("billing.credit_grant").get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise answer.invalid("credit grant metadata is not an object")
        existing = dict(metadata)
    params = update_params(update, existing)
    if not params:
        return (yield from provider._get(grant_id))
    answer = yield provider._call("post", tr.grant_path(grant_id), dict(params),
                                  label="credit_grants.update",
                                  idempotency_key=f"bc-update-{uuid.uuid4()}")
    return (yield from provider._with_balance((yield from provider._read(answer))))
