"""What a simulation finds, and its self-contained HTML report: inline SVG burn-down charts.

The results (``Simulation``, ``CustomerSimulation``, ``GrantOutcome``, ``BalancePoint``,
``Comparison``, ``Difference``) and their rendering live together, so the records can render
themselves without an import circle. The report is one file, no network, nothing external:
per customer, each grant's remaining balance over time as a stacked step chart, source and
target side by side, customers that differ first, a summary table of them, and a print
stylesheet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any

from billing_credits._ledger import Usage
from billing_credits._money import exact_sum

from ._engine import ConsumptionOrder, Draw, Expiry, Tie

__all__ = [
    "BalancePoint", "Comparison", "CustomerSimulation", "Difference", "GrantOutcome", "Simulation",
    "render_comparison", "render_simulation",
]

@dataclass(frozen=True)
class GrantOutcome:
    """What became of one grant: consumed, expired unused (breakage) and left, exactly."""

    grant_id: str
    name: str
    unit: str
    granted: Decimal
    consumed: Decimal
    expired: Decimal
    remaining: Decimal
    first_draw_at: datetime | None
    exhausted_at: datetime | None
    """When the last of it was consumed (None while any is left or it expired with credit)."""
    expired_at: datetime | None
    """When a window ended with credit left (the last such moment)."""

@dataclass(frozen=True)
class BalancePoint:
    """Each grant's balance (what is left now or in windows to come) after the events at ``at``."""

    at: datetime
    balances: tuple[Decimal, ...]
    """One per grant, in ``CustomerSimulation.grants`` order."""

@dataclass(frozen=True)
class CustomerSimulation:
    """One customer's simulated consumption."""

    customer_id: str
    grants: tuple[GrantOutcome, ...]
    usage: tuple[Usage, ...]
    draws: tuple[Draw, ...]
    expiries: tuple[Expiry, ...]
    uncovered: tuple[tuple[int, Decimal], ...]
    timeline: tuple[BalancePoint, ...]
    ties: tuple[Tie, ...] = ()
    """Usage paid from grants the order ranks equal, where the vendor documents no tie-break."""

    @property
    def burn_order(self) -> tuple[str, ...]:
        """Grant ids in the order usage draws on them (a repeated run counted once)."""
        order: list[str] = []
        for draw in self.draws:
            if not order or order[-1] != draw.grant_id:
                order.append(draw.grant_id)
        return tuple(order)

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g.unit for g in self.grants))

    def outcome(self, grant_id: str) -> GrantOutcome:
        return next(g for g in self.grants if g.grant_id == grant_id)

    def totals(self) -> dict[str, dict[str, Decimal]]:
        """Per unit: granted, consumed, expired, remaining and uncovered usage."""
        out: dict[str, dict[str, Decimal]] = {}
        for unit in self.units:
            mine = [g for g in self.grants if g.unit == unit]
            out[unit] = {
                "granted": exact_sum(g.granted for g in mine),
                "consumed": exact_sum(g.consumed for g in mine),
                "expired": exact_sum(g.expired for g in mine),
                "remaining": exact_sum(g.remaining for g in mine),
                "uncovered": exact_sum(amount for index, amount in self.uncovered
                                       if self.usage[index].amount.unit_key == unit),
            }
        return out

@dataclass(frozen=True)
class Simulation:
    """The result of ``simulate``: per customer, who paid for what and what was lost."""

    order: ConsumptionOrder
    customers: Mapping[str, CustomerSimulation]

    def totals(self) -> dict[str, dict[str, dict[str, Decimal]]]:
        """Per customer and unit: granted, consumed, expired, remaining, uncovered."""
        return {c: sim.totals() for c, sim in sorted(self.customers.items())}

    def html(self, *, title: str = "Credit burn-down") -> str:
        """A self-contained HTML report: a stacked burn-down chart per customer and unit."""
        return render_simulation(self, title=title)

    def as_json(self) -> list[dict[str, Any]]:
        """Per customer: burn order, each grant's outcome and the totals, amounts as text."""
        return [{
            "customer_id": customer,
            "burn_order": list(sim.burn_order),
            "grants": [{"grant_id": g.grant_id, "name": g.name, "unit": g.unit,
                        "granted": str(g.granted), "consumed": str(g.consumed),
                        "expired": str(g.expired), "remaining": str(g.remaining),
                        "exhausted_at": g.exhausted_at.isoformat() if g.exhausted_at else None,
                        "expired_at": g.expired_at.isoformat() if g.expired_at else None}
                       for g in sim.grants],
            "totals": {u: {k: str(v) for k, v in t.items()} for u, t in sim.totals().items()},
        } for customer, sim in sorted(self.customers.items())]

@dataclass(frozen=True)
class Difference:
    """One customer whose consumption differs between the two sides, and why."""

    customer_id: str
    kinds: tuple[str, ...]
    """Among "burn order", "expiry losses", "balance over time"."""
    rule: str
    """The rule that causes it, in words (e.g. "metronome breaks the tie on expires_at …")."""
    source_order: tuple[str, ...]
    target_order: tuple[str, ...]
    source_expired: Decimal
    target_expired: Decimal
    fixable: bool = True
    """False when no choice of target priorities can make the sides identical."""

    def line(self) -> str:
        verb = "differ" if len(self.kinds) > 1 else "differs"
        return f"{self.customer_id}: {', '.join(self.kinds)} {verb}: {self.rule}"

@dataclass
class Comparison:
    """Two simulations of the same customers and usage; grants named by a common label."""

    source: Simulation
    target: Simulation
    labels: dict[str, str] = field(default_factory=dict)
    """Side-specific grant id → the common label (the source grant, with its segment)."""
    names: dict[str, str] = field(default_factory=dict)
    """Common label → a readable name."""
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def label(self, grant_id: str) -> str:
        return self.labels.get(grant_id, grant_id)

    def lines(self) -> list[str]:
        return [d.line() for d in self.differences]

    def html(self, *, title: str = "Credit burn-down: source and target",
             source_name: str | None = None, target_name: str | None = None) -> str:
        """A self-contained HTML report: differing customers first, both sides side by side."""
        return render_comparison(self, title=title, source_name=source_name,
                                 target_name=target_name)

    def as_json(self) -> list[dict[str, Any]]:
        return [{"customer_id": d.customer_id, "differs": list(d.kinds), "rule": d.rule,
                 "source_order": list(d.source_order), "target_order": list(d.target_order),
                 "source_expired": str(d.source_expired), "target_expired": str(d.target_expired),
                 "fixable": d.fixable} for d in self.differences]


WIDTH = 420
HEIGHT = 150
PAD_LEFT = 4
PAD_BOTTOM = 4
PAD_TOP = 16
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")

_CSS = """
:root{--fg:#1d1d1f;--muted:#666;--line:#ddd;--bad:#b3261e}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
margin:0 auto;max-width:1100px;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}
h3{font-size:13px;margin:0 0 4px;color:var(--muted);font-weight:600}
.meta{color:var(--muted);margin:0 0 16px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:12.5px}
th,td{border-bottom:1px solid var(--line);padding:3px 6px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.customer{border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin:14px 0}
.customer.differs{border-color:var(--bad)}
.badge{display:inline-block;font-size:11px;padding:1px 7px;border-radius:9px;
background:#eee;margin-left:6px;vertical-align:middle}
.differs .badge{background:var(--bad);color:#fff}
.rule{color:var(--bad);margin:0 0 8px}
.sides{display:flex;gap:16px;flex-wrap:wrap}
.side{flex:1 1 420px;min-width:0;overflow-x:auto}
svg.burndown{width:100%;height:auto;max-width:420px;display:block;background:#fafafa;
border:1px solid var(--line)}
.axis{font-size:10px;fill:var(--muted)}
.legend{list-style:none;padding:0;margin:4px 0;font-size:12px;display:flex;flex-wrap:wrap;gap:4px 12px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
.orders{font-size:12px;color:var(--muted)}
@media print{
body{max-width:none;padding:0;font-size:10pt}
.customer{break-inside:avoid;page-break-inside:avoid;border-color:#999}
.summary{break-after:page}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
a{color:inherit;text-decoration:none}
}
"""


def _money(value: Decimal) -> str:
    return f"{value:f}"


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
            + "".join(body) + "</body></html>\n")


def _order_text(simulation: Simulation) -> str:
    order = simulation.order
    rules = ", ".join(f"{r.name} {r.direction}" for r in order.rules)
    tie = "" if order.documented_tie_break else "; no documented tie-break (ties by grant id)"
    return f"{escape(order.provider)}: {escape(rules)}{escape(tie)}"


def _colors(labels: Sequence[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _chart(sim: CustomerSimulation | None, unit: str, side: str, labels: dict[str, str],
           colors: dict[str, str], span: tuple[datetime, datetime], top: Decimal,
           names: dict[str, str]) -> str:
    """A stacked step chart of each grant's balance in ``unit`` over ``span``."""
    title = f"{side}: balance per grant over time ({unit})"
    head = (f'<svg class="burndown" data-side="{escape(side)}" data-unit="{escape(unit)}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT + 14}" role="img" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{escape(title)}</title>")
    if sim is None:
        return head + f'<text class="axis" x="8" y="20">no grants on {escape(side)}</text></svg>'
    order = [i for i, g in enumerate(sim.grants) if g.unit == unit]
    order.sort(key=lambda i: list(colors).index(labels.get(sim.grants[i].grant_id, sim.grants[i].grant_id)))
    start, end = span
    seconds = max((end - start).total_seconds(), 1.0)
    width = WIDTH - PAD_LEFT
    height = HEIGHT - PAD_BOTTOM

    def x(moment: datetime) -> str:
        return f"{PAD_LEFT + width * (moment - start).total_seconds() / seconds:.1f}"

    def y(value: Decimal) -> str:
        scaled = Decimal(height) - (value * (height - PAD_TOP) / top if top > 0 else Decimal(0))
        return f"{scaled:.1f}"

    base = y(Decimal(0))
    parts = [head]
    # Painter's order: the full stack first, then each lower cumulative layer over it.
    for depth in range(len(order), 0, -1):
        layer = order[:depth]
        grant = sim.grants[order[depth - 1]]
        label = labels.get(grant.grant_id, grant.grant_id)
        path = [f"M{x(sim.timeline[0].at) if sim.timeline else PAD_LEFT} {base}"]
        for point in sim.timeline:
            value = sum((point.balances[i] for i in layer), Decimal(0))
            path.append(f"H{x(point.at)}V{y(value)}")
        path.append(f"H{x(end)}V{base}Z")
        parts.append(f'<path class="layer" data-grant="{escape(label)}" fill="{colors[label]}" '
                     f'd="{"".join(path)}"><title>{escape(names.get(label, label))}</title></path>')
    parts.append(f'<line x1="{PAD_LEFT}" y1="{base}" x2="{WIDTH}" y2="{base}" stroke="#999"/>')
    parts.append(f'<text class="axis" x="{PAD_LEFT + 2}" y="11">{escape(_money(top))} {escape(unit)}'
                 "</text>")
    parts.append(f'<text class="axis" x="{PAD_LEFT}" y="{HEIGHT + 12}">{_when(start)}</text>')
    parts.append(f'<text class="axis" x="{WIDTH}" y="{HEIGHT + 12}" text-anchor="end">'
                 f"{_when(end)}</text></svg>")
    return "".join(parts)


def _ended(grant: GrantOutcome) -> str:
    if grant.expired_at is not None:
        return f"expired {_day(grant.expired_at)}"
    if grant.exhausted_at is not None:
        return f"spent {_day(grant.exhausted_at)}"
    return ""


def _day(moment: datetime) -> str:
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M")


def _grant_table(sim: CustomerSimulation | None, unit: str, labels: dict[str, str],
                 colors: dict[str, str], names: dict[str, str]) -> str:
    if sim is None:
        return ""
    rows = ['<table class="grants"><thead><tr><th>grant</th><th class="n">granted</th>'
            '<th class="n">used</th><th class="n" title="expired unused">lost</th>'
            '<th class="n">left</th><th>ended</th></tr></thead><tbody>']
    for grant in sim.grants:
        if grant.unit != unit:
            continue
        label = labels.get(grant.grant_id, grant.grant_id)
        rows.append(
            f'<tr><td><span class="sw" style="background:{colors.get(label, "#999")}"></span>'
            f"{escape(names.get(label, grant.name))}</td>"
            f'<td class="n">{_money(grant.granted)}</td><td class="n">{_money(grant.consumed)}</td>'
            f'<td class="n">{_money(grant.expired)}</td><td class="n">{_money(grant.remaining)}</td>'
            f"<td>{_ended(grant)}</td></tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def _stack(sim: CustomerSimulation, balances: tuple[Decimal, ...], unit: str) -> Decimal:
    return sum((v for g, v in zip(sim.grants, balances, strict=True) if g.unit == unit), Decimal(0))


def _customer(customer: str, sides: list[tuple[str, Simulation]], labels: dict[str, str],
              names: dict[str, str], difference: Difference | None) -> str:
    sims = [(side, sim.customers.get(customer)) for side, sim in sides]
    ordered = [labels.get(g.grant_id, g.grant_id) for _, sim in sims for g in (sim.grants if sim else ())]
    colors = _colors(list(dict.fromkeys(ordered)))
    units = list(dict.fromkeys(g.unit for _, sim in sims for g in (sim.grants if sim else ())))
    cls = "customer differs" if difference else "customer"
    badge = "differs" if difference else ("same" if len(sides) > 1 else "")
    out = [f'<section class="{cls}" id="c-{escape(customer)}" data-customer="{escape(customer)}" '
           f'data-differs="{"true" if difference else "false"}">'
           f"<h2>{escape(customer)}" + (f'<span class="badge">{badge}</span>' if badge else "")
           + "</h2>"]
    if difference:
        verb = "differ" if len(difference.kinds) > 1 else "differs"
        out.append(f'<p class="rule">{escape(", ".join(difference.kinds))} {verb}: '
                   f"{escape(difference.rule)}</p>")
    for unit in units:
        moments = [p.at for _, sim in sims for p in (sim.timeline if sim else ())]
        span = (min(moments), max(moments)) if moments else (datetime.min, datetime.min)
        top = max((_stack(sim, p.balances, unit) for _, sim in sims if sim is not None
                   for p in sim.timeline), default=Decimal(0))
        out.append('<div class="sides">')
        for side, sim in sims:
            order = " → ".join(names.get(labels.get(g, g), g) for g in (sim.burn_order if sim else ())
                               if sim and sim.outcome(g).unit == unit)
            out.append(f'<div class="side"><h3>{escape(side)}</h3>'
                       + _chart(sim, unit, side, labels, colors, span, top, names)
                       + f'<p class="orders">burn order: {escape(order) or "none"}</p>'
                       + _grant_table(sim, unit, labels, colors, names) + "</div>")
        out.append("</div>")
    out.append("</section>")
    return "".join(out)


def render_simulation(simulation: Simulation, *, title: str = "Credit burn-down") -> str:
    """One simulation as a self-contained HTML page (one chart per customer and unit)."""
    names = {g.grant_id: g.name for c in simulation.customers.values() for g in c.grants}
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{len(simulation.customers)} customer(s); order '
            f"{_order_text(simulation)}</p>"]
    sides = [(simulation.order.provider, simulation)]
    body += [_customer(customer, sides, {}, names, None) for customer in sorted(simulation.customers)]
    return _page(title, body)


def render_comparison(comparison: Comparison, *, title: str = "Credit burn-down: source and target",
                      source_name: str | None = None, target_name: str | None = None) -> str:
    """A comparison as a self-contained HTML page: differing customers first, a summary."""
    source = source_name or f"source ({comparison.source.order.provider})"
    target = target_name or f"target ({comparison.target.order.provider})"
    differing = {d.customer_id: d for d in comparison.differences}
    customers = sorted(set(comparison.source.customers) | set(comparison.target.customers))
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{len(customers)} customer(s), {len(differing)} differ. '
            f"Orders: {_order_text(comparison.source)} | {_order_text(comparison.target)}</p>",
            '<section class="summary"><h2>Customers whose consumption differs</h2>']
    if differing:
        body.append('<table class="differences"><thead><tr><th>customer</th><th>differs</th>'
                    '<th>why</th><th class="n">expired on source</th>'
                    '<th class="n">expired on target</th></tr></thead><tbody>')
        body += [
            f'<tr><td><a href="#c-{escape(d.customer_id)}">{escape(d.customer_id)}</a>'
                        f"</td><td>{escape(', '.join(d.kinds))}</td><td>{escape(d.rule)}</td>"
                        f'<td class="n">{_money(d.source_expired)}</td>'
                        f'<td class="n">{_money(d.target_expired)}</td></tr>'
            for d in comparison.differences]
        body.append("</tbody></table>")
    else:
        body.append("<p>None: every customer burns the same grants in the same order, with the "
                    "same expiry losses and balance over time.</p>")
    body.append("</section>")
    sides = [(source, comparison.source), (target, comparison.target)]
    first = [d.customer_id for d in comparison.differences]
    rest = [c for c in customers if c not in differing]
    body += [_customer(customer, sides, comparison.labels, comparison.names,
                       differing.get(customer)) for customer in first + rest]
    return _page(title, body)
