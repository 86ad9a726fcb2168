"""Consumption order as declared data, and one pure, exact engine that applies it.

Each provider declares the order in which its vendor burns a customer's grants down
(``Provider.consumption_order``), rule by rule, each rule citing where the vendor documents
it. ``allocate`` applies an order to a set of grants and a stream of usage: which grant (and
which of its access windows) pays for what, what expires unused, what is left, and what no
grant could pay. It does no I/O and no rounding: every amount is an exact ``Decimal``.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import total_ordering
from typing import TYPE_CHECKING, Any, Literal

from billing_credits._errors import FieldProblem, InvalidGrantError

if TYPE_CHECKING:  # the models load on first use: declaring an order (a provider class) stays light
    from billing_credits._ledger import Usage
    from billing_credits._model import CreditGrant, Segment

__all__ = [
    "LOCAL_ORDER",
    "RULE_NAMES",
    "Allocation",
    "ConsumptionOrder",
    "Draw",
    "Expiry",
    "OrderRule",
    "Tie",
    "admits",
    "allocate",
]

GrantKey = Callable[["CreditGrant"], Any]


def _exact() -> decimal.Context:
    """The exact context (``billing_credits._money.exact``), its module imported on first use."""
    from billing_credits._money import exact

    return exact()

RULE_NAMES: frozenset[str] = frozenset({
    "priority",
    "expires_at",
    "starts_at",
    "created_at",
    "cost_basis",
    "fewest_products",
    "fewest_contracts",
    "product_position",
    "contract_level",
    "contract_before_customer",
    "promotional_first",
    "id",
})
"""The rule names the engine understands without a ``key``:

- ``priority``: ``grant.priority`` (None: missing).
- ``expires_at``: the end of the access window in use (``ends_before`` of the segment active
  at the usage's time; the grant's ``expires_at`` outside one); None (never): missing.
- ``starts_at``: the start of that window (else ``effective_at``, else ``created_at``).
- ``created_at``: when the provider created the grant.
- ``cost_basis``: ``paid_amount / amount`` (no paid amount: 0, free credit).
- ``fewest_products``: ``len(scope.product_ids)``; a scope not limited to listed products
  applies to more products than any list, so it counts as missing (sorted last ascending).
- ``fewest_contracts``: ``len(scope.contract_ids)``; a scope not limited to listed contracts
  applies to every contract of the customer, so it counts as missing (sorted last ascending).
- ``product_position``: the usage's product's position in ``scope.product_ids`` (the order a
  vendor applies a grant to line items); missing when not listed.
- ``contract_level``: True for a contract-level grant. The core cannot tell one from a neutral
  grant: the declaring provider gives a ``key`` (without one every grant counts False).
- ``contract_before_customer``: 0 for contract-level, 1 for customer-level (same ``key``).
- ``promotional_first``: 0 for promotional credit, 1 otherwise.
- ``id``: the grant id.
"""


@dataclass(frozen=True)
class OrderRule:
    """One rule of a consumption order: sort grants by ``name`` in ``direction``.

    ``cites`` is where the vendor documents the rule (a docs URL, an official SDK source), or
    "billing-credits documented" for ``local``. ``missing`` says where grants without a value
    go (regardless of direction). ``key`` reads the value from a grant for a rule the core cannot
    evaluate from the neutral model alone (``contract_level``) or for a provider-specific one.
    """

    name: str
    direction: Literal["asc", "desc"]
    cites: str
    note: str = ""
    missing: Literal["first", "last"] = "last"
    key: GrantKey | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.key is None and self.name not in RULE_NAMES:
            raise ValueError(
                f"unknown consumption rule {self.name!r}; give a key, or one of "
                f"{', '.join(sorted(RULE_NAMES))}")
        if self.direction not in ("asc", "desc"):
            raise ValueError(f"direction must be 'asc' or 'desc', not {self.direction!r}")
        if not self.cites.strip():
            raise ValueError("every consumption rule cites where it is documented")

    def value(
        self, grant: CreditGrant, segment: Segment | None = None, product_id: str | None = None
    ) -> Any:
        """This rule's value for ``grant`` (None: missing), using ``segment`` (the window in
        use) and ``product_id`` (the usage's) where the rule depends on them."""
        if self.key is not None:
            return self.key(grant)
        return _VALUES[self.name](grant, segment, product_id)

    def sort_part(
        self, grant: CreditGrant, segment: Segment | None = None, product_id: str | None = None
    ) -> tuple[int, Any]:
        value = self.value(grant, segment, product_id)
        if value is None:
            return (1 if self.missing == "last" else -1, 0)
        return (0, _Reversed(value) if self.direction == "desc" else value)


@dataclass(frozen=True)
class ConsumptionOrder:
    """The order in which a provider's vendor consumes a customer's grants, as data.

    ``documented_tie_break`` is False where the vendor documents nothing after ``rules``: the
    engine then breaks the remaining ties by grant id, and reports each tie that decided which
    grant paid (``Allocation.ties``), rather than pretend the vendor does the same.
    ``scope_aware``: the vendor only draws on grants whose scope admits the usage.
    """

    provider: str
    rules: tuple[OrderRule, ...]
    documented_tie_break: bool
    scope_aware: bool = True

    def sort_key(
        self, grant: CreditGrant, *, at: datetime | None = None, product_id: str | None = None
    ) -> tuple[Any, ...]:
        """The key ``grant`` sorts by (ascending: consumed first), using the window active at
        ``at`` and the usage's ``product_id`` for rules that depend on them. Ties are not
        broken here: ``allocate`` breaks them by grant id."""
        segment = _active(grant, at) if at is not None else None
        return self._key(grant, segment, product_id)

    def _key(self, grant: CreditGrant, segment: Segment | None,
             product_id: str | None) -> tuple[Any, ...]:
        return tuple(rule.sort_part(grant, segment, product_id) for rule in self.rules)

    def describe(self) -> list[tuple[str, str]]:
        """Rows of (rule, citation) for people."""
        rows = [(f"{rule.name} {rule.direction}" + (f" ({rule.note})" if rule.note else ""),
                 rule.cites) for rule in self.rules]
        if not self.documented_tie_break:
            rows.append(("id asc (not documented by the vendor: ties reported)", "-"))
        return rows


LOCAL_ORDER = ConsumptionOrder(
    provider="local",
    rules=(
        OrderRule("priority", "asc", "billing-credits documented", "lower first; none last"),
        OrderRule("expires_at", "asc", "billing-credits documented",
                  "the window ending soonest first; never-ending last"),
        OrderRule("starts_at", "asc", "billing-credits documented", "oldest window first"),
        OrderRule("created_at", "asc", "billing-credits documented", "oldest grant first"),
        OrderRule("id", "asc", "billing-credits documented"),
    ),
    documented_tie_break=True,
    scope_aware=True,
)
"""``local``'s order (README "Consumption order"): priority (lower first, none last), then the
window ending soonest, then the earliest start, then the oldest grant, then the grant id."""


@total_ordering
class _Reversed:
    """Sorts its value in descending order."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and bool(self.value == other.value)

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"desc({self.value!r})"


def _active(grant: CreditGrant, at: datetime) -> Segment | None:
    try:
        segments = grant.segments
    except ValueError:
        return None
    for segment in segments:
        if segment.starts_at <= at and (segment.ends_before is None or at < segment.ends_before):
            return segment
    return None


def _expires(grant: CreditGrant, segment: Segment | None, _: str | None) -> Any:
    return segment.ends_before if segment is not None else grant.expires_at


def _starts(grant: CreditGrant, segment: Segment | None, _: str | None) -> Any:
    if segment is not None:
        return segment.starts_at
    return grant.effective_at or grant.created_at


def _cost_basis(grant: CreditGrant, _s: Segment | None, _p: str | None) -> Any:
    if grant.paid_amount is None:
        return Decimal(0)
    with decimal.localcontext(_exact()) as context:
        context.traps[decimal.Inexact] = False  # a ratio may not terminate; it only orders
        return grant.paid_amount.amount / grant.amount.amount


def _fewest(grant: CreditGrant, _s: Segment | None, _p: str | None) -> Any:
    return len(grant.scope.product_ids) if grant.scope.product_ids else None


def _fewest_contracts(grant: CreditGrant, _s: Segment | None, _p: str | None) -> Any:
    return len(grant.scope.contract_ids) if grant.scope.contract_ids else None


def _position(grant: CreditGrant, _s: Segment | None, product: str | None) -> Any:
    if product is None or product not in grant.scope.product_ids:
        return None
    return grant.scope.product_ids.index(product)


def _promotional() -> Any:
    from billing_credits._model import Category

    return Category.PROMOTIONAL


_VALUES: dict[str, Callable[[CreditGrant, Segment | None, str | None], Any]] = {
    "priority": lambda g, s, p: g.priority,
    "expires_at": _expires,
    "starts_at": _starts,
    "created_at": lambda g, s, p: g.created_at,
    "cost_basis": _cost_basis,
    "fewest_products": _fewest,
    "fewest_contracts": _fewest_contracts,
    "product_position": _position,
    "contract_level": lambda g, s, p: False,
    "contract_before_customer": lambda g, s, p: 1,
    "promotional_first": lambda g, s, p: 0 if g.category is _promotional() else 1,
    "id": lambda g, s, p: g.id,
}


def _admits_all(grant: CreditGrant) -> bool:
    """Whether ``admits`` lets every usage draw on ``grant`` (its scope limits nothing)."""
    scope = grant.scope
    return scope.is_all_usage or scope.kinds() == {"metered_prices_only"}


def admits(grant: CreditGrant, usage: Usage) -> bool:
    """Whether ``grant``'s scope admits ``usage`` (the default scope test of ``allocate``).

    All-usage grants (the empty scope, or every metered price) admit all usage. Otherwise the
    usage must name a product that the scope lists in ``product_ids``, or that a specifier
    holding only a ``product_id`` names. A scope listing ``contract_ids`` admits only usage
    naming one of them (``Usage.contract_id``), and then as the rest of the scope does. Scope
    parts a usage record cannot be tested against (product tags, prices, group values) admit
    nothing: the engine never spends credit it cannot show applies.
    """
    scope = grant.scope
    if scope.contract_ids:
        if usage.contract_id is None or usage.contract_id not in scope.contract_ids:
            return False
        scope = scope.model_copy(update={"contract_ids": ()})
    if scope.is_all_usage or scope.kinds() == {"metered_prices_only"}:
        return True
    product = usage.product_id
    if product is None:
        return False
    if product in scope.product_ids:
        return True
    return any(
        s.product_id == product and not (s.product_tags or s.pricing_group_values
                                         or s.presentation_group_values)
        for s in scope.specifiers)


@dataclass(frozen=True)
class Draw:
    """Grant ``grant_id`` (its window number ``segment``) paid ``amount`` of usage number
    ``usage_index`` (its ``reference``) at ``at``."""

    usage_index: int
    reference: str | None
    grant_id: str
    amount: Decimal
    at: datetime
    segment: int = 0


@dataclass(frozen=True)
class Expiry:
    """``amount`` of grant ``grant_id`` (window number ``segment``) left unused when its window
    ended at ``at``."""

    grant_id: str
    amount: Decimal
    at: datetime
    segment: int = 0


@dataclass(frozen=True)
class Tie:
    """Usage number ``usage_index`` was paid from grants the declared order ranks equal;
    the engine ordered ``grant_ids`` by id, which the vendor does not document."""

    usage_index: int
    grant_ids: tuple[str, ...]


@dataclass
class Allocation:
    """What ``allocate`` decided, exactly.

    Per grant: ``granted == already + consumed + expired + remaining`` (``already``: what
    the caller said was consumed before). ``remaining`` counts windows still open or still to
    come as of ``until``. ``uncovered`` lists (usage index, amount) no grant could pay.
    """

    draws: list[Draw] = field(default_factory=list)
    expired: list[Expiry] = field(default_factory=list)
    remaining: dict[str, Decimal] = field(default_factory=dict)
    uncovered: list[tuple[int, Decimal]] = field(default_factory=list)
    ties: list[Tie] = field(default_factory=list)
    until: datetime | None = None

    def consumed(self) -> dict[str, Decimal]:
        """Per grant, what the draws took (every grant given appears, zero when untouched)."""
        totals = dict.fromkeys(self.remaining, Decimal(0))
        with decimal.localcontext(_exact()):
            for draw in self.draws:
                totals[draw.grant_id] = totals.get(draw.grant_id, Decimal(0)) + draw.amount
        return totals

    def expired_by_grant(self) -> dict[str, Decimal]:
        totals = dict.fromkeys(self.remaining, Decimal(0))
        with decimal.localcontext(_exact()):
            for expiry in self.expired:
                totals[expiry.grant_id] = totals.get(expiry.grant_id, Decimal(0)) + expiry.amount
        return totals


@dataclass
class _Lot:
    grant: CreditGrant
    grant_id: str
    index: int
    segment: Segment
    used: Decimal
    everything: bool = False
    """The default scope test admits all usage to this grant (decided once, not per usage)."""

    def active(self, at: datetime) -> bool:
        end = self.segment.ends_before
        return self.segment.starts_at <= at and (end is None or at < end)

    @property
    def available(self) -> Decimal:
        with decimal.localcontext(_exact()):
            return self.segment.amount - self.used


def grant_ids(grants: Sequence[CreditGrant]) -> list[str]:
    """The id ``allocate`` uses for each grant: its ``id``, else ``#<position>``."""
    ids = [g.id if g.id is not None else f"#{i}" for i, g in enumerate(grants)]
    if len(set(ids)) != len(ids):
        raise InvalidGrantError([FieldProblem("id", "grant ids must be unique")])
    return ids


def allocate(
    grants: Sequence[CreditGrant],
    usage: Iterable[Usage],
    order: ConsumptionOrder,
    *,
    until: datetime | None = None,
    already: Mapping[tuple[str, int], Decimal] | None = None,
    admit: Callable[[CreditGrant, Usage], bool] = admits,
) -> Allocation:
    """Apply ``order`` to ``grants`` and ``usage``: which grant pays for what, and what expires.

    Usage is taken in time order (ties in the order given). Each usage is paid, in the
    declared order, from the access windows open at its time (``starts_at <= at <
    ends_before``) of its customer's grants in its unit whose scope admits it (``admit``; every grant
    when the order is not ``scope_aware``), never more than a window holds. Windows that end
    by ``until`` (default: the last usage's time; nothing when there is no usage) expire with
    what is left in them. ``already`` gives what was consumed before, per (grant id, window
    number). Grants without an id are named ``#<position>``. The engine ignores ``status``: a
    voided grant is passed with its window ended, or not at all.
    """
    ids = grant_ids(grants)
    spent = dict(already or {})
    lots: list[_Lot] = []
    for grant, gid in zip(grants, ids, strict=True):
        everything = admit is admits and _admits_all(grant)
        try:
            segments = grant.segments
        except ValueError:
            raise InvalidGrantError([FieldProblem(
                "effective_at", f"grant {gid} has no window: give effective_at or created_at")],
            ) from None
        for index, segment in enumerate(segments):
            used = spent.pop((gid, index), Decimal(0))
            if used < 0 or used > segment.amount:
                raise InvalidGrantError([FieldProblem(
                    "already", f"{used} consumed from window {index} of grant {gid}, which "
                    f"holds {segment.amount}")])
            lots.append(_Lot(grant, gid, index, segment, used, everything))
    if spent:
        raise InvalidGrantError([FieldProblem("already", f"no grant window {key}")
                                 for key in sorted(spent)])

    items = list(usage)
    result = Allocation()
    pools: dict[tuple[str, str], list[_Lot]] = {}
    for lot in lots:
        pools.setdefault((lot.grant.customer_id, lot.grant.amount.unit_key), []).append(lot)
    with decimal.localcontext(_exact()):
        for index in sorted(range(len(items)), key=lambda i: (items[i].at, i)):
            item = items[index]
            pool = pools.get((item.customer_id, item.amount.unit_key), [])
            _pay(index, item, pool, order, admit, result)
        horizon = until if until is not None else max((u.at for u in items), default=None)
        result.until = horizon
        for lot in lots:
            end = lot.segment.ends_before
            if horizon is not None and end is not None and end <= horizon and lot.available > 0:
                result.expired.append(Expiry(lot.grant_id, lot.available, end, lot.index))
                lot.used = lot.segment.amount
        for gid in ids:
            result.remaining[gid] = Decimal(0)
        for lot in lots:
            result.remaining[lot.grant_id] += lot.available
    result.expired.sort(key=lambda e: (e.at, e.grant_id, e.segment))
    return result


def _pay(index: int, item: Usage, lots: list[_Lot], order: ConsumptionOrder,
         admit: Callable[[CreditGrant, Usage], bool], result: Allocation) -> None:
    # ``lots``: this usage's customer's grant windows in its unit. Called inside
    # ``allocate``'s exact context: ``segment.amount - used`` is ``available``, exactly.
    open_lots = [
        lot for lot in lots
        if lot.active(item.at) and lot.segment.amount - lot.used > 0
        and (not order.scope_aware or lot.everything or admit(lot.grant, item))
    ]
    keyed = [(order._key(lot.grant, lot.segment, item.product_id), lot) for lot in open_lots]
    keyed.sort(key=lambda pair: (pair[0], pair[1].grant_id, _end(pair[1].segment),
                                 pair[1].index))
    need = item.amount.amount
    touched: set[str] = set()
    for _, lot in keyed:
        if need <= 0:
            break
        take = min(need, lot.segment.amount - lot.used)
        lot.used += take
        need -= take
        touched.add(lot.grant_id)
        result.draws.append(Draw(index, item.reference, lot.grant_id, take, item.at, lot.index))
    if need > 0:
        result.uncovered.append((index, need))
    if not order.documented_tie_break and touched:
        groups: dict[tuple[Any, ...], list[_Lot]] = {}
        for key, lot in keyed:
            groups.setdefault(key, []).append(lot)
        for group in groups.values():
            members = {lot.grant_id for lot in group}
            if len(members) > 1 and members & touched and any(
                    lot.segment.amount - lot.used > 0 for lot in group):
                result.ties.append(Tie(index, tuple(sorted(members))))


def _end(segment: Segment) -> tuple[int, Any]:
    return (1, 0) if segment.ends_before is None else (0, segment.ends_before)
