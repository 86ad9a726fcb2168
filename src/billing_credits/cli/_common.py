"""The ``billing-credits`` command line.

Heavy imports (rich, providers) happen inside commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

import click

from billing_credits._errors import (
    BillingCreditsError,
    ConfigurationError,
    InvalidGrantError,
    NotRepresentableError,
    UnsupportedOperationError,
)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_PROVIDER_ERROR = 1
EXIT_INVALID = 2


def _say(message: str) -> None:
    """One line on stderr, secrets masked, whatever the message holds."""
    from billing_credits._secrets import redact

    click.echo(redact(" ".join(message.split())), err=True)


def _fail(error: BillingCreditsError) -> NoReturn:
    _say(f"error: {error}")
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
    """Turns every error into one line on stderr and an exit code, never a traceback; every
    line printed goes through ``redact``."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        from billing_credits._secrets import RedactingWriter

        out, err = sys.stdout, sys.stderr
        sys.stdout = RedactingWriter(out)
        sys.stderr = RedactingWriter(err)
        try:
            if not standalone_mode:
                return super().main(args, prog_name, complete_var, False, **extra)
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
                _say(f"error: {error.format_message()} (see: {command} --help)")
                sys.exit(EXIT_INVALID)
            except click.ClickException as error:
                _say(f"error: {error.format_message()}")
                sys.exit(error.exit_code)
            except (click.Abort, KeyboardInterrupt):
                _interrupted()
            sys.exit(result if isinstance(result, int) else 0)
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            sys.stdout, sys.stderr = out, err

    def invoke(self, ctx: click.Context) -> Any:
        import errno
        import sqlite3

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BillingCreditsError as error:
            _fail(error)
        except UnicodeError as error:
            _say(f"error: input is not UTF-8 text: {error}")
            sys.exit(EXIT_INVALID)
        except sqlite3.Error as error:
            _say(f"error: database: {error}")
            unusable = "unable to open" in str(error) or "readonly" in str(error)
            sys.exit(EXIT_INVALID if unusable else EXIT_PROVIDER_ERROR)
        except OSError as error:
            if error.errno == errno.EPIPE:  # the reader went away (| head): click's to handle
                raise
            where = f"{error.filename}: " if error.filename else ""
            _say(f"error: {where}{error.strerror or error}")
            sys.exit(EXIT_INVALID)
        except Exception as error:
            # Never a traceback: whatever escaped the hierarchy is still one line, redacted.
            _say(f"error: internal error: {type(error).__name__}: {error}")
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


def provider_options(command: F) -> F:
    """``--provider``, ``--setting`` and ``--json``, shared by every command that talks to one."""
    command = click.option("--json", "as_json", is_flag=True,
                           help="JSON output (JSON lines for lists).")(command)
    return _provider_only(command)


def _open(provider: str, settings: tuple[str, ...], option: str = "--setting") -> Any:
    """The provider ``provider`` with ``settings``; a setting it cannot use is a
    ``ConfigurationError`` (exit 2), whatever the provider raised for it."""
    from billing_credits.plugins._registry import get_provider

    pairs = _pairs(settings, option)
    _register_secrets(provider, pairs)
    try:
        return get_provider(provider, **pairs)
    except BillingCreditsError:
        raise
    except (ValueError, TypeError, ArithmeticError, LookupError, AttributeError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise ConfigurationError(f"provider {provider!r}: invalid setting ({message})") from None


def _register_secrets(provider: str, pairs: dict[str, str]) -> None:
    """Mask every secret setting given (or in its environment variable) from now on, before
    the provider sees it: whatever fails while reading the settings, it never shows them."""
    import os

    from billing_credits._secrets import check_base_url, register_secret
    from billing_credits.plugins._registry import providers

    found = providers().get(provider)
    credential = False
    for setting in getattr(found, "settings", ()):
        if setting.secret:
            register_secret(pairs.get(setting.name))
            if setting.env:
                register_secret(os.environ.get(setting.env))
            credential = credential or bool(
                pairs.get(setting.name) or (setting.env and os.environ.get(setting.env)))
    if pairs.get("base_url"):  # never a credential over plain http to another machine
        check_base_url(pairs["base_url"], credential=credential)


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
    console = _console()
    # Values fold at spaces; a word (an id, a key, a URL) is never cut: when the longest word
    # does not fit beside the field names, print wider and let the terminal wrap the line.
    names = [str(cell) for cell in table.columns[0].cells]
    words = [word for cell in table.columns[1].cells for word in str(cell).split()]
    needed = max(map(len, names), default=0) + 2 + max(map(len, words), default=0)
    if needed > console.width:
        from rich.console import Console

        console = Console(file=console.file, width=needed, highlight=False, soft_wrap=False)
    console.print(table)


def _when(moment: Any) -> str:
    return "-" if moment is None else str(moment.strftime("%Y-%m-%d %H:%M:%SZ"))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="billing-credits")
@click.option("--debug", is_flag=True, envvar="BILLING_CREDITS_DEBUG",
              help="Log requests, retries and errors to stderr (secrets masked) "
                   "[env: BILLING_CREDITS_DEBUG].")
def cli(debug: bool) -> None:
    """Create, list and move prepaid billing credits across billing vendors.

    Works out of the box on the embedded `local` provider (SQLite; the database is
    $BILLING_CREDITS_DB or a file in your user data directory).
    """
    if debug:
        import logging

        from billing_credits._secrets import install_log_redaction

        install_log_redaction()
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, force=True,
                            format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per provider.")
def providers(name: str | None, as_json: bool) -> None:
    """Installed providers (or only NAME): settings, environment variables, capabilities."""
    from billing_credits.plugins._registry import available_providers

    found = available_providers()
    if name is not None:
        chosen = [info for info in found if info.name == name]
        if not chosen:
            from billing_credits._errors import UnknownProviderError

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
    from billing_credits._model import CreditGrant

    source = fields.pop("from_json")
    if source is not None:
        given = sorted(f"--{name.replace('_', '-').rstrip('s')}" for name, value in fields.items()
                       if value not in (None, (), False))
        if given:
            raise click.UsageError(f"--from-json reads the whole grant; drop {', '.join(given)}")
        try:
            text = source.read()
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


@cli.command("setup")
@provider_options
def setup(provider: str, settings: tuple[str, ...], as_json: bool) -> None:
    """Prepare the vendor account for a provider (idempotent; safe to run again).

    For Metronome: registers the custom-field keys the provider writes.
    """
    with _open(provider, settings) as opened:
        done = opened.setup()
    if as_json:
        click.echo(json.dumps({"provider": provider, "done": done}))
        return
    for line in done:
        click.echo(line)
    click.echo(f"{provider}: set up" + ("" if done else " (nothing to do)"), err=True)


class _Rejects:
    """A rejects file (JSON lines), created on its first entry only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self._file: Any = None

    def write(self, entry: dict[str, Any]) -> None:
        from billing_credits._secrets import redact

        if self._file is None:
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._file.write(redact(json.dumps(entry, default=str, ensure_ascii=True)) + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _AtomicOutput:
    """An output file written beside its final name and moved into place only on success:
    a failed command leaves nothing half-written (``-``: stdout, written as it goes)."""

    def __init__(self, path: str) -> None:
        from pathlib import Path

        self.path = path
        self.partial = None if path == "-" else Path(path).with_name(f".{Path(path).name}.partial")

    def __enter__(self) -> Any:
        if self.partial is None:
            return sys.stdout
        self._file = self.partial.open("w", encoding="utf-8")
        return self._file

    def __exit__(self, kind: object, *exc: object) -> None:
        if self.partial is None:
            return
        self._file.close()
        if kind is None:
            self.partial.replace(self.path)
        else:
            self.partial.unlink(missing_ok=True)


@cli.command("export")
@_provider_only
@click.option("--customer", "customers", multiple=True, help="Only these customers (repeatable).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="File (default stdout); written whole or not at all.")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Where listing items that cannot be read go, as JSON lines (default "
                   "OUTPUT.rejects.jsonl, or export.rejects.jsonl for stdout).")
@click.option("--include-raw", is_flag=True, help="Keep each grant's vendor payload.")
@click.option("--page-size", type=click.IntRange(min=1), help="Grants fetched per request.")
@quiet_option
def export(provider: str, settings: tuple[str, ...], customers: tuple[str, ...],
           output: str, rejects: str | None, include_raw: bool, page_size: int | None,
           quiet: bool) -> None:
    """Write grants as neutral JSON lines (the output is JSON already); vendor items that
    cannot be read go to a rejects file."""
    from billing_credits.migrate._transfer import export_grants

    if output != "-":
        _writable_folder(output, "--output")
    unreadable = _Rejects(rejects or (f"{output}.rejects.jsonl" if output != "-"
                                      else "export.rejects.jsonl"))
    try:
        with _open(provider, settings) as opened, _AtomicOutput(output) as out, \
                Progress("exporting", quiet=quiet or output == "-") as bar:
            _doing(lambda: f"exported {bar.done} grant(s); {output} not written")
            count = export_grants(opened, out, customers=customers or None,
                                  include_raw=include_raw, page_size=page_size,
                                  on_unreadable=lambda entry: unreadable.write(entry.as_json()),
                                  progress=lambda done: bar.update(done, None))
    finally:
        unreadable.close()
    message = f"exported {count} grant{'s' if count != 1 else ''}"
    if unreadable.count:
        message += (f"; {unreadable.count} item(s) could not be read as grants, written to "
                    f"{unreadable.path}")
    _say(message)


@cli.command("import")
@provider_options
@click.argument("source", type=click.File("rb"))
@click.option("--include-ended", is_flag=True,
              help="Also import ended grants, kept ended (refused when they cannot be).")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Where lines that were not imported go, with the problem, as JSON lines "
                   "(default SOURCE.rejects.jsonl, or import.rejects.jsonl for stdin).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Grants per transaction, on providers that take batches (local).")
@quiet_option
def import_(provider: str, settings: tuple[str, ...], as_json: bool, source: Any,
            include_ended: bool, rejects: str | None, batch_size: int, quiet: bool) -> None:
    """Create grants from neutral JSON lines (as written by export); safe to repeat."""
    from billing_credits.migrate._transfer import import_grants, reject_line

    name = getattr(source, "name", "-")
    rejected = _Rejects(rejects or (f"{name}.rejects.jsonl" if isinstance(name, str)
                                    and name not in ("-", "<stdin>") else "import.rejects.jsonl"))
    try:
        with _open(provider, settings) as opened, Progress("importing", quiet=quiet) as bar:
            _doing(lambda: f"read {bar.done} line(s); every batch written is complete: "
                           "run the import again to finish (nothing is created twice)")
            report = import_grants(
                opened, source, include_ended=include_ended, batch_size=batch_size,
                progress=lambda n: bar.update(n, None),
                on_reject=lambda number, line, why: rejected.write(reject_line(number, line, why)))
    finally:
        rejected.close()
    _print_failures([(f"line {line}", why) for line, why in report.skipped], what="skipped")
    _print_failures([(f"line {line}", error) for line, error in report.failed])
    if report.times_aligned and not quiet:
        _say(f"times of {report.times_aligned} grant(s) aligned: {report.alignment}")
    if as_json:
        extra = {"rejects": rejected.path} if rejected.count else {}
        click.echo(json.dumps({**report.summary(), **extra}))
    else:
        summary = (f"created {report.created}, already there {report.already_there}, "
                   f"skipped {len(report.skipped)}, failed {len(report.failed)}")
        if report.times_aligned:
            summary += f"; times aligned {report.times_aligned}"
        if report.paid_recorded_only:
            summary += (f"; paid amount of {report.paid_recorded_only} recorded only, not "
                        "invoiced (exported grants were paid for where they came from)")
        if rejected.count:
            summary += f"; failed lines written to {rejected.path}"
        click.echo(summary)
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

    from billing_credits.plugins._registry import sandboxes

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
            from billing_credits._secrets import redact

            click.echo(f"\nPoint the providers at the sandbox (in another shell):\n\n  . {env_file}\n")
            click.echo("which sets:")
            for line in lines:
                click.echo(f"  {line}")
            if any(redact(line) != line for line in lines):
                click.echo(f"(secret values are masked here; {env_file} holds them)")
            click.echo("\nServing on loopback only; Ctrl-C stops.")
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


def _read_map(path: str | None, *, many: bool, option: str) -> dict[str, Any] | None:
    """A JSON object, or CSV rows ``key,value`` (a header row is skipped if it does not map).

    Checked whole: keys and values are non-empty strings (``many``: a value is a list of
    them, or one string in CSV rows); anything else is refused naming the file and the entry.
    """
    if path is None:
        return None
    import csv
    from pathlib import Path

    def bad(problem: str) -> click.BadParameter:
        return click.BadParameter(f"{path}: {problem}", param_hint=option)

    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise bad(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    if path.endswith(".json"):
        try:
            loaded = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise bad(f"not valid JSON ({' '.join(str(error).split())[:120]})") from None
        if not isinstance(loaded, dict):
            raise bad("expected a JSON object")
        for key, value in loaded.items():
            if not key.strip():
                raise bad("an empty key")
            if many:
                if not isinstance(value, list) or not all(
                        isinstance(x, str) and x.strip() for x in value):
                    raise bad(f"{key!r}: expected a list of ids (strings), got {value!r:.60}")
            elif not isinstance(value, str) or not value.strip():
                raise bad(f"{key!r}: expected an id (a string), got {value!r:.60}")
        return dict(loaded)
    mapping: dict[str, Any] = {}
    rows = [row for row in csv.reader(text.splitlines()) if row]
    if rows and [c.strip().lower() for c in rows[0][:2]] in (["source", "target"],
                                                             ["product", "price"]):
        rows = rows[1:]
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise bad(f"row {number}: expected two non-empty columns, got {row!r:.60}")
        key, value = row[0].strip(), row[1].strip()
        if many:
            mapping.setdefault(key, []).append(value)
        else:
            mapping[key] = value
    return mapping


def _writable_folder(path: str, option: str) -> None:
    """Refuse, before any work, an output path whose folder is missing or not writable."""
    import os
    from pathlib import Path

    folder = Path(path).parent
    if not folder.is_dir():
        raise click.BadParameter(f"{path}: folder {str(folder)!r} does not exist", param_hint=option)
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"{path}: folder {str(folder)!r} is not writable", param_hint=option)


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
@click.option("--no-provenance", is_flag=True,
              help="Do not add migrated_from_* metadata (then a grant the migration changed "
                   "no longer answers a create with the application's own key; the plan says so).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where to write the plan (JSON lines).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--usage", "usage_path", type=click.Path(exists=True, dir_okay=False),
              help="Usage (CSV or JSON lines: customer_id, at, amount[, product]) to simulate "
              "both sides with, instead of the synthetic stream.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write an HTML report: each customer's burn-down on both sides.")
@quiet_option
def migrate_plan(source: str, target: str, from_settings: tuple[str, ...],
                 to_settings: tuple[str, ...], customers: tuple[str, ...],
                 customer_map: str | None, scope_map: str | None, amount_mode: Any,
                 priority_policy: Any, lenient: bool, no_provenance: bool, output: str,
                 as_json: bool, usage_path: str | None, report_path: str | None,
                 quiet: bool) -> None:
    """Plan a migration (a dry run: writes only the plan file)."""
    from billing_credits._secrets import RedactingWriter
    from billing_credits.migrate._plan import MigrationPlan
    from billing_credits.migrate._planner import plan_migration, write_plan

    # Everything given is checked before anything is read from a provider.
    customers_by = _read_map(customer_map, many=False, option="--customer-map")
    prices_by = _read_map(scope_map, many=True, option="--scope-map")
    _writable_folder(output, "--output")
    options: dict[str, Any] = {
        "customers": customers or None, "amount_mode": amount_mode, "customer_map": customers_by,
        "scope_map": prices_by, "priority_policy": priority_policy, "strict": not lenient,
        "provenance": not no_provenance}
    with _open(source, from_settings, "--from-setting") as src, \
            _open(target, to_settings, "--to-setting") as dst, \
            Progress("reading source", quiet=quiet) as bar:
        listing = src.list_grants

        def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for grant in listing(*args, **kwargs):
                bar.advance()
                yield grant

        src.list_grants = counted
        _doing(lambda: f"read {bar.done} source grant(s); nothing written")
        simulate = _simulated(src, dst, usage_path, report_path)
        written = _AtomicOutput(output)
        if written.partial is None:  # stdout: the plan is held to simulate it, then written
            plan = plan_migration(src, dst, **options)
            comparison = _simulate_plan(plan, src, dst, usage_path, report_path) if simulate \
                else None
            with written as out, RedactingWriter(out) as redacted:
                plan.write(redacted)  # type: ignore[arg-type]
            summary = plan.summary()
        else:  # streamed to the file as decided; simulated from it before it takes its name
            with written as out:
                with RedactingWriter(out) as redacted:
                    summary = write_plan(src, dst, redacted, **options)  # type: ignore[arg-type]
                out.flush()
                comparison = _simulate_plan(MigrationPlan.open(written.partial), src, dst,
                                            usage_path, report_path) if simulate else None
    if as_json:
        extra = {} if comparison is None else {"consumption_differs": comparison.as_json()}
        click.echo(json.dumps({**summary, **extra}, sort_keys=True))
    else:
        _print_plan(summary, output)
        _print_comparison(comparison)
    if summary["refused"] and not lenient:
        click.echo(f"error: {summary['refused']} grant(s) refused; see {output} "
                   "(plan again with --lenient to skip them)", err=True)
        sys.exit(EXIT_PROVIDER_ERROR)


def _print_plan(summary: dict[str, Any], output: str) -> None:
    """The plan in brief: each kind of change and refusal once, with how many grants it
    touches (every grant's own changes are in the plan file)."""
    from rich.table import Table

    console = _console()
    console.print(f"plan {summary['source']} → {summary['target']} "
                  f"({summary['target_identity']}): "
                  f"{summary['grants_to_create']} grant(s) to create, "
                  f"{summary['refused']} refused, {summary['changes']} change(s)")
    for reason, count in summary["skipped"].items():
        console.print(f"  skipped {count}: {reason}")
    for note in summary["retire_overlaps"].values():
        console.print(f"  note: {note}")
    changes = Table("grants", "change", box=None, header_style="bold")
    for reason, count in summary["change_reasons"].items():
        changes.add_row(str(count), reason)
    if changes.row_count:
        console.print(changes)
    refusals = sorted(summary["refusal_reasons"].items(), key=lambda kv: (-kv[1], kv[0]))
    for reason, count in refusals[:10]:
        console.print(f"  refused {count}: {reason}")
    if len(refusals) > 10:
        console.print(f"  … and {len(refusals) - 10} other refusal reason(s)")
    if summary["changes"] or summary["refused"]:
        console.print(f"each grant's changes and refusals: {output}")
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

    from billing_credits.migrate._apply import apply_plan
    from billing_credits.migrate._plan import MigrationPlan

    plan = MigrationPlan.open(plan_path)  # items stay in the file: memory does not grow
    planned = plan.summary()
    refused = int(planned["refused"])
    with ExitStack() as stack:
        target = stack.enter_context(_open(plan.header.target, to_settings, "--to-setting"))
        source = stack.enter_context(_open(plan.header.source, from_settings, "--from-setting")) \
            if retire else None
        bar = stack.enter_context(Progress("creating", quiet=quiet))
        state = {"done": 0, "total": int(planned["grants_to_create"])}

        def progress(done: int, total: int) -> None:
            state.update(done=done, total=total)
            bar.update(done, total)

        _doing(lambda: f"{state['done']} of {state['total']} planned grant(s) confirmed; "
                       f"the journal keeps them: run apply again to finish")
        report = asyncio.run(apply_plan(
            plan, target, journal=journal or f"{plan_path}.journal", source=source,
            retire=retire, concurrency=concurrency, progress=progress))
    _print_failures(report.failed)
    for overlap in report.overlaps:
        _say(f"overlap {overlap}")
    summary = {**report.as_dict(), "already_there": report.already_done, "refused": refused}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        retired = f", retired {report.retired}" if retire else ""
        click.echo(f"created {report.created}, already there {report.already_done}, "
                   f"refused {refused}{' (skipped)' if refused else ''}, "
                   f"failed {len(report.failed)}{retired} in {report.seconds:.1f} s")
    if not report.ok:
        sys.exit(EXIT_PROVIDER_ERROR)


def _print_failures(failed: list[tuple[str, str]], shown: int = 20, what: str = "failed") -> None:
    """The first failures one per line, then the rest summarized by reason."""
    for key, error in failed[:shown]:
        _say(f"{what} {key}: {error}")
    if len(failed) > shown:
        from collections import Counter

        rest = Counter(error for _, error in failed[shown:])
        _say(f"... and {len(failed) - shown} more "
             f"{'failure(s)' if what == 'failed' else what + ' line(s)'}:")
        for error, count in rest.most_common(10):
            _say(f"  {count} × {error}")


@migrate.command("verify")
@_endpoints
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--usage", "usage_path", type=click.Path(exists=True, dir_okay=False),
              help="Usage to simulate both sides with, instead of the synthetic stream.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write an HTML report of the source and what the target holds.")
def migrate_verify(plan_path: str, from_settings: tuple[str, ...], to_settings: tuple[str, ...],
                   as_json: bool, usage_path: str | None, report_path: str | None) -> None:
    """Reconcile the target with the plan; exit 1 and show the differences on any mismatch."""
    from billing_credits.migrate._plan import MigrationPlan
    from billing_credits.migrate._verify import verify_plan

    plan = MigrationPlan.open(plan_path)
    with _open(plan.header.target, to_settings, "--to-setting") as target:
        report = verify_plan(plan, target)
        comparison = _simulate_held(plan, target, usage_path, report_path)
    if as_json:
        extra = {} if comparison is None else {"consumption_differs": comparison.as_json()}
        click.echo(json.dumps({"ok": report.ok, "checked": report.checked,
                               "differences": report.lines(), "notes": report.notes(),
                               "totals": report.totals, **extra}))
    else:
        for line in report.lines():
            click.echo(line)
        for note in report.notes():
            click.echo(note)
        click.echo(f"checked {report.checked} planned grant(s): "
                   f"{'all present once, as planned' if report.ok else 'MISMATCH'}")
        _print_comparison(comparison)
    if not report.ok:
        sys.exit(EXIT_PROVIDER_ERROR)

# -- balances, ledger, updates, consumption (issue 11) ------------------------------------------


def _moment_option(value: str | None, option: str) -> Any:
    """An ISO 8601 time with a timezone, or None."""
    if value is None:
        return None
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected ISO 8601, e.g. 2026-01-01T00:00:00Z",
                                 param_hint=option) from None
    if moment.tzinfo is None:
        raise click.BadParameter("give a timezone, e.g. Z or +00:00", param_hint=option)
    return moment


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


# -- simulate (issue 12) ---------------------------------------------------------------------


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


def _write_html(path: str, text: str) -> None:
    from pathlib import Path

    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    click.echo(f"report written to {path}", err=True)


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


def _usage_for(path: str | None, grants: Any) -> Any:
    from billing_credits.consumption._simulate import read_usage, units_of

    return None if path is None else read_usage(path, units=units_of(grants))


def _simulated(source: Any, target: Any, usage_path: str | None, report_path: str | None) -> bool:
    """Whether the plan's two sides can be simulated (False, with a note, when an order is not
    declared; refused when asked for with ``--usage`` or ``--report``)."""
    if source.consumption_order is None or target.consumption_order is None:
        missing = source.name if source.consumption_order is None else target.name
        click.echo(f"note: consumption not simulated: {missing} declares no consumption order",
                   err=True)
        if usage_path or report_path:
            raise UnsupportedOperationError(missing, "simulate", "it declares no consumption order")
        return False
    return True


def _simulate_plan(plan: Any, source: Any, target: Any, usage_path: str | None,
                   report_path: str | None) -> Any:
    """Compare the plan's two sides (both declare a consumption order: ``_simulated``)."""
    from billing_credits.migrate._compare import compare_plan, source_side

    sides = [source_side(i) for i in plan.to_create if i.grant is not None]
    comparison = compare_plan(plan, source.consumption_order, target.consumption_order,
                              usage=_usage_for(usage_path, sides))
    if report_path is not None:
        _write_html(report_path, comparison.html(
            title=f"Migration {plan.header.source} → {plan.header.target}: credit burn-down",
            source_name=f"source: {plan.header.source}", target_name=f"target: {plan.header.target}"))
    return comparison


def _simulate_held(plan: Any, target: Any, usage_path: str | None, report_path: str | None) -> Any:
    """After apply: the comparison against the grants the target actually holds."""
    from billing_credits._model import GrantStatus
    from billing_credits.migrate._compare import compare_plan, source_side
    from billing_credits.plugins._registry import providers

    source_cls = providers().get(plan.header.source)
    source_order = getattr(source_cls, "consumption_order", None)
    if source_order is None or target.consumption_order is None:
        if usage_path or report_path:
            name = plan.header.source if source_order is None else target.name
            raise UnsupportedOperationError(name, "simulate", "it declares no consumption order")
        return None
    keys = {i.key for i in plan.to_create if i.key}
    held: dict[str, Any] = {}
    for customer in sorted({i.grant.customer_id for i in plan.to_create if i.grant is not None}):
        for grant in target.list_grants(customer):
            if grant.idempotency_key in keys and grant.status is not GrantStatus.VOIDED:
                held.setdefault(grant.idempotency_key, grant)
    sides = [source_side(i) for i in plan.to_create if i.grant is not None]
    comparison = compare_plan(plan, source_order, target.consumption_order,
                              usage=_usage_for(usage_path, sides), held=held)
    if report_path is not None:
        _write_html(report_path, comparison.html(
            title=f"Verify {plan.header.source} → {plan.header.target}: credit burn-down",
            source_name=f"source: {plan.header.source}",
            target_name=f"target: {plan.header.target} (as held)"))
    return comparison


def _print_comparison(comparison: Any) -> None:
    if comparison is None:
        return
    if comparison.ok:
        click.echo(f"consumption: every customer burns the same way on both sides "
                   f"({len(comparison.source.customers)} simulated)")
        return
    click.echo(f"consumption differs for {len(comparison.differences)} customer(s):")
    for line in comparison.lines():
        click.echo(f"  {line}")


def main() -> None:
    cli(prog_name="billing-credits")
