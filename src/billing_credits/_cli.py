"""The ``billing-credits`` command line.

Heavy imports (rich, providers) happen inside commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
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


def _say(message: str) -> None:
    """One line on stderr, secrets masked, whatever the message holds."""
    from ._secrets import redact

    click.echo(redact(" ".join(message.split())), err=True)


def _fail(error: BillingCreditsError) -> NoReturn:
    _say(f"error: {error}")
    invalid = (InvalidGrantError, NotRepresentableError, ConfigurationError,
               UnsupportedOperationError)
    sys.exit(EXIT_INVALID if isinstance(error, invalid) else EXIT_PROVIDER_ERROR)


class _Group(click.Group):
    """Turns every error into one line on stderr and an exit code, never a traceback; every
    line printed goes through ``redact``."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        from ._secrets import RedactingWriter

        out, err = sys.stdout, sys.stderr
        sys.stdout = RedactingWriter(out)
        sys.stderr = RedactingWriter(err)
        try:
            if not standalone_mode:
                return super().main(args, prog_name, complete_var, False, **extra)
            try:
                result = super().main(args, prog_name, complete_var, False, **extra)
            except click.ClickException as error:
                if type(error).__name__ == "NoArgsIsHelpError":  # a bare group: its help
                    error.show()
                    sys.exit(error.exit_code)
                # Usage errors too are one line: what is wrong, and where to read more.
                context = getattr(error, "ctx", None)
                hint = f" (see '{context.command_path} --help')" if context is not None else ""
                _say(f"error: {error.format_message()}{hint}")
                sys.exit(error.exit_code)
            except click.Abort:
                _say("error: aborted")
                sys.exit(EXIT_PROVIDER_ERROR)
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


def _pairs(values: Iterable[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            # The value is not echoed: it may be a credential typed without its key.
            raise click.BadParameter("expected KEY=VALUE", param_hint=option)
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


def _open(provider: str, settings: tuple[str, ...], option: str = "--setting") -> Any:
    """The provider ``provider`` with ``settings``; a setting it cannot use is a
    ``ConfigurationError`` (exit 2), whatever the provider raised for it."""
    from ._plugins import get_provider

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

    from ._plugins import providers
    from ._secrets import check_base_url, register_secret

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


def _show(grants: Iterable[Any], as_json: bool) -> None:
    if as_json:
        for grant in grants:
            click.echo(_grant_json(grant))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "customer", "amount", "balance", "status", "priority", "effective",
                  "expires", "name", box=None, header_style="bold")
    count = 0
    for grant in grants:
        count += 1
        table.add_row(
            grant.id or "", grant.customer_id, str(grant.amount),
            str(grant.balance.amount) if grant.balance else "-",
            grant.status.value if grant.status else "-",
            str(grant.priority) if grant.priority is not None else "default",
            _when(grant.effective_at), _when(grant.expires_at) if grant.expires_at else "never",
            grant.name or "",
        )
    console = Console(width=200 if not sys.stdout.isatty() else None)
    if count:
        console.print(table)
    console.print(f"{count} grant{'s' if count != 1 else ''}")


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

        from ._secrets import install_log_redaction

        install_log_redaction()
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, force=True,
                            format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def providers(as_json: bool) -> None:
    """Installed providers, their settings and what they can hold."""
    from ._plugins import available_providers

    found = available_providers()
    if as_json:
        for info in found:
            click.echo(json.dumps({
                "name": info.name,
                "module": info.module,
                "description": info.description,
                "settings": [{"name": s.name, "env": s.env, "secret": s.secret, "help": s.help}
                             for s in info.settings],
                "capabilities": dict(info.capabilities.describe()),
            }))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for info in found:
        console.print(f"[bold]{info.name}[/bold]  {info.description}  ({info.module})")
        table = Table("capability", "value", box=None, show_header=False, padding=(0, 2))
        for name, value in info.capabilities.describe():
            table.add_row(name, value)
        for setting in info.settings:
            env = f" [env: {setting.env}]" if setting.env else ""
            table.add_row(f"setting {setting.name}", f"{setting.help}{env}")
        console.print(table)
        console.print()


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
@click.option("--customer", help="Customer id.")
@click.option("--amount", help="Exact amount in major units, e.g. 25.00.")
@click.option("--currency", help="ISO 4217 code, e.g. USD.")
@click.option("--unit-id", help="A custom credit unit's id (instead of --currency).")
@click.option("--unit-name", help="The custom credit unit's name.")
@click.option("--paid-amount", help="Cost basis, in --paid-currency (default: the grant's).")
@click.option("--paid-currency", help="ISO 4217 code of the paid amount.")
@click.option("--category", type=click.Choice(["paid", "promotional"]))
@click.option("--category-label", help="The vendor's own category label, e.g. trial.")
@click.option("--name")
@click.option("--reason")
@click.option("--effective-at", help="ISO 8601 with a timezone, e.g. 2026-01-01T00:00:00Z.")
@click.option("--expires-at", help="ISO 8601 with a timezone; omit for never.")
@click.option("--priority", help="Exact number, lower consumed first.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE")
@click.option("--idempotency-key", help="Makes the create safe to repeat (1-128 chars).")
@click.option("--product-id", "product_ids", multiple=True, help="Scope: product (ordered).")
@click.option("--product-tag", "product_tags", multiple=True, help="Scope: product tag.")
@click.option("--price-id", "price_ids", multiple=True, help="Scope: price.")
@click.option("--metered-prices-only", is_flag=True, help="Scope: every metered price.")
@click.option("--contract-id", "contract_ids", multiple=True, help="Scope: contract.")
@click.option("--from-json", "from_json", type=click.File("r"),
              help="Read the whole grant as JSON (a file, or - for stdin).")
def create(provider: str, settings: tuple[str, ...], as_json: bool, **fields: Any) -> None:
    """Create a grant. Invalid input is refused before anything is written."""
    from ._model import CreditGrant

    source = fields.pop("from_json")
    if source is not None:
        try:
            text = source.read()
        except UnicodeDecodeError as error:
            raise click.BadParameter(f"{source.name}: not UTF-8 text ({error.reason} at byte "
                                     f"{error.start})", param_hint="--from-json") from None
        grant = CreditGrant.model_validate_json(text)
    else:
        grant = CreditGrant.model_validate(_grant_fields(fields))
    with _open(provider, settings) as opened:
        created = opened.create_grant(grant)
    _show([created], as_json)


def _grant_fields(fields: dict[str, Any]) -> dict[str, Any]:
    if fields["customer"] is None or fields["amount"] is None:
        missing = "--customer" if fields["customer"] is None else "--amount"
        raise click.UsageError(f"{missing} is required (or give --from-json)")
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
@click.option("--customer", help="Only this customer's grants.")
@click.option("--page-size", type=click.IntRange(min=1), help="Grants fetched per request.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many grants.")
def list_(provider: str, settings: tuple[str, ...], as_json: bool, customer: str | None,
          page_size: int | None, limit: int | None) -> None:
    """List grants, page after page (JSON lines with --json)."""
    with _open(provider, settings) as opened:
        _show(_take(opened.list_grants(customer, page_size=page_size), limit), as_json)


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
            _show([getattr(opened, f"{operation}_grant")(grant_id)], as_json)


_single("get", "Show one grant.")
_single("void", "Void a grant: its remaining credits are gone.")
_single("expire", "Expire a grant now.")


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
        from ._secrets import redact

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
@provider_options
@click.option("--customer", "customers", multiple=True, help="Only these customers (repeatable).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="File (default stdout); written whole or not at all.")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Where listing items that cannot be read go, as JSON lines (default "
                   "OUTPUT.rejects.jsonl, or export.rejects.jsonl for stdout).")
@click.option("--include-raw", is_flag=True, help="Keep each grant's vendor payload.")
@click.option("--page-size", type=click.IntRange(min=1))
def export(provider: str, settings: tuple[str, ...], as_json: bool, customers: tuple[str, ...],
           output: str, rejects: str | None, include_raw: bool, page_size: int | None) -> None:
    """Write grants as neutral JSON lines; unreadable vendor items go to a rejects file."""
    from ._transfer import export_grants

    if output != "-":
        _writable_folder(output, "--output")
    unreadable = _Rejects(rejects or (f"{output}.rejects.jsonl" if output != "-"
                                      else "export.rejects.jsonl"))
    try:
        with _open(provider, settings) as opened, _AtomicOutput(output) as out:
            count = export_grants(opened, out, customers=customers or None,
                                  include_raw=include_raw, page_size=page_size,
                                  on_unreadable=lambda entry: unreadable.write(entry.as_json()))
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
def import_(provider: str, settings: tuple[str, ...], as_json: bool, source: Any,
            include_ended: bool, rejects: str | None) -> None:
    """Create grants from neutral JSON lines (as written by export); safe to repeat."""
    from ._transfer import import_grants, reject_line

    name = getattr(source, "name", "-")
    rejected = _Rejects(rejects or (f"{name}.rejects.jsonl" if isinstance(name, str)
                                    and name not in ("-", "<stdin>") else "import.rejects.jsonl"))
    try:
        with _open(provider, settings) as opened:
            report = import_grants(
                opened, source, include_ended=include_ended,
                on_reject=lambda number, line, why: rejected.write(reject_line(number, line, why)))
    finally:
        rejected.close()
    for line, why in report.skipped:
        _say(f"line {line}: skipped {why}")
    for line, error in report.failed:
        _say(f"line {line}: {error}")
    summary = (f"imported {report.created}, skipped {len(report.skipped)}, "
               f"failed {len(report.failed)}")
    if rejected.count:
        summary += f"; failed lines written to {rejected.path}"
    _say(summary)
    if report.failed:
        sys.exit(EXIT_PROVIDER_ERROR)


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
              default="remaining", show_default=True)
@click.option("--priority", "priority_policy", type=click.Choice(["exact", "preserve-order"]),
              default="exact", show_default=True)
@click.option("--lenient", is_flag=True, help="Let apply skip refused grants instead of stopping.")
@click.option("--no-provenance", is_flag=True, help="Do not add migrated_from_* metadata.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where to write the plan (JSON lines).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--usage", "usage_path", type=click.Path(exists=True, dir_okay=False),
              help="Usage (CSV or JSON lines: customer_id, at, amount[, product]) to simulate "
              "both sides with, instead of the synthetic stream.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write an HTML report: each customer's burn-down on both sides.")
def migrate_plan(source: str, target: str, from_settings: tuple[str, ...],
                 to_settings: tuple[str, ...], customers: tuple[str, ...],
                 customer_map: str | None, scope_map: str | None, amount_mode: Any,
                 priority_policy: Any, lenient: bool, no_provenance: bool, output: str,
                 as_json: bool, usage_path: str | None, report_path: str | None) -> None:
    """Plan a migration (a dry run: writes only the plan file)."""
    from ._migration import MigrationPlan, plan_migration, write_plan
    from ._secrets import RedactingWriter

    # Everything given is checked before anything is read from a provider.
    customers_by = _read_map(customer_map, many=False, option="--customer-map")
    prices_by = _read_map(scope_map, many=True, option="--scope-map")
    _writable_folder(output, "--output")
    options: dict[str, Any] = {
        "customers": customers or None, "amount_mode": amount_mode, "customer_map": customers_by,
        "scope_map": prices_by, "priority_policy": priority_policy, "strict": not lenient,
        "provenance": not no_provenance}
    with _open(source, from_settings, "--from-setting") as src, \
            _open(target, to_settings, "--to-setting") as dst:
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
    from rich.console import Console
    from rich.table import Table

    console = Console()
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
    totals = Table("customer", "unit", "grants", "planned", box=None, header_style="bold")
    for customer, units in summary["totals"].items():
        for unit, numbers in units.items():
            totals.add_row(customer, unit, numbers["grants"], numbers["planned"])
    console.print(totals)


@migrate.command("apply")
@_endpoints
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@click.option("--retire", type=click.Choice(["void", "expire"]),
              help="Then void or expire each source grant whose target grants are confirmed.")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--journal", type=click.Path(dir_okay=False),
              help="Journal file (default: PLAN.journal).")
def migrate_apply(plan_path: str, from_settings: tuple[str, ...], to_settings: tuple[str, ...],
                  retire: Any, concurrency: int, journal: str | None) -> None:
    """Create the planned grants; safe to run again after any interruption."""
    import asyncio
    from contextlib import ExitStack

    from ._migration import MigrationPlan, apply_plan

    plan = MigrationPlan.open(plan_path)
    with ExitStack() as stack:
        target = stack.enter_context(_open(plan.header.target, to_settings, "--to-setting"))
        source = stack.enter_context(_open(plan.header.source, from_settings, "--from-setting")) \
            if retire else None
        progress, close = _progress()
        try:
            report = asyncio.run(apply_plan(
                plan, target, journal=journal or f"{plan_path}.journal", source=source,
                retire=retire, concurrency=concurrency, progress=progress))
        finally:
            close()
    _print_failures(report.failed)
    for overlap in report.overlaps:
        click.echo(f"overlap {overlap}", err=True)
    click.echo(json.dumps(report.as_dict()))
    if not report.ok:
        sys.exit(EXIT_PROVIDER_ERROR)


def _print_failures(failed: list[tuple[str, str]], shown: int = 20) -> None:
    """The first failures one per line, then the rest summarized by reason."""
    for key, error in failed[:shown]:
        click.echo(f"failed {key}: {error}", err=True)
    if len(failed) > shown:
        from collections import Counter

        rest = Counter(error for _, error in failed[shown:])
        click.echo(f"... and {len(failed) - shown} more failure(s):", err=True)
        for error, count in rest.most_common(10):
            click.echo(f"  {count} × {error}", err=True)


def _progress() -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A progress bar on a terminal; JSON lines on stderr otherwise."""
    if sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=False)
        task = bar.add_task("creating", total=None)
        bar.start()

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return update, bar.stop
    last = [-1]

    def report(done: int, total: int) -> None:
        step = max(total // 20, 1)
        if done == total or done - last[0] >= step:
            last[0] = done
            click.echo(json.dumps({"progress": done, "total": total}), err=True)

    return report, lambda: None


@migrate.command("verify")
@_endpoints
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.option("--usage", "usage_path", type=click.Path(exists=True, dir_okay=False),
              help="Usage to simulate both sides with, instead of the synthetic stream.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write an HTML report of the source and what the target holds.")
def migrate_verify(plan_path: str, from_settings: tuple[str, ...], to_settings: tuple[str, ...],
                   as_json: bool, usage_path: str | None, report_path: str | None) -> None:
    """Reconcile the target with the plan; exit 1 and show the differences on any mismatch."""
    from ._migration import MigrationPlan, verify_plan

    plan = MigrationPlan.open(plan_path)
    with _open(plan.header.target, to_settings, "--to-setting") as target:
        report = verify_plan(plan, target)
        comparison = _simulate_held(plan, target, usage_path, report_path)
    if as_json:
        extra = {} if comparison is None else {"consumption_differs": comparison.as_json()}
        click.echo(json.dumps({"ok": report.ok, "checked": report.checked,
                               "differences": report.lines(), "totals": report.totals, **extra}))
    else:
        for line in report.lines():
            click.echo(line)
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
    from ._provider import UNSET

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
    from ._money import Money

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

    from ._simulate import as_of, read_usage, simulate, units_of

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
    from ._simulate import read_usage, units_of

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
    from ._simulate import compare_plan, source_side

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
    from ._model import GrantStatus
    from ._plugins import providers
    from ._simulate import compare_plan, source_side

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
