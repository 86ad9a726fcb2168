"""The ``billing-credits`` command line.

Heavy imports (rich, providers) happen inside commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

import click

from ._errors import (
    BillingCreditsError,
    ConfigurationError,
    InvalidGrantError,
    NotRepresentableError,
    UnsupportedOperationError,
)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_PROVIDER_ERROR = 1
EXIT_INVALID = 2


def _fail(error: BillingCreditsError) -> NoReturn:
    message = " ".join(str(error).split())
    click.echo(f"error: {message}", err=True)
    invalid = (InvalidGrantError, NotRepresentableError, ConfigurationError,
               UnsupportedOperationError)
    sys.exit(EXIT_INVALID if isinstance(error, invalid) else EXIT_PROVIDER_ERROR)


EXIT_INTERRUPTED = 130

_activity: list[Callable[[], str]] = []


def _doing(describe: Callable[[], str]) -> None:
    """Say what the running command has done so far, for a Ctrl-C."""
    _activity[:] = [describe]


def _interrupted() -> NoReturn:
    done = ""
    if _activity:
        try:
            done = f": {_activity[0]()}"
        except Exception:
            done = ""
    click.echo(f"\ninterrupted{done}", err=True)
    sys.exit(EXIT_INTERRUPTED)


class _Group(click.Group):
    """Turns library errors into one line on stderr and an exit code, never a traceback."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        _activity.clear()
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as error:
            no_args = getattr(click.exceptions, "NoArgsIsHelpError", ())
            if isinstance(error, no_args) and error.ctx is not None:
                click.echo(error.ctx.get_help())  # a bare group: its help, as asked
                sys.exit(0)
            # One line: the problem and where to read more, never the whole usage text.
            command = error.ctx.command_path if error.ctx is not None else "billing-credits"
            message = " ".join(error.format_message().split())
            click.echo(f"error: {message} (see: {command} --help)", err=True)
            sys.exit(EXIT_INVALID)
        except click.ClickException as error:
            click.echo(f"error: {' '.join(error.format_message().split())}", err=True)
            sys.exit(error.exit_code)
        except (click.Abort, KeyboardInterrupt):
            _interrupted()
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        import sqlite3

        try:
            return super().invoke(ctx)
        except BillingCreditsError as error:
            _fail(error)
        except sqlite3.Error as error:
            click.echo(f"error: database: {error}", err=True)
            sys.exit(EXIT_PROVIDER_ERROR)


def quiet_option(command: F) -> F:
    return click.option("-q", "--quiet", is_flag=True,
                        help="No progress output (the final summary still prints).")(command)


class Progress:
    """Progress of a long operation on stderr: a bar on a terminal, JSON lines otherwise
    (about twenty per run, or one a second when the total is unknown), nothing with --quiet."""

    def __init__(self, label: str, *, quiet: bool = False, total: int | None = None) -> None:
        self.label = label
        self.quiet = quiet
        self.total = total
        self.done = 0
        self._bar: Any = None
        self._task: Any = None
        self._last = -1
        self._last_time = 0.0

    def __enter__(self) -> Progress:
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress as Bar

            self._bar = Bar(console=Console(stderr=True), transient=False)
            self._task = self._bar.add_task(self.label, total=self.total)
            self._bar.start()
        return self

    def advance(self, count: int = 1) -> None:
        self.update(self.done + count, self.total)

    def update(self, done: int, total: int | None, *, force: bool = False) -> None:
        import time

        self.done, self.total = done, total
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)
            return
        now = time.monotonic()
        if total is not None:
            step = max(total // 20, 1)
            due = done == total or done - self._last >= step
        else:
            due = self._last < 0 or now - self._last_time >= 1.0
        if (due or force) and done != self._last:
            self._last, self._last_time = done, now
            line: dict[str, Any] = {"progress": done}
            if total is not None:
                line["total"] = total
            line["what"] = self.label
            click.echo(json.dumps(line), err=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif not self.quiet and exc[0] is None:
            self.update(self.done, self.total, force=True)


def _pairs(values: Iterable[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            # The value is not echoed: it may be a credential typed without its key.
            raise click.BadParameter("expected KEY=VALUE", param_hint=option)
        if key in pairs:
            raise click.BadParameter(f"{key} given twice", param_hint=option)
        pairs[key] = rest
    return pairs


def provider_options(command: F) -> F:
    """``--provider``, ``--setting`` and ``--json``, shared by every command that talks to one."""
    command = click.option("--json", "as_json", is_flag=True,
                           help="JSON output (JSON lines for lists).")(command)
    command = click.option(
        "-s", "--setting", "settings", multiple=True, metavar="KEY=VALUE",
        help="A provider setting (repeatable); see `billing-credits providers`.",
    )(command)
    command = click.option(
        "-p", "--provider", default="local", show_default=True, envvar="BILLING_CREDITS_PROVIDER",
        help="Provider name [env: BILLING_CREDITS_PROVIDER].",
    )(command)
    return command


def _open(provider: str, settings: tuple[str, ...]) -> Any:
    from ._plugins import get_provider

    return get_provider(provider, **_pairs(settings, "--setting"))


def _grant_json(grant: Any) -> str:
    text: str = grant.model_dump_json(exclude={"raw"})
    return text


_COLUMNS: tuple[tuple[str, int], ...] = (
    # (header, drop rank: the higher, the sooner it goes on a narrow terminal; 0 never).
    # Ranks 0 print whole on one line (ids, amounts), except "adjusted", which folds.
    ("id", 0), ("customer", 0), ("amount", 0), ("balance", 4), ("status", 3),
    ("priority", 5), ("effective", 7), ("expires", 6), ("name", 8), ("adjusted", 0),
)
_FOLDED = frozenset({"adjusted"})


def _whole(index: int) -> bool:
    return _COLUMNS[index][1] == 0 and _COLUMNS[index][0] not in _FOLDED


def _row(grant: Any) -> list[str]:
    return [
        grant.id or "", grant.customer_id, str(grant.amount),
        str(grant.balance.amount) if grant.balance else "-",
        grant.status.value if grant.status else "-",
        str(grant.priority) if grant.priority is not None else "default",
        _when(grant.effective_at), _when(grant.expires_at) if grant.expires_at else "never",
        grant.name or "",
        ", ".join(a.field for a in grant.adjustments) or "-",
    ]


def _console(*, stderr: bool = False) -> Any:
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() else None if stream.isatty() else 250
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def _fit(rows: list[list[str]], width: int) -> list[int]:
    """Indexes of the columns to show: ids whole, other columns dropped until they fit."""
    keep = list(range(len(_COLUMNS)))
    need = [max([len(_COLUMNS[i][0])] + [len(r[i]) for r in rows]) for i in keep]

    def total() -> int:
        return sum(need[i] if _whole(i) else min(need[i], 12) for i in keep) + 2 * len(keep)

    for index in sorted(keep, key=lambda i: -_COLUMNS[i][1]):
        if total() <= width or not _COLUMNS[index][1]:
            break
        keep.remove(index)
    return keep


class _Rows:
    """Prints grants as a table while they arrive: the first row at once, then in batches,
    with the column widths of the first batch (an id longer than its column still prints
    whole: ids are never cut)."""

    def __init__(self) -> None:
        self.console = _console()
        self.count = 0
        self.keep: list[int] | None = None
        self.widths: list[int] = []
        self.batch: list[list[str]] = []

    def add(self, grant: Any) -> None:
        self.batch.append(_row(grant))
        self.count += 1
        if self.count == 1 or len(self.batch) >= 200:
            self.flush()

    def flush(self) -> None:
        from rich.table import Table

        if not self.batch:
            return
        if self.keep is None:
            self.keep = _fit(self.batch, self.console.width)
            self.widths = [max([len(_COLUMNS[i][0])] + [len(r[i]) for r in self.batch])
                           for i in self.keep]
        table = Table(box=None, header_style="bold", show_header=self.count == len(self.batch),
                      pad_edge=False)
        for i, width in zip(self.keep, self.widths, strict=True):
            header = _COLUMNS[i][0]
            longest = max(len(r[i]) for r in self.batch)
            if _whole(i):  # an id or an amount: whole, on one line
                table.add_column(header, no_wrap=True, min_width=max(width, longest))
            else:
                table.add_column(header, overflow="fold", min_width=min(width, 12), max_width=40)
        needed = 0
        for i, width in zip(self.keep, self.widths, strict=True):
            longest = max(len(r[i]) for r in self.batch)
            needed += (max(width, longest) if _whole(i) else min(width, 12)) + 2
        for row in self.batch:
            table.add_row(*(row[i] for i in self.keep))
        console = self.console
        if needed > console.width:  # wider than the terminal: wrap on screen, never cut
            from rich.console import Console

            console = Console(file=console.file, width=needed, highlight=False, soft_wrap=False)
        console.print(table)
        self.batch = []

    def finish(self) -> None:
        self.flush()
        self.console.print(f"{self.count} grant{'s' if self.count != 1 else ''}")


def _show(grants: Iterable[Any], as_json: bool) -> None:
    if as_json:
        for grant in grants:
            click.echo(_grant_json(grant))
        return
    rows = _Rows()
    try:
        for grant in grants:
            rows.add(grant)
    finally:
        rows.flush()
    rows.finish()


def _detail(grant: Any) -> None:
    """Every field of one grant, one per line (nothing only --json would show)."""
    from rich.table import Table

    data = grant.model_dump(mode="json", exclude={"raw"})
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")

    def add(name: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                add(f"{name}.{key}", inner)
        elif isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            for index, inner in enumerate(value):
                add(f"{name}.{index}", inner)
        elif isinstance(value, list):
            table.add_row(name, ", ".join(value) if value else "-")
        elif isinstance(value, dict):
            table.add_row(name, "-")
        else:
            table.add_row(name, "-" if value is None else str(value))

    ordered = ["id", "provider", "customer_id", "status", "amount", "balance", "paid_amount",
               "category", "category_label", "name", "reason", "priority", "effective_at",
               "expires_at", "schedule", "scope", "metadata", "idempotency_key", "created_at",
               "adjustments"]
    for name in ordered + [k for k in data if k not in ordered]:
        if name in data:
            value = data[name]
            if name in ("amount", "balance", "paid_amount") and isinstance(value, dict):
                value = str(getattr(grant, name))
            if name == "scope" and not any(value.values()):
                value = "all usage"
            if name == "schedule" and value is None:
                value = "one window (effective_at to expires_at)"
            add(name, value)
    _console().print(table)


def _when(moment: Any) -> str:
    return "-" if moment is None else str(moment.strftime("%Y-%m-%d %H:%M:%SZ"))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="billing-credits")
def cli() -> None:
    """Create, list and move prepaid billing credits across billing vendors.

    Works out of the box on the embedded `local` provider (SQLite; the database is
    $BILLING_CREDITS_DB or a file in your user data directory).
    """


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per provider.")
def providers(name: str | None, as_json: bool) -> None:
    """Installed providers (or only NAME): settings, environment variables, capabilities."""
    from ._plugins import available_providers

    found = available_providers()
    if name is not None:
        chosen = [info for info in found if info.name == name]
        if not chosen:
            from ._errors import UnknownProviderError

            raise UnknownProviderError(name, {info.name: None for info in found})
        found = chosen
    if as_json:
        for info in found:
            rows = info.capabilities.describe()
            click.echo(json.dumps({
                "name": info.name,
                "module": info.module,
                "description": info.description,
                "settings": [{"name": s.name, "env": s.env, "secret": s.secret, "help": s.help}
                             for s in info.settings],
                "capabilities": {k: v for k, v in rows if k != "note"},
                "notes": [v for k, v in rows if k == "note"],
            }))
        return
    # Plain aligned text (no rich): `providers` is the first command people run, keep it fast.
    for info in found:
        click.echo(click.style(info.name, bold=True) + f"  {info.description}  ({info.module})")
        _plain_rows([tuple(row) for row in info.capabilities.describe()])
        if info.settings:
            table: list[tuple[str, ...]] = [("setting", "environment variable", "meaning")]
            table += [(s.name, s.env or "-", s.help + (" (secret)" if s.secret else ""))
                      for s in info.settings]
            _plain_rows(table)
        click.echo()


def _plain_rows(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  " + "  ".join([*cells, row[-1]]))


@cli.group()
def grants() -> None:
    """Create, list, show, void and expire credit grants."""


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
@click.option("--from-json", "from_json", type=click.File("r"),
              help="Read the whole grant as JSON (a file, or - for stdin); no field options.")
def create(provider: str, settings: tuple[str, ...], as_json: bool, **fields: Any) -> None:
    """Create a grant. Invalid input is refused before anything is written."""
    from ._model import CreditGrant

    source = fields.pop("from_json")
    if source is not None:
        given = sorted(f"--{name.replace('_', '-').rstrip('s')}" for name, value in fields.items()
                       if value not in (None, (), False))
        if given:
            raise click.UsageError(f"--from-json reads the whole grant; drop {', '.join(given)}")
        made = [CreditGrant.model_validate_json(source.read())]
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
def list_(provider: str, settings: tuple[str, ...], as_json: bool, customers: tuple[str, ...],
          page_size: int | None, limit: int | None) -> None:
    """List grants as they arrive, page after page (JSON lines with --json)."""
    with _open(provider, settings) as opened:
        def every() -> Iterator[Any]:
            for customer in dict.fromkeys(customers) if customers else (None,):
                yield from opened.list_grants(customer, page_size=page_size)

        _show(_take(every(), limit), as_json)


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


_single("get", "Show one grant, every field.")
_single("void", "Void a grant: its remaining credits are gone. Shows it afterwards.")
_single("expire", "Expire a grant now. Shows it afterwards.")


def _provider_only(command: F) -> F:
    """``--provider`` and ``--setting`` without ``--json`` (for commands whose output is data)."""
    command = click.option(
        "-s", "--setting", "settings", multiple=True, metavar="KEY=VALUE",
        help="A provider setting (repeatable, each key once); see `billing-credits providers`.",
    )(command)
    command = click.option(
        "-p", "--provider", default="local", show_default=True, envvar="BILLING_CREDITS_PROVIDER",
        help="Provider name [env: BILLING_CREDITS_PROVIDER].",
    )(command)
    return command


@cli.command("export")
@_provider_only
@click.option("--customer", "customers", multiple=True, help="Only these customers (repeatable).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="File (default stdout), written under a temporary name and renamed when "
                   "complete.")
@click.option("--include-raw", is_flag=True, help="Keep each grant's vendor payload.")
@click.option("--page-size", type=click.IntRange(min=1), help="Grants fetched per request.")
@quiet_option
def export(provider: str, settings: tuple[str, ...], customers: tuple[str, ...],
           output: str, include_raw: bool, page_size: int | None, quiet: bool) -> None:
    """Write grants as neutral JSON lines (the output is JSON already)."""
    import os
    import tempfile
    from pathlib import Path

    from ._transfer import export_grants

    with _open(provider, settings) as opened:
        if output == "-":
            count = export_grants(opened, sys.stdout, customers=customers or None,
                                  include_raw=include_raw, page_size=page_size)
        else:
            target = Path(output)
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                                 dir=target.parent or Path("."))
            try:
                with os.fdopen(handle, "w") as out, Progress("exporting", quiet=quiet) as bar:
                    _doing(lambda: f"exported {bar.done} grant(s); {output} not written")
                    count = export_grants(
                        opened, out, customers=customers or None, include_raw=include_raw,
                        page_size=page_size, progress=lambda done: bar.update(done, None))
                    out.flush()
                    os.fsync(out.fileno())
                mask = os.umask(0)
                os.umask(mask)
                os.chmod(temporary, 0o666 & ~mask)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
    click.echo(f"exported {count} grant{'s' if count != 1 else ''}", err=True)


@cli.command("import")
@provider_options
@click.argument("source", type=click.File("r"))
@click.option("--include-ended", is_flag=True, help="Also import voided and expired grants.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Grants per transaction, on providers that take batches (local).")
@quiet_option
def import_(provider: str, settings: tuple[str, ...], as_json: bool, source: Any,
            include_ended: bool, batch_size: int, quiet: bool) -> None:
    """Create grants from neutral JSON lines (as written by export); safe to repeat."""
    from ._transfer import import_grants

    with _open(provider, settings) as opened, Progress("importing", quiet=quiet) as bar:
        _doing(lambda: f"read {bar.done} line(s); every batch written is complete: "
                       "run the import again to finish (nothing is created twice)")
        report = import_grants(opened, source, include_ended=include_ended,
                               batch_size=batch_size, progress=lambda n: bar.update(n, None))
    for line, why in report.skipped:
        click.echo(f"line {line}: skipped {why}", err=True)
    for line, error in report.failed:
        click.echo(f"line {line}: {error}", err=True)
    if as_json:
        click.echo(json.dumps(report.summary()))
    else:
        click.echo(f"created {report.created}, already there {report.already_there}, "
                   f"skipped {len(report.skipped)}, failed {len(report.failed)}")
    if report.failed:
        sys.exit(EXIT_PROVIDER_ERROR)


@cli.command("sandbox")
@click.option("--dir", "directory", default="billing-credits-sandbox", show_default=True,
              type=click.Path(file_okay=False),
              help="Where to write sandbox.env and the example files (created if missing).")
@click.option("--only", "only", multiple=True, metavar="NAME",
              help="Start only this sandbox (repeatable; default: every installed one).")
@click.option("--json", "as_json", is_flag=True,
              help="Print each started sandbox as one JSON line (name, url, environment, ...).")
def sandbox(directory: str, only: tuple[str, ...], as_json: bool) -> None:
    """Serve the installed vendor fakes on loopback with a demo account, until Ctrl-C.

    Prints (and writes to DIR/sandbox.env) the environment lines that point the providers at
    them; `. DIR/sandbox.env` in another shell, then use any command against them.
    """
    import signal
    import threading
    from contextlib import ExitStack
    from pathlib import Path

    from ._sandbox import sandboxes

    installed = sandboxes()
    unknown = sorted(set(only) - set(installed))
    if unknown:
        raise click.BadParameter(f"no sandbox {', '.join(unknown)}; installed: "
                                 f"{', '.join(installed) or 'none'}", param_hint="--only")
    if not installed:
        raise ConfigurationError("no sandbox installed (install billing-credits-stripe or "
                                 "billing-credits-metronome)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        started = [stack.enter_context(start()) for name, start in installed.items()
                   if not only or name in only]
        lines: list[str] = []
        env_file = folder / "sandbox.env"
        for box in started:
            if not as_json:
                click.echo(f"{box.name}: {box.url}  (providers: {', '.join(box.providers)})")
                for item in box.seeded:
                    click.echo(f"  {item}")
            lines += box.export_lines()
            for name, text in box.files.items():
                (folder / name).write_text(text)
                if not as_json:
                    click.echo(f"  wrote {folder / name}")
        env_file.write_text("\n".join(lines) + "\n")
        if as_json:
            for box in started:
                click.echo(json.dumps({
                    "name": box.name, "url": box.url, "providers": list(box.providers),
                    "environment": dict(box.environment), "seeded": list(box.seeded),
                    "files": [str(folder / name) for name in box.files],
                    "env_file": str(env_file)}))
        else:
            click.echo("\nPoint the providers at the sandbox (in another shell):\n")
            for line in lines:
                click.echo(f"  {line}")
            click.echo(f"\nor: . {env_file}\nServing on loopback only; Ctrl-C stops.")
        sys.stdout.flush()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    click.echo("sandbox stopped", err=True)


@cli.group()
def migrate() -> None:
    """Move grants between providers: plan (dry run), apply, verify."""


def _endpoints(command: F) -> F:
    command = click.option("-T", "--to-setting", "to_settings", multiple=True, metavar="KEY=VALUE",
                           help="A target provider setting (repeatable).")(command)
    command = click.option("-F", "--from-setting", "from_settings", multiple=True,
                           metavar="KEY=VALUE", help="A source provider setting (repeatable).")(command)
    return command


def _read_map(path: str | None, *, many: bool) -> dict[str, Any] | None:
    """A JSON object, or CSV rows ``key,value`` (a header row is skipped if it does not map)."""
    if path is None:
        return None
    import csv
    from pathlib import Path

    text = Path(path).read_text()
    if path.endswith(".json"):
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise click.BadParameter(f"{path}: expected a JSON object")
        return {str(k): ([str(x) for x in v] if many and isinstance(v, list) else v)
                for k, v in loaded.items()}
    mapping: dict[str, Any] = {}
    rows = [row for row in csv.reader(text.splitlines()) if row]
    if rows and [c.strip().lower() for c in rows[0][:2]] in (["source", "target"],
                                                             ["product", "price"]):
        rows = rows[1:]
    for row in rows:
        if len(row) < 2:
            raise click.BadParameter(f"{path}: expected two columns, got {row}")
        key, value = row[0].strip(), row[1].strip()
        if many:
            mapping.setdefault(key, []).append(value)
        else:
            mapping[key] = value
    return mapping


@migrate.command("plan")
@_endpoints
@click.option("--from", "source", required=True, help="Source provider.")
@click.option("--to", "target", required=True, help="Target provider.")
@click.option("--customer", "customers", multiple=True, help="Only these customers (repeatable).")
@click.option("--customer-map", type=click.Path(exists=True, dir_okay=False),
              help="CSV (source,target) or JSON object mapping customer ids.")
@click.option("--scope-map", type=click.Path(exists=True, dir_okay=False),
              help="CSV (product,price) or JSON {product: [prices]} mapping products to prices.")
@click.option("--amount", "amount_mode", type=click.Choice(["remaining", "original"]),
              default="remaining", show_default=True,
              help="Migrate what is left of each grant, or the granted amounts.")
@click.option("--priority", "priority_policy", type=click.Choice(["exact", "preserve-order"]),
              default="exact", show_default=True,
              help="Keep priorities exactly (refuse what the target cannot hold) or map each "
                   "customer's onto the target's scale keeping their order.")
@click.option("--lenient", is_flag=True, help="Let apply skip refused grants instead of stopping.")
@click.option("--no-provenance", is_flag=True, help="Do not add migrated_from_* metadata.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where to write the plan (JSON lines).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option
def migrate_plan(source: str, target: str, from_settings: tuple[str, ...],
                 to_settings: tuple[str, ...], customers: tuple[str, ...],
                 customer_map: str | None, scope_map: str | None, amount_mode: Any,
                 priority_policy: Any, lenient: bool, no_provenance: bool, output: str,
                 as_json: bool, quiet: bool) -> None:
    """Plan a migration (a dry run: writes only the plan file)."""
    from ._migration import plan_migration

    with _open(source, from_settings) as src, _open(target, to_settings) as dst, \
            Progress("reading source", quiet=quiet) as bar:
        listing = src.list_grants

        def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for grant in listing(*args, **kwargs):
                bar.advance()
                yield grant

        src.list_grants = counted
        _doing(lambda: f"read {bar.done} source grant(s); nothing written")
        plan = plan_migration(
            src, dst, customers=customers or None, amount_mode=amount_mode,
            customer_map=_read_map(customer_map, many=False),
            scope_map=_read_map(scope_map, many=True), priority_policy=priority_policy,
            strict=not lenient, provenance=not no_provenance)
    plan.save(output)
    summary = plan.summary()
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        _print_plan(plan, summary)
    if plan.refusals and not lenient:
        click.echo(f"error: {len(plan.refusals)} grant(s) refused; see {output} "
                   "(plan again with --lenient to skip them)", err=True)
        sys.exit(EXIT_PROVIDER_ERROR)


def _print_plan(plan: Any, summary: dict[str, Any]) -> None:
    from rich.table import Table

    console = _console()
    console.print(f"plan {summary['source']} → {summary['target']}: "
                  f"{summary['grants_to_create']} grant(s) to create, "
                  f"{summary['refused']} refused, {summary['changes']} change(s)")
    for reason, count in summary["skipped"].items():
        console.print(f"  skipped {count}: {reason}")
    changes = Table(box=None, header_style="bold")
    longest = max([len(i.source_id) for i in plan.items] + [12])
    changes.add_column("source grant", no_wrap=True, min_width=longest)
    for header in ("segment", "field", "source", "target", "why"):
        changes.add_column(header, overflow="fold")
    for item in plan.items:
        for change in item.changes:
            changes.add_row(item.source_id, str(item.segment if item.segment is not None else ""),
                            change.field, change.source, change.target, change.why)
    if changes.row_count:
        console.print(changes)
    totals = Table(box=None, header_style="bold")
    totals.add_column("customer", no_wrap=True)
    for header in ("unit", "grants", "planned"):
        totals.add_column(header)
    for customer, units in summary["totals"].items():
        for unit, numbers in units.items():
            totals.add_row(customer, unit, numbers["grants"], numbers["planned"])
    console.print(totals)


@migrate.command("apply")
@_endpoints
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@click.option("--retire", type=click.Choice(["void", "expire"]),
              help="Then void or expire each source grant whose target grants are confirmed.")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True,
              help="Creates in flight at once (the target's rate limit still applies).")
@click.option("--journal", type=click.Path(dir_okay=False),
              help="Journal file (default: PLAN.journal).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option
def migrate_apply(plan_path: str, from_settings: tuple[str, ...], to_settings: tuple[str, ...],
                  retire: Any, concurrency: int, journal: str | None, as_json: bool,
                  quiet: bool) -> None:
    """Create the planned grants; safe to run again after any interruption."""
    import asyncio
    from contextlib import ExitStack

    from ._migration import MigrationPlan, apply_plan

    plan = MigrationPlan.load(plan_path)
    refused = len(plan.refusals)
    with ExitStack() as stack:
        target = stack.enter_context(_open(plan.header.target, to_settings))
        source = stack.enter_context(_open(plan.header.source, from_settings)) if retire else None
        bar = stack.enter_context(Progress("creating", quiet=quiet))
        state = {"done": 0, "total": len(plan.to_create)}

        def progress(done: int, total: int) -> None:
            state.update(done=done, total=total)
            bar.update(done, total)

        _doing(lambda: f"{state['done']} of {state['total']} planned grant(s) confirmed; "
                       f"the journal keeps them: run apply again to finish")
        report = asyncio.run(apply_plan(
            plan, target, journal=journal or f"{plan_path}.journal", source=source,
            retire=retire, concurrency=concurrency, progress=progress))
    for key, error in report.failed:
        click.echo(f"failed {key}: {error}", err=True)
    summary = {"created": report.created, "already_there": report.already_done,
               "already_done": report.already_done,
               "refused": refused, "failed": len(report.failed), "retired": report.retired,
               "seconds": round(report.seconds, 3)}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        retired = f", retired {report.retired}" if retire else ""
        click.echo(f"created {report.created}, already there {report.already_done}, "
                   f"refused {refused}{' (skipped)' if refused else ''}, "
                   f"failed {len(report.failed)}{retired} in {report.seconds:.1f} s")
    if not report.ok:
        sys.exit(EXIT_PROVIDER_ERROR)


@migrate.command("verify")
@_endpoints
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def migrate_verify(plan_path: str, from_settings: tuple[str, ...], to_settings: tuple[str, ...],
                   as_json: bool) -> None:
    """Reconcile the target with the plan; exit 1 and show the differences on any mismatch."""
    from ._migration import MigrationPlan, verify_plan

    plan = MigrationPlan.load(plan_path)
    with _open(plan.header.target, to_settings) as target:
        report = verify_plan(plan, target)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "checked": report.checked,
                               "differences": report.lines(), "totals": report.totals}))
    else:
        for line in report.lines():
            click.echo(line)
        click.echo(f"checked {report.checked} planned grant(s): "
                   f"{'all present once, as planned' if report.ok else 'MISMATCH'}")
    if not report.ok:
        sys.exit(EXIT_PROVIDER_ERROR)


def main() -> None:
    cli(prog_name="billing-credits")
