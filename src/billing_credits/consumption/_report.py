"""What a simulation finds, and its self-contained HTML report: inline SVG burn-down charts.

The results (``Simulation``, ``CustomerSimulation``, ``GrantOutcome``, ``BalancePoint``,
``Comparison``, ``Difference``) and their rendering live together, so the records can render
themselves without an import circle. The report is one file, no network, nothing external:
per customer, each grant's remaining balance over time as a stacked step chart, source and
target side by side, customers that differ first, a summary table of them, and a print
stylesheet.
"""

from __future__ import annotations

import decimal
import io
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from html import escape
from typing import Any, TextIO

from billing_credits._ledger import Usage
from billing_credits._money import exact, exact_sum

from ._engine import ConsumptionOrder, Draw, Expiry, Tie

__all__ = [
    "BalancePoint",
    "Comparison",
    "CustomerSimulation",
    "Difference",
    "GrantOutcome",
    "RunningTotals",
    "Simulation",
    "SimulationReport",
    "burn_order",
    "collapse_runs",
    "customer_json",
    "render_comparison",
    "render_simulation",
    "tie_notes",
    "unit_label",
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
    unit_name: str | None = None
    """The unit's display name, where the vendor gives one (a custom credit unit's name)."""

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
        """The units of the grants, then of any usage in another unit (which nothing covers)."""
        return tuple(dict.fromkeys([*(g.unit for g in self.grants),
                                    *(u.amount.unit_key for u in self.usage)]))

    def outcome(self, grant_id: str) -> GrantOutcome:
        return next(g for g in self.grants if g.grant_id == grant_id)

    def totals(self) -> dict[str, dict[str, Decimal]]:
        """Per unit: granted, consumed, expired, remaining and uncovered usage."""
        return {unit: dict(values) for unit, values in self.unit_totals.items()}

    @cached_property
    def unit_totals(self) -> dict[str, dict[str, Decimal]]:
        """``totals()``, computed once (do not change it: ``totals()`` gives a copy)."""
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
    usage_note: str | None = None
    """How the usage was made, when it is synthetic (None: the caller's usage)."""

    def totals(self) -> dict[str, dict[str, dict[str, Decimal]]]:
        """Per customer and unit: granted, consumed, expired, remaining, uncovered."""
        return {c: sim.totals() for c, sim in sorted(self.customers.items())}

    def html(self, *, title: str = "Credit burn-down",
             customer_names: Mapping[str, str] | None = None) -> str:
        """A self-contained HTML report: a stacked burn-down chart per customer and unit."""
        return render_simulation(self, title=title, customer_names=customer_names)

    def as_json(self) -> list[dict[str, Any]]:
        """Per customer: burn order, each grant's outcome and the totals, amounts as text."""
        return [customer_json(sim, self.order) for _, sim in sorted(self.customers.items())]


def customer_json(sim: CustomerSimulation, order: ConsumptionOrder) -> dict[str, Any]:
    """One customer of ``Simulation.as_json`` (the CLI streams these)."""
    return {
        "customer_id": sim.customer_id,
        "burn_order": list(sim.burn_order),
        "grants": [{"grant_id": g.grant_id, "name": g.name, "unit": g.unit,
                    "granted": str(g.granted), "consumed": str(g.consumed),
                    "expired": str(g.expired), "remaining": str(g.remaining),
                    "exhausted_at": g.exhausted_at.isoformat() if g.exhausted_at else None,
                    "expired_at": g.expired_at.isoformat() if g.expired_at else None}
                   for g in sim.grants],
        "totals": {u: {k: str(v) for k, v in t.items()} for u, t in sim.totals().items()},
        "undocumented_ties": tie_notes(sim, order),
    }

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

    def grant_name(self, grant_id: str) -> str:
        label = self.label(grant_id)
        return self.names.get(label, label)

    def tie_lines(self, side: str = "target") -> list[str]:
        """Per customer, where ``side``'s order ("source" or "target") rests on a tie its
        vendor documents no rule for (the simulation's draw between them is a guess)."""
        return [f"{customer}: {note}" for customer, notes in self.ties(side).items()
                for note in notes]

    def ties(self, side: str = "target") -> dict[str, list[str]]:
        """``tie_lines`` per customer (only customers with such a tie)."""
        simulation = self.target if side == "target" else self.source
        found = {customer: tie_notes(sim, simulation.order, self.grant_name)
                 for customer, sim in sorted(simulation.customers.items())}
        return {customer: notes for customer, notes in found.items() if notes}

    def html(self, *, title: str = "Credit burn-down: source and target",
             source_name: str | None = None, target_name: str | None = None) -> str:
        """A self-contained HTML report: differing customers first, both sides side by side."""
        return render_comparison(self, title=title, source_name=source_name,
                                 target_name=target_name)

    def as_json(self) -> list[dict[str, Any]]:
        ties = self.ties("target")
        return [{"customer_id": d.customer_id, "differs": list(d.kinds), "rule": d.rule,
                 "undocumented_ties": ties.get(d.customer_id, []),
                 "source_order": list(d.source_order), "target_order": list(d.target_order),
                 "source_expired": str(d.source_expired), "target_expired": str(d.target_expired),
                 "fixable": d.fixable} for d in self.differences]


WIDTH = 460
HEIGHT = 200
PLOT_LEFT = 64
PLOT_RIGHT = WIDTH - 14
PLOT_TOP = 12
PLOT_BOTTOM = HEIGHT - 42
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")

LOST = ("lost: credit that expired unused, left in a grant when its window ended (breakage); "
        "the customer can no longer use it.")
UNCOVERED = "not covered: usage no grant could pay (no open grant in its unit and scope had credit)."
SYNTHETIC_UNCOVERED = (
    "With synthetic usage, \"not covered\" is not a shortfall to bill: the stream spends exactly "
    "what the grants hold, so credit lost to an expiry comes back as usage nothing could pay.")

_CSS = """
:root{--fg:#1d1d1f;--muted:#555;--line:#ddd;--bad:#b3261e}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
margin:0 auto;max-width:1100px;padding:24px;display:flex;flex-direction:column}
section.customer{order:2}section.summary{order:1}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}
h3{font-size:13px;margin:0 0 4px;color:var(--muted);font-weight:600}
h4{font-size:12.5px;margin:8px 0 2px;font-weight:600}
.id{color:var(--muted);font-weight:400;font-size:13px}
.meta{color:var(--muted);margin:0 0 8px}
.synthetic{background:#fff6d5;border:1px solid #e8d48a;border-radius:6px;padding:6px 10px;margin:0 0 8px}
dl.terms{font-size:12.5px;color:var(--muted);margin:0 0 12px}dl.terms dt{font-weight:600;display:inline}
dl.terms dd{display:inline;margin:0 8px 0 4px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:12.5px}
th,td{border-bottom:1px solid var(--line);padding:3px 6px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.t{white-space:nowrap}
.customer{border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin:14px 0}
.customer.differs{border-color:var(--bad)}
.badge{display:inline-block;font-size:11px;padding:1px 7px;border-radius:9px;
background:#eee;margin-left:6px;vertical-align:middle}
.differs .badge{background:var(--bad);color:#fff}
.rule,.uncovered,.bad{color:var(--bad)}.rule{margin:0 0 8px}
.tie{color:#7a4b00;font-size:12.5px;margin:2px 0 6px}
.sides{display:flex;gap:16px;flex-wrap:wrap}
.side{flex:1 1 440px;min-width:0;overflow-x:auto}
svg.burndown{width:100%;height:auto;max-width:460px;display:block;background:#fff;
border:1px solid var(--line)}
.axis,.tx,.ty{font-size:10px;fill:var(--muted)}.ty{text-anchor:end}.tx{text-anchor:middle}
.tx.s{text-anchor:start}.tx.e{text-anchor:end}.axis-title{font-size:10.5px;fill:var(--fg)}
.grid{stroke:#e6e6e6;fill:none}.ax{stroke:#777;fill:none}
table.payments td:nth-child(2),table.payments td:nth-child(3),
table.grants td:nth-child(n+2):nth-child(-n+5){text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}
table.payments td:first-child,table.grants td:last-child{white-space:nowrap}
ul.legend{list-style:none;padding:0;margin:4px 0;font-size:12px;display:flex;flex-wrap:wrap;gap:2px 12px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
.orders{font-size:12px;color:var(--muted);margin:2px 0}
@media print{
body{max-width:none;padding:0;font-size:10pt;display:block}
.customer{break-inside:avoid;page-break-inside:avoid;border-color:#999}
.summary{break-after:page}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
a{color:inherit;text-decoration:none}
}
"""


def money_text(value: Decimal, like: Decimal | None = None) -> str:
    """An exact amount as text; a zero written with ``like``'s decimals (0.00 beside 50.00)."""
    if like is not None and not value and value.as_tuple().exponent == 0:
        exponent = int(like.as_tuple().exponent)
        if exponent < 0:
            value = Decimal(0).scaleb(exponent)
    return f"{value:f}"


def _when(moment: datetime | None) -> str:
    """A moment with its zone (every time in the report is UTC)."""
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _head(title: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>")


_FOOT = "</body></html>\n"


def _order_text(order: ConsumptionOrder) -> str:
    rules = ", ".join(f"{r.name} {'lowest' if r.direction == 'asc' else 'highest'} first"
                      for r in order.rules)
    tie = ("" if order.documented_tie_break else
           "; nothing documented after that (the simulation breaks ties by grant id, and says "
           "where it had to)")
    return f"{escape(order.provider)}: {escape(rules)}{escape(tie)}"


def _terms(usage_note: str | None) -> str:
    out = [f'<p class="synthetic">{escape(usage_note)}</p>'] if usage_note else []
    out.append('<dl class="terms"><dt>used</dt><dd>credit drawn by usage;</dd>'
               f"<dt>lost</dt><dd>{escape(LOST.split(': ', 1)[1])}</dd>"
               "<dt>left</dt><dd>credit still usable now or in windows to come;</dd>"
               f"<dt>not covered</dt><dd>{escape(UNCOVERED.split(': ', 1)[1])}</dd>"
               "<dt>times</dt><dd>are UTC.</dd></dl>")
    return "".join(out)


def _colors(labels: Sequence[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def unit_label(unit: str, name: str | None) -> str:
    """A unit for people: its name and key (``Cloud credits (unit:cc)``), or the currency."""
    if name and name != unit:
        return f"{name} ({unit.removeprefix('unit:')})"
    return unit.removeprefix("unit:")


def _ticks(top: Decimal) -> list[Decimal]:
    if top <= 0:
        return [Decimal(0)]
    exponent = min(int(top.as_tuple().exponent), 0)
    # In a context as wide as the exact one: the default 28 digits cannot hold half of a
    # total of 10^29 or more at its own exponent (quantize would raise InvalidOperation).
    # Rounding the half mark is fine; it is only a label.
    with decimal.localcontext(_WIDE):
        half = (top / 2).quantize(Decimal(1).scaleb(exponent))
    return [Decimal(0), half, top]


_WIDE = decimal.Context(prec=exact().prec + 2)
"""A context wider than any exact total (``exact()``'s precision, and room for the half's
extra digit) that rounds without a trap (``Inexact`` is not trapped)."""


def _chart(sim: CustomerSimulation | None, unit: str, unit_text: str, side: str,
           labels: Mapping[str, str], colors: Mapping[str, str], span: tuple[datetime, datetime],
           top: Decimal, names: Mapping[str, str]) -> str:
    """A stacked step chart of each grant's balance in ``unit`` over ``span``, with axes."""
    title = f"{side}: balance per grant ({unit_text}) over time (UTC)"
    head = (f'<svg class="burndown" data-side="{escape(side)}" data-unit="{escape(unit)}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img">'
            f"<title>{escape(title)}</title>")
    if sim is None:
        return head + f'<text class="axis" x="8" y="20">no grants on {escape(side)}</text></svg>'
    palette = list(colors)
    order = [i for i, g in enumerate(sim.grants) if g.unit == unit]
    order.sort(key=lambda i: palette.index(labels.get(sim.grants[i].grant_id, sim.grants[i].grant_id)))
    start, end = span
    seconds = max((end - start).total_seconds(), 1.0)
    width = PLOT_RIGHT - PLOT_LEFT
    height = PLOT_BOTTOM - PLOT_TOP

    def x(moment: datetime) -> str:
        return f"{PLOT_LEFT + width * (moment - start).total_seconds() / seconds:.0f}"

    scale = Decimal(height) / top if top > 0 else Decimal(0)

    def y(value: Decimal) -> str:  # a pixel row, rounded to the nearest (half to even)
        return str(PLOT_BOTTOM - round(value * scale))

    base = y(Decimal(0))
    parts = [head]
    grid, labels_y = [], []
    for tick in _ticks(top):  # the value axis: gridlines and labels in the unit
        at = y(tick)
        grid.append(f"M{PLOT_LEFT} {at}H{PLOT_RIGHT}")
        labels_y.append(f'<text class="ty" x="{PLOT_LEFT - 4}" y="{int(at) + 3}">'
                        f"{escape(money_text(tick))}</text>")
    parts.append(f'<path class="grid" d="{"".join(grid)}"/>' + "".join(labels_y))
    # Painter's order: the full stack first, then each lower cumulative layer over it. Each
    # point's x and cumulative heights are computed once, whatever the number of layers.
    xs = [x(point.at) for point in sim.timeline]
    heights: list[list[str]] = []
    for point in sim.timeline:
        running, row = Decimal(0), []
        for i in order:
            running += point.balances[i]
            row.append(y(running))
        heights.append(row)
    start_x = xs[0] if xs else str(PLOT_LEFT)
    end_x = x(end)
    for depth in range(len(order), 0, -1):
        grant = sim.grants[order[depth - 1]]
        label = labels.get(grant.grant_id, grant.grant_id)
        steps, last_x, last_y = [], start_x, base
        for px, row in zip(xs, heights, strict=True):  # only the moves that change the outline
            if row[depth - 1] != last_y:
                if px != last_x:
                    steps.append(f"H{px}")
                last_x, last_y = px, row[depth - 1]
                steps.append(f"V{last_y}")
        steps.append(f"H{end_x}V{base}Z")
        parts.append(f'<path class="layer" data-grant="{escape(label)}" fill="{colors[label]}" '
                     f'd="M{start_x} {base}{"".join(steps)}">'
                     f"<title>{escape(names.get(label, label))}</title></path>")
    short = (end - start).days < 3
    ticks, texts = [f"M{PLOT_LEFT} {base}H{PLOT_RIGHT}M{PLOT_LEFT} {PLOT_TOP}V{base}"], []
    for step in range(4):  # the time axis: four ticks across the span
        moment = start + (end - start) * step / 3
        anchor = ("tx s", "tx", "tx", "tx e")[step]
        ticks.append(f"M{x(moment)} {base}v4")
        texts.append(f'<text class="{anchor}" x="{x(moment)}" y="{PLOT_BOTTOM + 15}">'
                     f'{escape(moment.strftime("%m-%d %H:%M" if short else "%Y-%m-%d"))}</text>')
    parts.append(f'<path class="ax" d="{"".join(ticks)}"/>' + "".join(texts))
    parts.append(f'<text class="axis-title" x="{(PLOT_LEFT + PLOT_RIGHT) / 2:.0f}" '
                 f'y="{HEIGHT - 6}" text-anchor="middle">time (UTC)</text>'
                 f'<text class="axis-title" transform="translate(12 {(PLOT_TOP + PLOT_BOTTOM) / 2:.0f}) '
                 f'rotate(-90)" text-anchor="middle">balance ({escape(unit_text)})</text></svg>')
    return "".join(parts)


def _legend(sim: CustomerSimulation | None, unit: str, labels: Mapping[str, str],
            colors: Mapping[str, str], names: Mapping[str, str]) -> str:
    if sim is None:
        return ""
    items = []
    for grant in sim.grants:
        if grant.unit == unit:
            label = labels.get(grant.grant_id, grant.grant_id)
            items.append(f'<li><span class="sw" style="background:{colors.get(label, "#999")}">'
                         f"</span>{escape(names.get(label, grant.name))}</li>")
    return '<ul class="legend" aria-label="legend">' + "".join(items) + "</ul>"


def _ended(grant: GrantOutcome) -> str:
    if grant.expired_at is not None:
        return f"expired {_when(grant.expired_at)}"
    if grant.exhausted_at is not None:
        return f"spent {_when(grant.exhausted_at)}"
    return ""


def _grant_table(sim: CustomerSimulation | None, unit: str, labels: Mapping[str, str],
                 colors: Mapping[str, str], names: Mapping[str, str]) -> str:
    if sim is None:
        return ""
    rows = ['<table class="grants"><thead><tr><th>grant</th><th class="n">granted</th>'
            '<th class="n">used</th><th class="n" title="expired unused">lost</th>'
            '<th class="n">left</th><th>ended</th></tr></thead><tbody>']
    for grant in sim.grants:
        if grant.unit != unit:
            continue
        label = labels.get(grant.grant_id, grant.grant_id)
        lost = (f'<td class="bad">{money_text(grant.expired)}</td>' if grant.expired else
                f"<td>{money_text(grant.expired, grant.granted)}</td>")
        # Numbers align right by the stylesheet (table.grants, columns 2-5), not per cell.
        rows.append(
            f"<tr><td>{escape(names.get(label, grant.name))}</td>"  # colours: the legend
            f"<td>{money_text(grant.granted)}</td>"
            f"<td>{money_text(grant.consumed, grant.granted)}</td>"
            f"{lost}<td>{money_text(grant.remaining, grant.granted)}</td>"
            f"<td>{escape(_ended(grant))}</td></tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def collapse_runs(names: Sequence[str]) -> str:
    """``Top-up → Top-up → Welcome`` as ``Top-up ×2 → Welcome``."""
    runs: list[list[Any]] = []
    for name in names:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    return " → ".join(name if count == 1 else f"{name} ×{count}" for name, count in runs)


def burn_order(sim: CustomerSimulation, unit: str, name: Callable[[str], str]) -> str:
    """The order usage in ``unit`` draws on the customer's grants, runs collapsed."""
    units = {g.grant_id: g.unit for g in sim.grants}
    ids: list[str] = []
    for draw in sim.draws:
        if units.get(draw.grant_id) == unit and (not ids or ids[-1] != draw.grant_id):
            ids.append(draw.grant_id)
    return collapse_runs([name(g) for g in ids])


def _payments(sim: CustomerSimulation | None, unit: str, name: Callable[[str], str]) -> str:
    """Which grant paid for which usage: runs of consecutive usage paid the same way."""
    if sim is None:
        return ""
    paid: dict[int, list[Draw]] = {}
    for draw in sim.draws:
        paid.setdefault(draw.usage_index, []).append(draw)
    short = dict(sim.uncovered)
    runs: list[tuple[tuple[str, ...], list[int]]] = []
    for index, event in enumerate(sim.usage):
        if event.amount.unit_key != unit:
            continue
        key = tuple(d.grant_id for d in paid.get(index, ())) + (("-",) if index in short else ())
        if runs and runs[-1][0] == key:
            runs[-1][1].append(index)
        else:
            runs.append((key, [index]))
    if not runs:
        return '<p class="orders">no usage in this unit</p>'
    rows = ['<h4>Who paid for which usage</h4><table class="payments"><thead><tr>'
            '<th>usage (UTC)</th><th class="n">events</th><th class="n">amount</th>'
            "<th>paid by</th></tr></thead><tbody>"]
    with decimal.localcontext(exact()):  # sums of exact amounts, one context for the table
        for _, indexes in runs:
            first, last = sim.usage[indexes[0]].at, sim.usage[indexes[-1]].at
            when = (f"{first:%Y-%m-%d %H:%M}" if first == last else
                    f"{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M}")  # the header says UTC
            total = sum((sim.usage[i].amount.amount for i in indexes), Decimal(0))
            by: dict[str, Decimal] = {}
            for i in indexes:
                for draw in paid.get(i, ()):
                    by[draw.grant_id] = by.get(draw.grant_id, Decimal(0)) + draw.amount
            payers = [f"{escape(name(g))} {money_text(v)}" for g, v in by.items()]
            missing = sum((short[i] for i in indexes if i in short), Decimal(0))
            if missing:
                payers.append(f'<span class="uncovered">not covered {money_text(missing)}</span>')
            rows.append(f"<tr><td>{escape(when)}</td><td>{len(indexes)}</td>"
                        f'<td>{money_text(total)}</td><td>{", ".join(payers)}</td></tr>')
    rows.append("</tbody></table>")
    return "".join(rows)


def tie_notes(sim: CustomerSimulation, order: ConsumptionOrder,
              name: Callable[[str], str] | None = None, *, unit: str | None = None) -> list[str]:
    """Where this customer's order rests on a tie ``order``'s vendor documents nothing for:
    grants its rules rank equal, of which the simulation (by grant id) drew one first (only
    ties between grants in ``unit``, when given)."""
    if order.documented_tie_break or not sim.ties:
        return []
    units = {g.grant_id: g.unit for g in sim.grants}
    base = name or (lambda grant_id: sim.outcome(grant_id).name)
    counts = Counter(base(g.grant_id) for g in sim.grants)
    twice = {n for n, count in counts.items() if count > 1}

    def called(grant_id: str) -> str:  # two grants of one name: say which is which
        shown = base(grant_id)
        return f"{shown} ({grant_id})" if shown in twice and shown != grant_id else shown
    rules = ", ".join(r.name for r in order.rules) or "no rule"
    seen: dict[tuple[str, ...], list[Tie]] = {}
    for tie in sim.ties:
        if unit is None or units.get(tie.grant_ids[0]) == unit:
            seen.setdefault(tie.grant_ids, []).append(tie)
    notes = []
    for grant_ids, ties in seen.items():
        first = sim.usage[ties[0].usage_index].at
        grants = " and ".join(called(g) for g in grant_ids)
        notes.append(f"undocumented tie: {grants} rank equal under {order.provider}'s documented "
                     f"rules ({rules}) for {len(ties)} usage event(s) from {_when(first)}; "
                     f"{order.provider} documents no tie-break, so which it draws first is not "
                     f"known (simulated: {called(grant_ids[0])} first, by grant id)")
    return notes


def _top(sim: CustomerSimulation, unit: str) -> Decimal:
    """The highest the customer's balance in ``unit`` stands (the chart's scale)."""
    mine = [i for i, g in enumerate(sim.grants) if g.unit == unit]
    with decimal.localcontext(exact()):
        return max((sum((p.balances[i] for i in mine), Decimal(0)) for p in sim.timeline),
                   default=Decimal(0))


def _customer_title(customer: str, customer_names: Mapping[str, str]) -> str:
    name = customer_names.get(customer)
    if name and name != customer:
        return f'{escape(name)} <span class="id">{escape(customer)}</span>'
    return escape(customer)


def _customer(customer: str, sides: list[tuple[str, Simulation]], labels: Mapping[str, str],
              names: Mapping[str, str], difference: Difference | None,
              customer_names: Mapping[str, str]) -> str:
    sims = [(side, simulation, simulation.customers.get(customer)) for side, simulation in sides]
    ordered = [labels.get(g.grant_id, g.grant_id) for _, _, sim in sims
               for g in (sim.grants if sim else ())]
    colors = _colors(list(dict.fromkeys(ordered)))
    units = list(dict.fromkeys(u for _, _, sim in sims for u in (sim.units if sim else ())))
    unit_names = {g.unit: g.unit_name for _, _, sim in sims for g in (sim.grants if sim else ())
                  if g.unit_name}
    cls = "customer differs" if difference else "customer"
    badge = "differs" if difference else ("same" if len(sides) > 1 else "")
    out = [f'<section class="{cls}" id="c-{escape(customer)}" data-customer="{escape(customer)}" '
           f'data-differs="{"true" if difference else "false"}">'
           f"<h2>{_customer_title(customer, customer_names)}"
           + (f'<span class="badge">{badge}</span>' if badge else "") + "</h2>"]
    if difference:
        verb = "differ" if len(difference.kinds) > 1 else "differs"
        out.append(f'<p class="rule">{escape(", ".join(difference.kinds))} {verb}: '
                   f"{escape(difference.rule)}</p>")
    for unit in units:
        unit_text = unit_label(unit, unit_names.get(unit))
        moments = [p.at for _, _, sim in sims for p in (sim.timeline if sim else ())]
        span = (min(moments), max(moments)) if moments else (datetime.min, datetime.min)
        top = max((_top(sim, unit) for _, _, sim in sims if sim is not None), default=Decimal(0))
        if len(units) > 1:
            out.append(f"<h3>In {escape(unit_text)}</h3>")
        out.append('<div class="sides">')
        for side, simulation, sim in sims:

            def name(grant_id: str) -> str:
                label = labels.get(grant_id, grant_id)
                return names.get(label, label)

            order = burn_order(sim, unit, name) if sim else ""
            uncovered = sim.unit_totals.get(unit, {}).get("uncovered", Decimal(0)) if sim else 0
            ties = tie_notes(sim, simulation.order, name, unit=unit) if sim else []
            out.append(f'<div class="side"><h3>{escape(side)}</h3>'
                       + _chart(sim, unit, unit_text, side, labels, colors, span, top, names)
                       + _legend(sim, unit, labels, colors, names)
                       + f'<p class="orders">burn order: {escape(order) or "none"}</p>'
                       + "".join(f'<p class="tie">{escape(n)}</p>' for n in ties)
                       + (f'<p class="uncovered">not covered: {money_text(Decimal(uncovered))} '
                          f"{escape(unit_text)} of usage no grant could pay</p>" if uncovered else "")
                       + _grant_table(sim, unit, labels, colors, names)
                       + _payments(sim, unit, name) + "</div>")
        out.append("</div>")
    out.append("</section>")
    return "".join(out)


LISTED = 100
"""Customers named in the report's summary per list (the rest are counted)."""


class RunningTotals:
    """Per unit, the exact sums of every customer's totals so far (nothing kept per customer)."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, Decimal]] = {}
        self.unit_names: dict[str, str] = {}

    def add(self, sim: CustomerSimulation) -> None:
        with decimal.localcontext(exact()):
            for unit, values in sim.unit_totals.items():
                mine = self.sums.setdefault(unit, dict.fromkeys(values, Decimal(0)))
                for key, value in values.items():
                    mine[key] += value
        for grant in sim.grants:
            if grant.unit_name:
                self.unit_names[grant.unit] = grant.unit_name

    def unit_text(self, unit: str) -> str:
        return unit_label(unit, self.unit_names.get(unit))


class SimulationReport:
    """The report of a simulation, written customer by customer as the simulation runs.

    ``add`` writes one customer's section to ``out`` at once (nothing is kept but running
    totals); ``close`` writes the summary (shown at the top by the stylesheet) and ends the
    page. ``render_simulation`` is this over a whole ``Simulation``.
    """

    def __init__(self, out: TextIO, order: ConsumptionOrder, *, title: str = "Credit burn-down",
                 usage_note: str | None = None,
                 customer_names: Mapping[str, str] | None = None) -> None:
        self._out = out
        self._order = order
        self._names = dict(customer_names or {})
        self._sides = [(order.provider, Simulation(order, {}))]
        self._totals = RunningTotals()
        self._customers = 0
        self._tied: list[str] = []  # the first LISTED, and how many in all
        self._uncovered: list[str] = []
        self._counts = {"tied": 0, "uncovered": 0}
        self._synthetic = usage_note is not None
        out.write(_head(title) + f"<h1>{escape(title)}</h1>"
                  f'<p class="meta">Consumption order {_order_text(order)}.</p>'
                  + _terms(usage_note))

    def add(self, sim: CustomerSimulation) -> None:
        customer = sim.customer_id
        self._customers += 1
        side = Simulation(self._order, {customer: sim})
        self._out.write(_customer(customer, [(self._order.provider, side)], {},
                                  {g.grant_id: g.name for g in sim.grants}, None, self._names))
        self._totals.add(sim)
        if sim.ties and not self._order.documented_tie_break:
            self._counts["tied"] += 1
            if len(self._tied) < LISTED:
                self._tied.append(customer)
        if sim.uncovered:
            self._counts["uncovered"] += 1
            if len(self._uncovered) < LISTED:
                self._uncovered.append(customer)

    def close(self) -> None:
        out = ['<section class="summary"><h2>Summary</h2>'
               f"<p>{self._customers} customer(s).</p>"]
        if self._totals.sums:
            out.append('<table class="totals"><thead><tr><th>unit</th><th class="n">granted</th>'
                       '<th class="n">used</th><th class="n">lost</th><th class="n">left</th>'
                       '<th class="n">not covered</th></tr></thead><tbody>')
            for unit, values in sorted(self._totals.sums.items()):
                cells = "".join(f'<td class="n">{money_text(values[k], values["granted"])}</td>'
                                for k in ("granted", "consumed", "expired", "remaining",
                                          "uncovered"))
                out.append(f"<tr><td>{escape(self._totals.unit_text(unit))}</td>{cells}</tr>")
            out.append("</tbody></table>")
        for customers, count, what in (
                (self._uncovered, self._counts["uncovered"], "usage no grant could cover"),
                (self._tied, self._counts["tied"], "an order that rests on an undocumented tie")):
            if customers:
                links = ", ".join(f'<a href="#c-{escape(c)}">{escape(self._names.get(c, c))}</a>'
                                  for c in customers)
                more = f" and {count - len(customers)} more" if count > len(customers) else ""
                out.append(f"<p>{count} customer(s) with {what}: {links}{more}.</p>")
                if customers is self._uncovered and self._synthetic:
                    out.append(f'<p class="explain">{escape(SYNTHETIC_UNCOVERED)}</p>')
        out.append("</section>" + _FOOT)
        self._out.write("".join(out))


def render_simulation(simulation: Simulation, *, title: str = "Credit burn-down",
                      customer_names: Mapping[str, str] | None = None) -> str:
    """One simulation as a self-contained HTML page (one chart per customer and unit)."""
    buffer = io.StringIO()
    report = SimulationReport(buffer, simulation.order, title=title,
                              usage_note=simulation.usage_note, customer_names=customer_names)
    for _, sim in sorted(simulation.customers.items()):
        report.add(sim)
    report.close()
    return buffer.getvalue()


def render_comparison(comparison: Comparison, *, title: str = "Credit burn-down: source and target",
                      source_name: str | None = None, target_name: str | None = None,
                      customer_names: Mapping[str, str] | None = None) -> str:
    """A comparison as a self-contained HTML page: differing customers first, a summary."""
    named = dict(customer_names or {})
    source = source_name or f"source ({comparison.source.order.provider})"
    target = target_name or f"target ({comparison.target.order.provider})"
    differing = {d.customer_id: d for d in comparison.differences}
    customers = sorted(set(comparison.source.customers) | set(comparison.target.customers))
    body = [_head(title), f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{len(customers)} customer(s), {len(differing)} differ. '
            f"Source order {_order_text(comparison.source.order)}. Target order "
            f"{_order_text(comparison.target.order)}.</p>",
            _terms(comparison.source.usage_note or comparison.target.usage_note),
            '<section class="summary"><h2>Customers whose consumption differs</h2>']
    if differing:
        body.append('<table class="differences"><thead><tr><th>customer</th><th>differs</th>'
                    '<th>why</th><th class="n">lost on source</th>'
                    '<th class="n">lost on target</th></tr></thead><tbody>')
        body += [
            f'<tr><td><a href="#c-{escape(d.customer_id)}">'
            f"{escape(named.get(d.customer_id, d.customer_id))}</a>"
            f"</td><td>{escape(', '.join(d.kinds))}</td><td>{escape(d.rule)}</td>"
            f'<td class="n">{money_text(d.source_expired)}</td>'
            f'<td class="n">{money_text(d.target_expired)}</td></tr>'
            for d in comparison.differences]
        body.append("</tbody></table>")
    else:
        body.append("<p>None: every customer burns the same grants in the same order, with the "
                    "same expiry losses and balance over time.</p>")
    ties = comparison.tie_lines()
    if ties:
        body.append(f"<p>{len(ties)} place(s) where the target's order rests on an undocumented "
                    "tie (named in each customer's section).</p>")
    body.append("</section>")
    sides = [(source, comparison.source), (target, comparison.target)]
    first = [d.customer_id for d in comparison.differences]
    rest = [c for c in customers if c not in differing]
    body += [_customer(customer, sides, comparison.labels, comparison.names,
                       differing.get(customer), named) for customer in first + rest]
    body.append(_FOOT)
    return "".join(body)
