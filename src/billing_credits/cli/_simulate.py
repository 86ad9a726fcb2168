"""``billing-credits simulate``: the provider's current grants against usage, in its order."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from billing_credits._errors import (
    UnsupportedOperationError,
)

from ._common import _open, _when, _write_html, cli, provider_options


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

    from billing_credits.consumption._simulate import read_usage, simulate, units_of
    from billing_credits.migrate._windows import as_of

    now = datetime.now(UTC)
    with _open(provider, settings) as opened:
        order = _order_of(opened.name, type(opened))
        grants = [g for customer in (customers or (None,))
                  for g in opened.list_grants(customer)]
    current = [g for g in (as_of(grant, now) for grant in grants) if g is not None]
    usage = None
    if usage_path is not None:
        usage = read_usage(usage_path, units=units_of(current))
        if customers:
            usage = [u for u in usage if u.customer_id in customers]
    result = simulate(current, usage, order, start=now)
    if html_path is not None:
        _write_html(html_path, result.html(title=f"Credit burn-down: {opened.name}"))
    if as_json:
        for line in result.as_json():
            click.echo(json.dumps(line, sort_keys=True))
        return
    _print_simulation(result)

def _order_of(name: str, cls: Any) -> Any:
    order = getattr(cls, "consumption_order", None)
    if order is None:
        raise UnsupportedOperationError(name, "simulate", "it declares no consumption order")
    return order

def _print_simulation(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200 if not sys.stdout.isatty() else None)
    table = Table("customer", "grant", "unit", "granted", "consumed", "expired unused", "left",
                  "exhausted", "expired", box=None, header_style="bold")
    for customer, sim in sorted(result.customers.items()):
        for grant in sim.grants:
            table.add_row(customer, grant.name, grant.unit, str(grant.granted), str(grant.consumed),
                          str(grant.expired), str(grant.remaining),
                          _when(grant.exhausted_at) if grant.exhausted_at else "",
                          _when(grant.expired_at) if grant.expired_at else "")
    console.print(table)
    console.print(f"{len(result.customers)} customer(s), order {result.order.provider}: "
                  + ", ".join(f"{r.name} {r.direction}" for r in result.order.rules))
