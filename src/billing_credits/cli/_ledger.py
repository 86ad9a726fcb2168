"""``billing-credits balance``, ``ledger`` and ``consume``: a customer's credit as it stands."""

from __future__ import annotations

from typing import Any

import click

from ._common import _moment_option, _open, cli, provider_options
from ._grants import _money, _number, _take


def _amount_text(amount: Any) -> str:
    """An exact amount as written (a ``Money``'s number, or a bare ``Decimal``)."""
    return f"{getattr(amount, 'amount', amount):f}"

@cli.command("balance")
@provider_options
@click.argument("customer")
@click.option("--at", "at_text", metavar="TIME",
              help="As of this moment (ISO 8601 with a timezone), where the provider can answer.")
@click.option("--unit", help="Only this unit: a currency (USD) or unit:<id>.")
def balance_(provider: str, settings: tuple[str, ...], as_json: bool, customer: str,
             at_text: str | None, unit: str | None) -> None:
    """A customer's credit balance, one line per unit, with its per-grant parts."""
    at = _moment_option(at_text, "--at")
    with _open(provider, settings) as opened:
        balances = opened.get_balance(customer, unit=unit, at=at)
    if as_json:
        for found in balances:
            click.echo(found.model_dump_json(exclude={"raw"}))
        return
    if not balances:
        click.echo(f"no credit for {customer}")
    for found in balances:
        _print_balance(customer, found)


def _print_balance(customer: str, found: Any) -> None:
    """The totals on one line (folded between fields when narrow), the source explanation on
    its own wrapped lines, then one row per grant."""
    from ._tables import Column, Stream, echo_all, fields_lines, when, wrapped

    echo_all(fields_lines(customer, [f"usable {found.usable}", f"pending {found.pending}",
                                     f"as of {when(found.as_of)}"]))
    echo_all(wrapped(f"source: {found.source}"))
    for note in found.notes:  # what the figures include or leave out, each on its own lines
        echo_all(wrapped(f"note: {note}"))
    if not found.parts:
        return
    pending = any(part.pending.amount for part in found.parts)
    columns = [Column("grant"), Column("usable", right=True), Column("expires", drop=2),
               Column("priority", drop=3)] + ([Column("pending", right=True, drop=1)]
                                                if pending else [])
    table = Stream(columns, indent="  ")
    table.print([[part.grant_id, _amount_text(part.usable), when(part.expires_at),
                  "default" if part.priority is None else str(part.priority),
                  _amount_text(part.pending)] for part in found.parts], header=True)
    if table.hidden:
        echo_all(wrapped(f"hidden to fit {table.limit} columns: {', '.join(table.hidden)}; "
                         "--json shows every field"))

def _ledger_columns(two_lines: bool) -> list[Any]:
    from ._tables import Column

    columns = [Column("at", least=20), Column("kind", least=8), Column("amount", right=True),
               Column("balance after", right=True)]
    return columns if two_lines else [*columns, Column("grant"), Column("reference")]


def _ledger_cells(entry: Any) -> list[str]:
    from ._tables import when

    after = "-" if entry.running_balance is None else str(entry.running_balance)
    return [when(entry.at), entry.kind.value, str(entry.amount), after, entry.grant_id or "-",
            entry.reference or ""]


@cli.command("ledger")
@provider_options
@click.argument("customer")
@click.option("--grant", "grant_id", help="Only this grant's entries.")
@click.option("--since", "since_text", metavar="TIME", help="Only entries from this moment.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many entries.")
def ledger_(provider: str, settings: tuple[str, ...], as_json: bool, customer: str,
            grant_id: str | None, since_text: str | None, limit: int | None) -> None:
    """A customer's credit ledger, streamed page by page (JSON lines with --json).

    Each entry: when, what, the signed amount, the customer's balance in that unit after it
    (where the provider reports one), the grant and the reference; on a narrow terminal the
    grant and the reference go on a second line."""
    from ._tables import Stream, echo_all, fields_lines, width

    since = _moment_option(since_text, "--since")
    with _open(provider, settings) as opened:
        entries = _take(opened.list_ledger(customer, grant_id=grant_id, since=since), limit)
        count = 0
        table: Stream | None = None
        two_lines = False
        for entry in entries:
            count += 1
            if as_json:
                click.echo(entry.model_dump_json(exclude={"raw"}))
                continue
            cells = _ledger_cells(entry)
            if table is None:  # one line per entry if the first one fits, else two
                two_lines = Stream(_ledger_columns(False)).width_of([cells]) > width()
                table = Stream(_ledger_columns(two_lines))
            table.print([cells], header=count == 1)
            if two_lines:
                echo_all(fields_lines("   ", [f"grant {cells[4]}"]
                                      + ([f"reference {cells[5]}"] if cells[5] else [])))
        if not as_json:
            click.echo(f"{count} entr{'ies' if count != 1 else 'y'}")

@cli.command("consume")
@provider_options
@click.argument("customer")
@click.argument("amount")
@click.option("--currency", help="ISO 4217 code, e.g. USD.")
@click.option("--unit", "unit_id", help="A custom credit unit's id (instead of --currency).")
@click.option("--reference", required=True,
              help="Your usage or invoice reference: applying it twice consumes once.")
@click.option("--at", "at_text", metavar="TIME", help="When the usage happened (default now).")
@click.option("--product", "product_id", help="The product used (for scoped grants).")
def consume_(provider: str, settings: tuple[str, ...], as_json: bool, customer: str,
             amount: str, currency: str | None, unit_id: str | None, reference: str,
             at_text: str | None, product_id: str | None) -> None:
    """Pay usage with a customer's credit, in the provider's consumption order."""
    from billing_credits._money import Money

    if (currency is None) == (unit_id is None):
        raise click.UsageError("give exactly one of --currency and --unit")
    at = _moment_option(at_text, "--at")
    _number(amount, "AMOUNT")
    money = Money.model_validate(_money(amount, currency, unit_id, None))
    with _open(provider, settings) as opened:
        entries = opened.consume(customer, money, at=at, reference=reference,
                                 product_id=product_id)
    for entry in entries:
        if as_json:
            click.echo(entry.model_dump_json(exclude={"raw"}))
        else:
            click.echo(f"{entry.grant_id}  {entry.amount}")
    if not as_json:
        click.echo(f"consumed {money} under {reference!r} from {len(entries)} grant(s)")
