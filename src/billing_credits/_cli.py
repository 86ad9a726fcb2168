"""The ``billing-credits`` command line.

Heavy imports (rich, providers) happen inside commands, so ``--help`` stays fast.
"""

from __future__ import annotations

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
        except Exception:  # noqa: BLE001 - best effort while stopping
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

    def update(self, done: int, total: int | None) -> None:
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
        if due and done != self._last:
            self._last, self._last_time = done, now
            line: dict[str, Any] = {"progress": self.label, "done": done}
            if total is not None:
                line["total"] = total
            click.echo(json.dumps(line), err=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif not self.quiet and self.done != self._last and exc[0] is None:
            self._last = self.done - 1
            self.update(self.done, self.total)


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


def _open(provider: str, settings: tuple[str, ...]) -> Any:
    from ._plugins import get_provider

    return get_provider(provider, **_pairs(settings, "--setting"))


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
def cli() -> None:
    """Create, list and move prepaid billing credits across billing vendors.

    Works out of the box on the embedded `local` provider (SQLite; the database is
    $BILLING_CREDITS_DB or a file in your user data directory).
    """


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
        grant = CreditGrant.model_validate_json(source.read())
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


@cli.command("export")
@provider_options
@click.option("--customer", "customers", multiple=True, help="Only these customers (repeatable).")
@click.option("--output", "-o", type=click.File("w"), default="-", help="File (default stdout).")
@click.option("--include-raw", is_flag=True, help="Keep each grant's vendor payload.")
@click.option("--page-size", type=click.IntRange(min=1))
def export(provider: str, settings: tuple[str, ...], as_json: bool, customers: tuple[str, ...],
           output: Any, include_raw: bool, page_size: int | None) -> None:
    """Write grants as neutral JSON lines."""
    from ._transfer import export_grants

    with _open(provider, settings) as opened:
        count = export_grants(opened, output, customers=customers or None,
                              include_raw=include_raw, page_size=page_size)
    click.echo(f"exported {count} grant{'s' if count != 1 else ''}", err=True)


@cli.command("import")
@provider_options
@click.argument("source", type=click.File("r"))
@click.option("--include-ended", is_flag=True, help="Also import voided and expired grants.")
def import_(provider: str, settings: tuple[str, ...], as_json: bool, source: Any,
            include_ended: bool) -> None:
    """Create grants from neutral JSON lines (as written by export); safe to repeat."""
    from ._transfer import import_grants

    with _open(provider, settings) as opened:
        report = import_grants(opened, source, include_ended=include_ended)
    for line, why in report.skipped:
        click.echo(f"line {line}: skipped {why}", err=True)
    for line, error in report.failed:
        click.echo(f"line {line}: {error}", err=True)
    click.echo(f"imported {report.created}, skipped {len(report.skipped)}, "
               f"failed {len(report.failed)}", err=True)
    if report.failed:
        sys.exit(EXIT_PROVIDER_ERROR)


@cli.command("sandbox")
@click.option("--dir", "directory", default="billing-credits-sandbox", show_default=True,
              type=click.Path(file_okay=False),
              help="Where to write sandbox.env and the example files (created if missing).")
@click.option("--only", "only", multiple=True, metavar="NAME",
              help="Start only this sandbox (repeatable; default: every installed one).")
def sandbox(directory: str, only: tuple[str, ...]) -> None:
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
        for box in started:
            click.echo(f"{box.name}: {box.url}  (providers: {', '.join(box.providers)})")
            for item in box.seeded:
                click.echo(f"  {item}")
            lines += box.export_lines()
            for name, text in box.files.items():
                (folder / name).write_text(text)
                click.echo(f"  wrote {folder / name}")
        env_file = folder / "sandbox.env"
        env_file.write_text("\n".join(lines) + "\n")
        click.echo("\nPoint the providers at the sandbox (in another shell):\n")
        for line in lines:
            click.echo(f"  {line}")
        click.echo(f"\nor: . {env_file}\nServing on loopback only; Ctrl-C stops.", nl=True)
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
              default="remaining", show_default=True)
@click.option("--priority", "priority_policy", type=click.Choice(["exact", "preserve-order"]),
              default="exact", show_default=True)
@click.option("--lenient", is_flag=True, help="Let apply skip refused grants instead of stopping.")
@click.option("--no-provenance", is_flag=True, help="Do not add migrated_from_* metadata.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where to write the plan (JSON lines).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def migrate_plan(source: str, target: str, from_settings: tuple[str, ...],
                 to_settings: tuple[str, ...], customers: tuple[str, ...],
                 customer_map: str | None, scope_map: str | None, amount_mode: Any,
                 priority_policy: Any, lenient: bool, no_provenance: bool, output: str,
                 as_json: bool) -> None:
    """Plan a migration (a dry run: writes only the plan file)."""
    from ._migration import plan_migration

    with _open(source, from_settings) as src, _open(target, to_settings) as dst:
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
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"plan {summary['source']} → {summary['target']}: "
                  f"{summary['grants_to_create']} grant(s) to create, "
                  f"{summary['refused']} refused, {summary['changes']} change(s)")
    for reason, count in summary["skipped"].items():
        console.print(f"  skipped {count}: {reason}")
    changes = Table("source grant", "segment", "field", "source", "target", "why",
                    box=None, header_style="bold")
    for item in plan.items:
        for change in item.changes:
            changes.add_row(item.source_id, str(item.segment if item.segment is not None else ""),
                            change.field, change.source, change.target, change.why)
    if changes.row_count:
        console.print(changes)
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
@click.option("--json", "as_json", is_flag=True)
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
