"""Simulate who pays for usage: a set of grants, a usage stream and a consumption order.

``simulate(grants, usage, order)`` runs the consumption engine (``allocate``) per customer and
keeps what a person asks of it: which grant pays for each unit of usage, when each grant is
exhausted or expires with credit left (breakage), and the remaining balance over time.

``compare_plan`` simulates a migration plan's source side (the source grants as they stand,
under the source's declared order) and its target side (the planned grants, under the
target's order) against the same usage, and names every customer whose burn order, expiry
losses or balance over time differ, with the rule that causes it.

Every amount is an exact ``Decimal``; the usage stream's total equals what it was asked to be.
"""

from __future__ import annotations

import csv
import decimal
import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

from billing_credits._errors import FieldProblem, InvalidGrantError
from billing_credits._ledger import Usage
from billing_credits._lines import read_text_bounded
from billing_credits._model import LATEST, CreditGrant, GrantStatus, _to_utc
from billing_credits._money import MAX_DIGITS, Money, exact, exact_sum

from ._engine import ConsumptionOrder, Draw, Expiry, _active, allocate
from ._report import BalancePoint, Comparison, CustomerSimulation, Difference, GrantOutcome, Simulation

__all__ = ["compare", "read_usage", "simulate", "simulate_each", "synthetic_note", "synthetic_usage",
           "units_of"]

SYNTHETIC_STEPS = 24
"""Usage events per customer and unit in the synthetic stream."""

DEFAULT_HORIZON = timedelta(days=90)
"""How long the synthetic stream runs when no grant of a customer ever expires."""


# -- results --------------------------------------------------------------------------------


# -- simulate -------------------------------------------------------------------------------


def _start(grant: CreditGrant) -> datetime:
    """When the grant's first window opens (without building its segments)."""
    if grant.schedule:
        return grant.schedule[0].starts_at
    start = grant.effective_at or grant.created_at
    return start if start is not None else grant.segments[0].starts_at


def _end(grant: CreditGrant) -> datetime | None:
    """When the grant's last window ends (None: never)."""
    return grant.schedule[-1].ends_before if grant.schedule else grant.expires_at


def _windowed(grant: CreditGrant, now: datetime | None) -> CreditGrant:
    """A grant without a start (created "now") gets one, so that it has a window."""
    if grant.schedule is None and grant.effective_at is None and grant.created_at is None:
        moment = now or datetime.now(UTC)
        if grant.expires_at is not None and grant.expires_at <= moment:
            moment = grant.expires_at - timedelta(microseconds=1)
        return grant.model_copy(update={"effective_at": moment})
    return grant


def simulate(
    grants: Iterable[CreditGrant],
    usage: Iterable[Usage] | None,
    order: ConsumptionOrder,
    *,
    steps: int = SYNTHETIC_STEPS,
    start: datetime | None = None,
) -> Simulation:
    """Apply ``order`` to ``grants`` and ``usage`` (None: the synthetic stream), per customer.

    Every grant needs an id (it names the grant in the result); voided grants take no part.
    The synthetic stream is steady usage per customer and unit from ``start`` (default: the
    earliest grant's start) until every grant is spent or expired.
    """
    start = _start_arg(start, steps)
    by_customer: dict[str, list[CreditGrant]] = defaultdict(list)
    for grant in grants:
        _check(grant)
        if grant.status is GrantStatus.VOIDED:
            continue
        by_customer[grant.customer_id].append(grant)
    streams: dict[str, list[Usage]] = defaultdict(list)
    synthetic = usage is None
    if usage is not None:
        for event in usage:
            streams[event.customer_id].append(event)
    groups = ((customer, by_customer.get(customer, []), None if synthetic else streams.get(customer, []))
              for customer in sorted(set(by_customer) | set(streams)))
    customers = {sim.customer_id: sim
                 for sim in simulate_each(groups, order, steps=steps, start=start, checked=True)}
    return Simulation(order, customers, usage_note=synthetic_note(steps, start) if synthetic else None)


def _check(grant: object) -> None:
    if not isinstance(grant, CreditGrant):
        raise InvalidGrantError([FieldProblem(
            "grants", f"a {type(grant).__name__} is not a CreditGrant")], model="simulation")
    if grant.status is not GrantStatus.VOIDED and not grant.id:
        raise InvalidGrantError([FieldProblem("id", "a simulated grant needs an id")])


def synthetic_note(steps: int = SYNTHETIC_STEPS, start: datetime | None = None) -> str:
    """How the synthetic usage stream is made, in words (for reports and tables)."""
    begin = f"from {start:%Y-%m-%d %H:%M} UTC" if start is not None else \
        "from the customer's earliest grant start"
    return (f"Usage is synthetic, not the customers' real usage: per customer and unit, {steps} "
            f"equal draws (fewer, of one smallest unit each, when the grants hold fewer; the "
            f"last takes the rest) spread evenly {begin} to the end of the "
            f"last grant window ({DEFAULT_HORIZON.days} days when no window ends), adding up "
            "to exactly what the grants hold; credit that never expires and is still left "
            "after them is spent by one more draw.")


def simulate_each(
    groups: Iterable[tuple[str, Sequence[CreditGrant], Sequence[Usage] | None]],
    order: ConsumptionOrder,
    *,
    steps: int = SYNTHETIC_STEPS,
    start: datetime | None = None,
    checked: bool = False,
) -> Iterator[CustomerSimulation]:
    """``simulate`` one customer at a time: for each (customer, grants, usage or None for the
    synthetic stream), yield its ``CustomerSimulation`` before reading the next, so memory
    holds one customer (see ``_spool.by_customer`` to group a listing that is not grouped)."""
    if not checked:
        start = _start_arg(start, steps)
    for customer, grants, usage in groups:
        mine = []
        for grant in grants:
            if not checked:
                _check(grant)
            if grant.status is not GrantStatus.VOIDED:
                mine.append(_windowed(grant, start))
        mine.sort(key=lambda g: g.id or "")
        synthetic = usage is None
        stream = synthetic_usage(mine, steps=steps, start=start) if usage is None else usage
        result = _run(customer, mine, stream, order)
        if synthetic:
            topped = _top_up(mine, stream, result, order)
            if topped is not None:
                result = _run(customer, mine, topped, order)
        yield result


def _run(customer: str, grants: Sequence[CreditGrant], usage: Sequence[Usage],
         order: ConsumptionOrder) -> CustomerSimulation:
    usage = sorted(usage, key=lambda u: u.at)
    allocation = allocate(grants, usage, order)
    draws = tuple(allocation.draws)
    expiries = tuple(allocation.expired)
    consumed: dict[str, list[Decimal]] = defaultdict(list)
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    for draw in draws:
        consumed[draw.grant_id].append(draw.amount)
        first.setdefault(draw.grant_id, draw.at)
        last[draw.grant_id] = draw.at
    expired: dict[str, list[Decimal]] = defaultdict(list)
    expired_at: dict[str, datetime] = {}
    for expiry in expiries:
        if expiry.amount > 0:
            expired[expiry.grant_id].append(expiry.amount)
            expired_at[expiry.grant_id] = expiry.at
    outcomes = []
    for grant in grants:
        gid = grant.id or ""
        remaining = allocation.remaining.get(gid, Decimal(0))
        spent = exact_sum(consumed[gid])
        lost = exact_sum(expired[gid])
        outcomes.append(GrantOutcome(
            grant_id=gid, name=grant.name or gid, unit=grant.amount.unit_key,
            unit_name=grant.amount.unit.name if grant.amount.unit is not None else None,
            granted=grant.amount.amount, consumed=spent, expired=lost, remaining=remaining,
            first_draw_at=first.get(gid),
            exhausted_at=last.get(gid) if remaining == 0 and not lost and spent else None,
            expired_at=expired_at.get(gid)))
    timeline = _timeline(grants, draws, expiries)
    return CustomerSimulation(customer, tuple(outcomes), tuple(usage), draws, expiries,
                              tuple(allocation.uncovered), timeline, tuple(allocation.ties))


def _timeline(grants: Sequence[CreditGrant], draws: Sequence[Draw],
              expiries: Sequence[Expiry]) -> tuple[BalancePoint, ...]:
    """Each grant's balance after every moment something happened, from its start."""
    index = {g.id: i for i, g in enumerate(grants)}
    events: dict[datetime, list[tuple[int, Decimal]]] = defaultdict(list)
    for draw in draws:
        events[draw.at].append((index[draw.grant_id], draw.amount))
    for expiry in expiries:
        if expiry.amount > 0:
            events[expiry.at].append((index[expiry.grant_id], expiry.amount))
    opening: dict[datetime, list[int]] = defaultdict(list)
    for i, grant in enumerate(grants):
        opening[_start(grant)].append(i)
    moments = sorted(set(events) | set(opening))
    balances = [Decimal(0)] * len(grants)
    points = []
    with decimal.localcontext(exact()):
        for moment in moments:
            started = False
            for i in opening.get(moment, ()):
                balances[i] += grants[i].amount.amount
                started = True
            if started and moment in events:
                points.append(BalancePoint(moment, tuple(balances)))  # before its first draws
            for i, amount in events.get(moment, ()):
                balances[i] -= amount
            points.append(BalancePoint(moment, tuple(balances)))
    return tuple(points)


# -- usage streams --------------------------------------------------------------------------


def _quantum(grants: Sequence[CreditGrant]) -> Decimal:
    exponent = min(0, *(int(g.amount.amount.as_tuple().exponent) for g in grants))
    return Decimal(1).scaleb(exponent)


def synthetic_usage(
    grants: Sequence[CreditGrant], *, steps: int = SYNTHETIC_STEPS, start: datetime | None = None,
) -> list[Usage]:
    """Steady usage per customer and unit until every grant is spent or expired.

    ``steps`` equal draws (the last takes the rest) spread evenly from ``start`` (default the
    earliest grant's start) to the last window's end (``DEFAULT_HORIZON`` when none ends);
    their sum is exactly the grants' total. When grants are scoped to products, the draws go
    to those products in turn.
    """
    start = _start_arg(start, steps)
    out: list[Usage] = []
    groups: dict[tuple[str, str], list[CreditGrant]] = defaultdict(list)
    for grant in grants:
        groups[(grant.customer_id, grant.amount.unit_key)].append(grant)
    for (customer, _unit), group in sorted(groups.items()):
        mine = sorted(group, key=lambda g: (g.id or "", _start(g), g.amount.amount))
        begin = start or min(_start(g) for g in mine)
        ends = [e for e in map(_end, mine) if e is not None]
        finish = max(ends) if ends else (
            begin + DEFAULT_HORIZON if begin <= LATEST - DEFAULT_HORIZON else LATEST)
        if finish <= begin:
            continue
        total = exact_sum(g.amount.amount for g in mine)
        count = max(steps, 1)
        # A context of its own: the step is rounded down on purpose (the last draw takes the
        # rest), whatever traps the caller's context sets.
        quantum = _quantum(mine)
        with decimal.localcontext(decimal.Context(prec=4 * MAX_DIGITS)):
            step = (total / count).quantize(quantum, rounding=ROUND_DOWN)
            if step <= 0:  # fewer than ``count`` of the smallest unit: one unit a draw
                count, step = int(total / quantum), quantum
        products = sorted({p for g in mine for p in g.scope.product_ids})
        cycle: list[str | None] = [*products, None] if products else [None]
        if any(g.scope.product_ids for g in mine) and all(g.scope.product_ids for g in mine):
            cycle = list(products)
        gap = (finish - begin) / count
        unit = mine[0].amount
        with decimal.localcontext(exact()):
            # Built from validated parts (the grant's unit, an exact positive amount); every
            # draw but the last is the same amount, so they share one (immutable) Money.
            each = Money.model_construct(amount=step, currency=unit.currency, unit=unit.unit)
            for i in range(count):
                amount = step if i < count - 1 else total - step * (count - 1)
                if amount <= 0:
                    continue
                out.append(Usage.model_construct(
                    customer_id=customer, amount=each if i < count - 1 else Money.model_construct(
                        amount=amount, currency=unit.currency, unit=unit.unit),
                    at=begin + gap * i, product_id=cycle[i % len(cycle)],
                    reference=f"synthetic-{customer}-{mine[0].amount.unit_key}-{i}"))
    return out


def _start_arg(start: datetime | None, steps: int) -> datetime | None:
    """``start`` in UTC, or ``InvalidGrantError`` for a start the model would refuse (naive, out
    of range) or a ``steps`` that is not a whole number."""
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise InvalidGrantError([FieldProblem("steps", f"must be a whole number, not {steps!r}")],
                                model="simulation")
    if start is None:
        return None
    if not isinstance(start, datetime):
        raise InvalidGrantError([FieldProblem("start", "must be a datetime")], model="simulation")
    try:
        return _to_utc(start)
    except ValueError as error:
        raise InvalidGrantError([FieldProblem("start", str(error))], model="simulation") from None


def _top_up(grants: Sequence[CreditGrant], usage: Sequence[Usage], result: CustomerSimulation,
            order: ConsumptionOrder) -> list[Usage] | None:
    """Credit that never expires and is left after the stream: one last draw spends it."""
    left: dict[str, list[Decimal]] = defaultdict(list)
    template: dict[str, Money] = {}
    for grant, outcome in zip(grants, result.grants, strict=True):
        if outcome.remaining > 0 and _end(grant) is None:
            left[grant.amount.unit_key].append(outcome.remaining)
            template[grant.amount.unit_key] = grant.amount
    if not left or not usage:
        return None
    last = max(u.at for u in usage)  # a second after the stream, or its last instant (LATEST)
    when = last + timedelta(seconds=1) if last <= LATEST - timedelta(seconds=1) else LATEST
    # Built from validated parts, as ``synthetic_usage`` builds its draws: the grants' unit and
    # the exact sum of what they have left, which may have more digits than a Money given by a
    # caller may (several grants' rests of up to MAX_DIGITS digits each), and must not be
    # refused or rounded: it is spent exactly.
    extra = [Usage.model_construct(
        customer_id=result.customer_id,
        amount=Money.model_construct(amount=exact_sum(v), currency=template[unit].currency,
                                     unit=template[unit].unit),
        at=when, reference=f"synthetic-{result.customer_id}-{unit}-rest")
        for unit, v in sorted(left.items())]
    return [*usage, *extra]


_COLUMNS = ("customer_id", "at", "amount")


def read_usage(
    source: str | Path | Iterable[str],
    *,
    units: Mapping[str, Money] | Callable[[str], Money | None] | None = None,
    name: str | None = None,
) -> list[Usage]:
    """Read usage from CSV (a header row naming ``customer_id, at, amount[, product]``) or
    JSON lines (objects with those keys), exactly.

    Optional columns/keys: ``product`` (or ``product_id``), ``reference``, ``currency`` or
    ``unit``. Without a unit, ``units`` gives the customer's (a mapping or a callable, e.g.
    the unit of their grants). Any bad line raises ``InvalidGrantError`` naming the line.
    """
    if isinstance(source, str | Path):
        label = name or str(source)
        try:
            text = read_text_bounded(source, label)
        except (OSError, UnicodeDecodeError) as error:
            raise _bad(label, 0, "", f"cannot read usage: {error}") from None
    else:
        label = name or "usage"
        text = "".join(line if line.endswith("\n") else line + "\n" for line in source)
    rows: list[tuple[int, dict[str, Any]]] = []
    stripped = text.lstrip()
    if stripped.startswith("{"):
        for number, line in enumerate(io.StringIO(text), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line, parse_float=Decimal, parse_int=Decimal)
            except ValueError as error:
                raise _bad(label, number, "", f"invalid JSON: {error}") from None
            except ArithmeticError:  # a number no Decimal holds (1e9999999999999999999)
                raise _bad(label, number, "", "a number out of range") from None
            if not isinstance(data, dict):
                raise _bad(label, number, "", "expected a JSON object")
            rows.append((number, data))
    else:
        reader = csv.DictReader(io.StringIO(text))
        try:
            header = [h.strip() for h in reader.fieldnames or ()]
            missing = [c for c in _COLUMNS if c not in header]
            if missing:
                raise _bad(label, 1, "", f"header must name {', '.join(_COLUMNS)}[, product]; "
                           f"missing {', '.join(missing)}")
            reader.fieldnames = header
            for row in reader:
                extra = row.pop(None, None)
                if extra:
                    raise _bad(label, reader.line_num, "",
                               f"more fields than the header names: {extra}")
                rows.append((reader.line_num,
                             {k: v for k, v in row.items() if v not in (None, "")}))
        except csv.Error as error:  # a field past csv's limit (131,072 characters), a stray quote
            raise _bad(label, reader.line_num, "", f"not CSV: {error}") from None
    return [_usage(label, number, data, units) for number, data in rows]


def _bad(label: str, number: int, column: str, message: str) -> InvalidGrantError:
    where = f"{label}:{number}" + (f".{column}" if column else "")
    return InvalidGrantError([FieldProblem(where, message)], model="usage")


def _usage(label: str, number: int, data: dict[str, Any],
           units: Mapping[str, Money] | Callable[[str], Money | None] | None) -> Usage:
    for column in _COLUMNS:
        if data.get(column) in (None, ""):
            raise _bad(label, number, column, "missing")
    customer = str(data["customer_id"])
    raw_amount = data["amount"]
    if isinstance(raw_amount, float | bool):
        raise _bad(label, number, "amount", "must be a decimal number")
    try:
        amount = Decimal(str(raw_amount).strip())
    except decimal.InvalidOperation:
        raise _bad(label, number, "amount", f"{raw_amount!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise _bad(label, number, "amount", "must be a finite number greater than zero")
    money: dict[str, Any] = {"amount": amount}
    if data.get("currency"):
        money["currency"] = str(data["currency"])
    elif data.get("unit"):
        money["unit"] = {"id": str(data["unit"])}
    else:
        found = (units(customer) if callable(units) else units.get(customer)) if units else None
        if found is None:
            raise _bad(label, number, "currency", f"no unit given and none known for customer "
                       f"{customer!r}: add a currency or unit column")
        money.update(currency=found.currency, unit=found.unit)
    product = data.get("product", data.get("product_id"))
    try:
        return Usage.model_validate({
            "customer_id": customer, "amount": money, "at": data["at"],
            "product_id": None if product in (None, "") else str(product),
            "reference": str(data["reference"]) if data.get("reference") else f"{label}:{number}",
        })
    except InvalidGrantError as error:
        raise InvalidGrantError(
            [FieldProblem(f"{label}:{number}.{p.field.split('.')[0]}", p.message)
             for p in error.problems],
            model="usage") from None


def units_of(grants: Iterable[CreditGrant]) -> Callable[[str], Money | None]:
    """The unit of each customer's grants, when they use exactly one (for ``read_usage``)."""
    found: dict[str, dict[str, Money]] = defaultdict(dict)
    for grant in grants:
        found[grant.customer_id][grant.amount.unit_key] = grant.amount

    def unit(customer: str) -> Money | None:
        mine = found.get(customer, {})
        return next(iter(mine.values())) if len(mine) == 1 else None

    return unit


# -- comparing two sides --------------------------------------------------------------------


def deciding_rule(order: ConsumptionOrder, first: CreditGrant, second: CreditGrant, *,
                  at: datetime | None = None, product_id: str | None = None) -> str:
    """The first rule of ``order`` that tells two grants apart (for usage at ``at`` of
    ``product_id``), in words."""
    one = _active(first, at) if at is not None else None
    two = _active(second, at) if at is not None else None
    for rule in order.rules:
        if rule.sort_part(first, one, product_id) != rule.sort_part(second, two, product_id):
            return f"{rule.name} ({'lowest' if rule.direction == 'asc' else 'highest'} first)"
    if order.documented_tie_break:
        return "grant id (its documented last resort)"
    return "nothing documented (the engine breaks the tie by grant id)"


def explain(source_order: ConsumptionOrder, target_order: ConsumptionOrder,
            source_pair: tuple[CreditGrant, CreditGrant],
            target_pair: tuple[CreditGrant, CreditGrant], names: tuple[str, str], *,
            at: datetime | None = None, product_id: str | None = None) -> str:
    """Why the sides burn two grants in different orders: the rule each side decides on."""
    source_rule = deciding_rule(source_order, *source_pair, at=at, product_id=product_id)
    target_rule = deciding_rule(target_order, *target_pair, at=at, product_id=product_id)
    first_rules = {o.rules[0].name for o in (source_order, target_order) if o.rules}
    tie = len(first_rules) == 1 and not any(r.startswith(tuple(first_rules))
                                            for r in (source_rule, target_rule))
    verb = "breaks the tie" if tie else "orders them"
    return (f"{source_order.provider} {verb} between {names[0]} and {names[1]} on {source_rule}; "
            f"{target_order.provider} on {target_rule}")


def compare(source: Simulation, target: Simulation, *, source_grants: Mapping[str, CreditGrant],
            target_grants: Mapping[str, CreditGrant], labels: Mapping[str, str],
            names: Mapping[str, str] | None = None) -> Comparison:
    """Compare two simulations of the same customers; grants matched through ``labels``."""
    comparison = Comparison(source, target, dict(labels), dict(names or {}))
    for customer in sorted(set(source.customers) | set(target.customers)):
        difference = _compare_customer(comparison, customer, source_grants, target_grants)
        if difference is not None:
            comparison.differences.append(difference)
    return comparison


def _draw_sequence(comparison: Comparison, sim: CustomerSimulation | None) -> list[tuple[int, str, Decimal]]:
    if sim is None:
        return []
    return [(d.usage_index, comparison.label(d.grant_id), d.amount) for d in sim.draws]


def _collapse(labels: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for label in labels:
        if not out or out[-1] != label:
            out.append(label)
    return tuple(out)


def _compare_customer(comparison: Comparison, customer: str,
                      source_grants: Mapping[str, CreditGrant],
                      target_grants: Mapping[str, CreditGrant]) -> Difference | None:
    src = comparison.source.customers.get(customer)
    dst = comparison.target.customers.get(customer)
    src_draws = _draw_sequence(comparison, src)
    dst_draws = _draw_sequence(comparison, dst)
    kinds = []
    if _collapse(label for _, label, _ in src_draws) != _collapse(label for _, label, _ in dst_draws):
        kinds.append("burn order")
    src_expired = _expired_by_label(comparison, src)
    dst_expired = _expired_by_label(comparison, dst)
    if src_expired != dst_expired:
        kinds.append("expiry losses")
    if _grant_timeline(comparison, src) != _grant_timeline(comparison, dst):
        kinds.append("balance over time")
    undetermined = _undocumented_tie(comparison, src, dst, source_grants, target_grants)
    if undetermined and "burn order" not in kinds:
        kinds.insert(0, "burn order")
    if not kinds:
        return None
    src_order = _collapse(label for _, label, _ in src_draws)
    dst_order = _collapse(label for _, label, _ in dst_draws)
    rule = _why(comparison, src, dst, src_draws, dst_draws, source_grants, target_grants,
                src_expired, dst_expired)
    if undetermined and (src_draws == dst_draws or rule.startswith("the same grants")):
        rule = undetermined
    return Difference(customer, tuple(kinds), rule, src_order, dst_order,
                      exact_sum(src_expired.values()), exact_sum(dst_expired.values()))


def _undocumented_tie(comparison: Comparison, src: CustomerSimulation | None,
                      dst: CustomerSimulation | None, source_grants: Mapping[str, CreditGrant],
                      target_grants: Mapping[str, CreditGrant]) -> str | None:
    """A tie the target breaks by nothing documented, between grants the source orders."""
    if src is None or dst is None:
        return None
    src_ids = {comparison.label(g.grant_id): g.grant_id for g in src.grants}
    for tie in dst.ties:
        event = dst.usage[tie.usage_index]
        for i, first in enumerate(tie.grant_ids):
            for second in tie.grant_ids[i + 1:]:
                a, b = comparison.label(first), comparison.label(second)
                if a not in src_ids or b not in src_ids:
                    continue
                s_first, s_second = source_grants[src_ids[a]], source_grants[src_ids[b]]
                rule = deciding_rule(comparison.source.order, s_first, s_second, at=event.at,
                                     product_id=event.product_id)
                if rule.startswith("nothing documented"):
                    continue
                names = (comparison.names.get(a, a), comparison.names.get(b, b))
                return explain(comparison.source.order, comparison.target.order,
                               (s_first, s_second), (target_grants[first], target_grants[second]),
                               names, at=event.at, product_id=event.product_id)
    return None


def _expired_by_label(comparison: Comparison, sim: CustomerSimulation | None) -> dict[str, Decimal]:
    out: dict[str, list[Decimal]] = defaultdict(list)
    for expiry in sim.expiries if sim else ():
        if expiry.amount > 0:
            out[comparison.label(expiry.grant_id)].append(expiry.amount)
    return {k: exact_sum(v) for k, v in sorted(out.items())}


def _grant_timeline(comparison: Comparison,
                    sim: CustomerSimulation | None) -> list[tuple[datetime, str, Decimal]]:
    """Each grant's balance (by common label) after each moment it changed."""
    if sim is None:
        return []
    labels = [comparison.label(g.grant_id) for g in sim.grants]
    out: list[tuple[datetime, str, Decimal]] = []
    last: dict[str, Decimal] = {}
    for point in sim.timeline:
        for label, value in sorted(zip(labels, point.balances, strict=True)):
            if last.get(label) != value:
                out.append((point.at, label, value))
                last[label] = value
    return out


def _why(comparison: Comparison, src: CustomerSimulation | None, dst: CustomerSimulation | None,
         src_draws: list[tuple[int, str, Decimal]], dst_draws: list[tuple[int, str, Decimal]],
         source_grants: Mapping[str, CreditGrant], target_grants: Mapping[str, CreditGrant],
         src_expired: Mapping[str, Decimal], dst_expired: Mapping[str, Decimal]) -> str:
    src_by_label = {comparison.label(g.grant_id): g.grant_id for g in (src.grants if src else ())}
    dst_by_label = {comparison.label(g.grant_id): g.grant_id for g in (dst.grants if dst else ())}
    # The first usage the sides pay from different grants, at the first grant that differs.
    src_payers: dict[int, list[str]] = defaultdict(list)
    dst_payers: dict[int, list[str]] = defaultdict(list)
    for index, label, _ in src_draws:
        src_payers[index].append(label)
    for index, label, _ in dst_draws:
        dst_payers[index].append(label)
    for index in sorted(set(src_payers) & set(dst_payers)):
        pairs = [(a, b) for a, b in zip(src_payers[index], dst_payers[index], strict=False) if a != b]
        if not pairs:
            continue
        a, b = pairs[0]
        if a in src_by_label and b in src_by_label and a in dst_by_label and b in dst_by_label:
            s_first, s_second = source_grants[src_by_label[a]], source_grants[src_by_label[b]]
            t_first, t_second = target_grants[dst_by_label[a]], target_grants[dst_by_label[b]]
            names = (comparison.names.get(a, a), comparison.names.get(b, b))
            event = src.usage[index] if src is not None else None
            return explain(comparison.source.order, comparison.target.order,
                           (s_first, s_second), (t_first, t_second), names,
                           at=event.at if event else None,
                           product_id=event.product_id if event else None)
        break
    missing = sorted(set(src_by_label) ^ set(dst_by_label))
    if missing:
        return "the sides hold different grants: " + ", ".join(
            comparison.names.get(m, m) for m in missing)
    for label in sorted(set(src_expired) | set(dst_expired)):
        a_loss, b_loss = src_expired.get(label, Decimal(0)), dst_expired.get(label, Decimal(0))
        if a_loss != b_loss:
            return (f"{comparison.names.get(label, label)} expires with {a_loss} left on "
                    f"{comparison.source.order.provider}, {b_loss} on "
                    f"{comparison.target.order.provider} (its window or its place in the order "
                    "differs)")
    return "the same grants are drawn in another proportion or at other times (windows differ)"


# -- plans ----------------------------------------------------------------------------------


# -- preserve-order -------------------------------------------------------------------------


