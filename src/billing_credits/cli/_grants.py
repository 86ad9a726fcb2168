"""``billing-credits grants``: create, list, get, void, expire and update grants."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from ._common import _detail, _doing, _grant_json, _moment_option, _open, _pairs, _show, cli, provider_options


@cli.group()
def grants() -> None:
    """Create, list, show, void and expire credit grants."""

def _number(value: str | None, option: str) -> str | None:
    """``value`` when it reads as a decimal number, else a usage error in the command line's
    words, echoing it and the shape expected."""
    from decimal import Decimal, InvalidOperation

    if value is None:
        return None
    try:
        ok = Decimal(value.strip()).is_finite()
    except InvalidOperation:
        ok = False
    if not ok:
        raise click.BadParameter(f"{value!r} is not a number; write it like 12.34 (a point "
                                 "before the decimals, no thousands separator)", param_hint=option)
    return value


def _money(amount: str, currency: str | None, unit_id: str | None,
           unit_name: str | None) -> dict[str, Any]:
    money: dict[str, Any] = {"amount": amount}
    if unit_id is not None:
        money["unit"] = {"id": unit_id, "name": unit_name}
    if currency is not None or unit_id is None:
        money["currency"] = currency
    return money

@grants.command("create")
@provider_options
@click.option("--customer", "customers", multiple=True,
              help="Customer id (repeatable: one grant per customer, each keyed "
                   "IDEMPOTENCY_KEY:CUSTOMER).")
@click.option("--amount", help="Exact amount in major units, e.g. 25.00.")
@click.option("--currency", help="ISO 4217 code, e.g. USD.")
@click.option("--unit-id", help="A custom credit unit's id (instead of --currency).")
@click.option("--unit-name", help="The custom credit unit's name.")
@click.option("--paid-amount", help="Cost basis, in --paid-currency (default: the grant's).")
@click.option("--paid-currency", help="ISO 4217 code of the paid amount.")
@click.option("--category", type=click.Choice(["paid", "promotional"]),
              help="Paid (bought) or promotional (given) credits.")
@click.option("--category-label", help="The vendor's own category label, e.g. trial.")
@click.option("--name", help="Name shown to people (on invoices, in dashboards).")
@click.option("--reason", help="Why the credits were granted (internal note).")
@click.option("--effective-at", help="ISO 8601 with a timezone, e.g. 2026-01-01T00:00:00Z.")
@click.option("--expires-at", help="ISO 8601 with a timezone; omit for never.")
@click.option("--priority", help="Exact number, lower consumed first.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE",
              help="A metadata entry (repeatable; each key once).")
@click.option("--idempotency-key", help="Makes the create safe to repeat (1-128 chars).")
@click.option("--product-id", "product_ids", multiple=True, help="Scope: product (ordered).")
@click.option("--product-tag", "product_tags", multiple=True, help="Scope: product tag.")
@click.option("--price-id", "price_ids", multiple=True, help="Scope: price.")
@click.option("--metered-prices-only", is_flag=True, help="Scope: every metered price.")
@click.option("--contract-id", "contract_ids", multiple=True, help="Scope: contract.")
@click.option("--from-json", "from_json", type=click.File("rb"),
              help="Read the whole grant as JSON (a file, or - for stdin; at most 1 MiB); "
                   "no field options.")
def create(provider: str, settings: tuple[str, ...], as_json: bool, **fields: Any) -> None:
    """Create a grant. Invalid input is refused before anything is written."""
    from billing_credits._model import CreditGrant

    source = fields.pop("from_json")
    if source is not None:
        given = sorted(f"--{name.replace('_', '-').rstrip('s')}" for name, value in fields.items()
                       if value not in (None, (), False))
        if given:
            raise click.UsageError(f"--from-json reads the whole grant; drop {', '.join(given)}")
        from billing_credits._lines import MAX_LINE_BYTES, read_bounded

        try:
            text = read_bounded(source, name=getattr(source, "name", "-"),
                                limit=MAX_LINE_BYTES).decode("utf-8")
        except UnicodeDecodeError as error:
            raise click.BadParameter(f"{source.name}: not UTF-8 text ({error.reason} at byte "
                                     f"{error.start})", param_hint="--from-json") from None
        made = [CreditGrant.model_validate_json(text)]
    else:
        customers = fields.pop("customers")
        if not customers:
            raise click.UsageError("--customer is required (or give --from-json)")
        if len(set(customers)) != len(customers):
            raise click.UsageError("--customer: a customer given twice")
        key = fields["idempotency_key"]
        made = []
        for customer in customers:
            if len(customers) > 1 and key is not None:
                fields["idempotency_key"] = f"{key}:{customer}"
            made.append(CreditGrant.model_validate(_grant_fields({**fields, "customer": customer})))
    created = []
    with _open(provider, settings) as opened:
        for grant in made:
            created.append(opened.create_grant(grant))
            _doing(lambda: f"created {len(created)} of {len(made)} grant(s)")
    if as_json:
        for grant in created:
            click.echo(_grant_json(grant))
    elif len(created) == 1:
        _detail(created[0])
    else:
        _show(created, False)

def _grant_fields(fields: dict[str, Any]) -> dict[str, Any]:
    if fields["amount"] is None:
        raise click.UsageError("--amount is required (or give --from-json)")
    for name in ("amount", "paid_amount", "priority"):
        _number(fields[name], f"--{name.replace('_', '-')}")
    data: dict[str, Any] = {
        "customer_id": fields["customer"],
        "amount": _money(fields["amount"], fields["currency"], fields["unit_id"],
                         fields["unit_name"]),
        "metadata": _pairs(fields["metadata"], "--metadata"),
        "scope": {k: fields[k] for k in ("product_ids", "product_tags", "price_ids",
                                         "contract_ids") if fields[k]},
    }
    if fields["metered_prices_only"]:
        data["scope"]["metered_prices_only"] = True
    if fields["paid_amount"] is not None:
        data["paid_amount"] = _money(
            fields["paid_amount"], fields["paid_currency"] or fields["currency"],
            None if fields["paid_currency"] else fields["unit_id"], fields["unit_name"])
    for name in ("category", "category_label", "name", "reason", "effective_at", "expires_at",
                 "priority", "idempotency_key"):
        if fields[name] is not None:
            data[name] = fields[name]
    return data

@grants.command("list")
@provider_options
@click.option("--customer", "customers", multiple=True,
              help="Only this customer's grants (repeatable).")
@click.option("--page-size", type=click.IntRange(min=1), help="Grants fetched per request.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many grants.")
@click.option("--wide", is_flag=True,
              help="Every column, however wide (by default columns are hidden to fit).")
def list_(provider: str, settings: tuple[str, ...], as_json: bool, customers: tuple[str, ...],
          page_size: int | None, limit: int | None, wide: bool) -> None:
    """List grants as they arrive, page after page (JSON lines with --json)."""
    with _open(provider, settings) as opened:
        def every() -> Iterator[Any]:
            for customer in dict.fromkeys(customers) if customers else (None,):
                yield from opened.list_grants(customer, page_size=page_size)

        _show(_take(every(), limit), as_json, wide=wide)

def _take(items: Iterator[Any], limit: int | None) -> Iterator[Any]:
    for count, item in enumerate(items, start=1):
        yield item
        if limit is not None and count >= limit:
            return

def _single(operation: str, help_text: str) -> None:
    @grants.command(operation, help=help_text)
    @provider_options
    @click.argument("grant_id")
    def command(provider: str, settings: tuple[str, ...], as_json: bool, grant_id: str) -> None:
        with _open(provider, settings) as opened:
            grant = getattr(opened, f"{operation}_grant")(grant_id)
        if as_json:
            click.echo(_grant_json(grant))
        else:
            _detail(grant)

@grants.command("update")
@provider_options
@click.argument("grant_id")
@click.option("--expires-at", help="New expiry (ISO 8601 with a timezone), or 'never'.")
@click.option("--name", help="New name.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE",
              help="The grant's new metadata (repeatable; replaces it whole).")
def update_(provider: str, settings: tuple[str, ...], as_json: bool, grant_id: str,
            expires_at: str | None, name: str | None, metadata: tuple[str, ...]) -> None:
    """Change a grant's expiry, name or metadata, where the provider allows it."""
    from billing_credits._provider import UNSET

    changes: dict[str, Any] = {}
    if expires_at is not None:
        changes["expires_at"] = (None if expires_at.lower() == "never"
                                 else _moment_option(expires_at, "--expires-at"))
    if name is not None:
        changes["name"] = name
    if metadata:
        changes["metadata"] = _pairs(metadata, "--metadata")
    if not changes:
        raise click.UsageError("give --expires-at, --name or --metadata")
    with _open(provider, settings) as opened:
        updated = opened.update_grant(
            grant_id, expires_at=changes.get("expires_at", UNSET),
            name=changes.get("name", UNSET), metadata=changes.get("metadata", UNSET))
        _show([updated], as_json)


_single("get", "Show one grant, every field.")
_single("void", "Void a grant: its remaining credits are gone. Shows it afterwards.")
_single("expire", "Expire a grant now. Shows it afterwards.")
