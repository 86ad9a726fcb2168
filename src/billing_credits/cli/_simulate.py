"""``billing-credits simulate``: the provider's current grants against usage, in its order.

It streams: the listing is spooled to a private temporary file grouped by customer
(``consumption._spool``), then each customer is simulated, its rows printed and its section of
the HTML report written before the next is read. Memory holds one customer at a time.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from billing_credits._errors import (
    UnsupportedOperationError,
)

from ._common import _open, cli, provider_options


@cli.command("simulate")
@provider_options
@click.option("--customer", "customers", multiple=True, help="Only these customers (repeatable).")
@click.option("--usage", "usage_path", type=click.Path(exists=True, dir_okay=False),
              help="Usage (CSV or JSON lines: customer_id, at, amount[, product]); default: "
              "steady synthetic usage until every grant is spent or expired.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Write a self-contained HTML report (burn-down chart per customer).")
def simulate_(provider: str, settings: tuple[str, ...], as_json: bool,
              customers: tuple[str, ...], usage_path: str | None, html_path: str | None) -> None:
    """Simulate the provider's current grants against usage, in its consumption order."""
    from datetime import UTC, datetime

    from billing_credits.consumption._report import SimulationReport, customer_json
    from billing_credits.consumption._simulate import (
        SYNTHETIC_STEPS,
        read_usage,
        simulate_each,
        synthetic_note,
    )
    from billing_credits.consumption._spool import Spool
    from billing_credits.migrate._windows import as_of

    now = datetime.now(UTC)
    with Spool() as spool:
        with _open(provider, settings) as opened:
            order = _order_of(opened.name, type(opened))
            name = opened.name
            listed = (g for customer in (customers or (None,))
                      for g in opened.list_grants(customer))
            spool.add_grants(g for g in (as_of(grant, now) for grant in listed) if g is not None)
        if usage_path is not None:
            usage = read_usage(usage_path, units=spool.unit_of)
            spool.add_usage(u for u in usage if not customers or u.customer_id in customers)
            del usage
        note = synthetic_note(SYNTHETIC_STEPS, now) if usage_path is None else None
        table = None if as_json else _Table(order, note)
        with _Report(html_path) as out:
            report = None if out is None else SimulationReport(
                out, order, title=f"Credit burn-down: {name}", usage_note=note)
            for sim in simulate_each(spool.groups(synthetic=usage_path is None), order, start=now):
                if report is not None:
                    report.add(sim)
                if table is None:
                    click.echo(json.dumps(customer_json(sim, order), sort_keys=True))
                else:
                    table.add(sim)
            if report is not None:
                report.close()
        if table is not None:
            table.close()


def _order_of(name: str, cls: Any) -> Any:
    order = getattr(cls, "consumption_order", None)
    if order is None:
        raise UnsupportedOperationError(name, "simulate", "it declares no consumption order")
    return order


class _Report:
    """The HTML file, written as it goes to a hidden partial file, renamed when complete (and
    removed on any error)."""

    def __init__(self, path: str | None) -> None:
        self._path = None if path is None else Path(path)
        self._file: Any = None

    def __enter__(self) -> Any:
        if self._path is None:
            return None
        self._partial = self._path.with_name(f".{self._path.name}.partial")
        self._file = self._partial.open("w", encoding="utf-8")
        return self._file

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if self._file is None:
            return
        self._file.close()
        if kind is None:
            assert self._path is not None
            self._partial.replace(self._path)
            click.echo(f"report written to {self._path}", err=True)
        else:
            self._partial.unlink(missing_ok=True)


AMOUNT = 10
"""Width of an amount column; a wider amount puts its row in the long form."""
ENDED = 18
"""Width of the "ended" column: ``expired 2026-12-08`` (UTC date; the HTML and --json give
the time)."""
FIXED = 2 + 4 * (1 + AMOUNT) + 2 + ENDED


class _Table:
    """The text table, printed a customer at a time, in ``COLUMNS`` (default 80).

    Every row has the same columns at the same widths, so rows align however many follow:
    a customer (and unit) on a line of its own, then one row per grant. A grant name wider
    than its column goes on its own line above its figures; a figure wider than its column
    puts that grant in a long form (one ``field: value`` per line). Notes (undocumented ties,
    uncovered usage) are wrapped to the width.
    """

    def __init__(self, order: Any, usage_note: str | None) -> None:
        self.width = max(shutil.get_terminal_size((80, 24)).columns, 60)
        self.name = max(min(self.width - FIXED, 40), 8)
        self.order = order
        self.usage_note = usage_note
        self.customers = 0
        from billing_credits.consumption._report import RunningTotals

        self.totals = RunningTotals()
        click.echo("customer (unit)")
        click.echo(self._row("grant", ("granted", "used", "lost", "left"), "ended (UTC)"))

    def _row(self, name: str, amounts: tuple[str, ...], ended: str) -> str:
        cells = "".join(f" {a:>{AMOUNT}}" for a in amounts)
        return f"  {name:<{self.name}}{cells}  {ended}".rstrip()

    def _wrap(self, text: str, indent: str = "    ") -> list[str]:
        return textwrap.wrap(text, self.width, initial_indent=indent, subsequent_indent=indent,
                             break_long_words=False, break_on_hyphens=False)

    def add(self, sim: Any) -> None:
        from billing_credits.consumption._report import tie_notes, unit_label

        self.customers += 1
        lines: list[str] = []
        names = {g.unit: g.unit_name for g in sim.grants if g.unit_name}
        self.totals.add(sim)
        totals = sim.unit_totals
        for unit in sim.units or tuple(totals):
            lines.append(f"{sim.customer_id} ({unit_label(unit, names.get(unit))})")
            for grant in (g for g in sim.grants if g.unit == unit):
                lines += self._grant(grant)
            uncovered = totals.get(unit, {}).get("uncovered", Decimal(0))
            if uncovered:
                lines += self._wrap(f"not covered: {uncovered:f} of usage no grant could pay")
            for note in tie_notes(sim, self.order, unit=unit):
                lines += self._wrap(f"note: {note}")
        click.echo("\n".join(lines))

    def _grant(self, grant: Any) -> list[str]:
        from billing_credits.consumption._report import money_text

        amounts = tuple(money_text(v, grant.granted) for v in (
            grant.granted, grant.consumed, grant.expired, grant.remaining))
        ended = (f"expired {grant.expired_at:%Y-%m-%d}" if grant.expired_at else
                 f"spent {grant.exhausted_at:%Y-%m-%d}" if grant.exhausted_at else "")
        if any(len(a) > AMOUNT for a in amounts):
            out = [f"  {grant.name}"]
            out += [f"    {label}: {value}" for label, value in
                    zip(("granted", "used", "lost", "left"), amounts, strict=True)]
            return out + ([f"    ended: {ended}"] if ended else [])
        if len(grant.name) > self.name:
            return [f"  {grant.name}", self._row("", amounts, ended)]
        return [self._row(grant.name, amounts, ended)]

    def close(self) -> None:
        from billing_credits.consumption._report import LOST, UNCOVERED, money_text

        lines = [f"total ({self.customers} customer(s))"] if self.totals.sums else []
        for unit, values in sorted(self.totals.sums.items()):
            amounts = tuple(money_text(values[k], values["granted"])
                            for k in ("granted", "consumed", "expired", "remaining"))
            shown = self.totals.unit_text(unit)
            if any(len(a) > AMOUNT for a in amounts):
                lines.append(f"  {shown}")
                lines += [f"    {label}: {value}" for label, value in
                          zip(("granted", "used", "lost", "left"), amounts, strict=True)]
            else:
                lines.append(self._row(shown, amounts, ""))
            if values["uncovered"]:
                lines += self._wrap(f"not covered: {values['uncovered']:f} of usage no grant "
                                    "could pay")
        rules = ", ".join(f"{r.name} {'lowest' if r.direction == 'asc' else 'highest'} first"
                          for r in self.order.rules)
        lines += self._wrap(f"{self.customers} customer(s), order {self.order.provider}: {rules}"
                            + ("" if self.order.documented_tie_break else
                               "; no documented tie-break (ties by grant id, noted)"), "")
        lines += self._wrap(LOST, "")
        lines += self._wrap(UNCOVERED, "")
        if self.usage_note:
            lines += self._wrap(self.usage_note, "")
        click.echo("\n".join(lines))

