"""``billing-credits balance``, ``ledger`` and ``consume``: a customer's credit as it stands."""

from __future__ import annotations

from typing import Any

import click

from ._common import _moment_option, _open, _when, cli, provider_options
from ._grants import _money, _take


def _amount_text(amount: Any) -> str:
    return f"{amount:f}"

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
        usable = found.usable
        click.echo(f"{customer}  usable {usable}  pending {_amount_text(found.pending.amount)}  "
                   f"as of {_when(found.as_of)}  (source: {found.source})")
        for part in found.parts:
            end = _when(part.expires_at) if part.expires_at else "never"
            priority = "default" if part.priority is None else str(part.priority)
            click.echo(f"  {part.grant_id}  {_amount_text(part.usable)}  expires {end}  "
                       f"priority {priority}")
        for note in found.notes:
            click.echo(f"  note: {note}")

_LEDGER_ROW = "{:<26} {:<9} {:>20} {:<40} {}"

@cli.command("ledger")
@provider_options
@click.argument("customer")
@click.option("--grant", "grant_id", help="Only this grant's entries.")
@click.option("--since", "since_text", metavar="TIME", help="Only entries from this moment.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many entries.")
def ledger_(provider: str, settings: tuple[str, ...], as_json: bool, customer: str,
            grant_id: str | None, since_text: str | None, limit: int | None) -> None:
    """A customer's credit ledger, streamed page by page (JSON lines with --json)."""
    since = _moment_option(since_text, "--since")
    with _open(provider, settings) as opened:
        entries = _take(opened.list_ledger(customer, grant_id=grant_id, since=since), limit)
        if not as_json:
            click.echo(_LEDGER_ROW.format("at", "kind", "amount", "grant", "reference"))
        count = 0
        for entry in entries:
            count += 1
            if as_json:
                click.echo(entry.model_dump_json(exclude={"raw"}))
                continue
            click.echo(_LEDGER_ROW.format(
                _when(entry.at), entry.kind.value, str(entry.amount), entry.grant_id or "-",
                entry.reference or ""))
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
