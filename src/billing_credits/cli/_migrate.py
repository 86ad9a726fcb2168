"""``billing-credits migrate``: plan (a dry run written to a file), apply and verify."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from billing_credits._errors import (
    MigrationError,
    UnsupportedOperationError,
)

from ._common import (
    EXIT_PROVIDER_ERROR,
    F,
    Progress,
    _AtomicOutput,
    _console,
    _doing,
    _open,
    _print_failures,
    _say,
    _usage_for,
    _writable_folder,
    _write_html,
    cli,
    quiet_option,
)


@cli.group()
def migrate() -> None:
    """Move grants between providers: plan (dry run), apply, verify."""

def _endpoints(command: F) -> F:
    command = click.option("-T", "--to-setting", "to_settings", multiple=True, metavar="KEY=VALUE",
                           help="A target provider setting (repeatable).")(command)
    command = click.option("-F", "--from-setting", "from_settings", multiple=True,
                           metavar="KEY=VALUE", help="A source provider setting (repeatable).")(command)
    return command

_MAP_LINE_BYTES = 16 * 1024 * 1024
"""The longest line of a customer or scope map (a JSON map is often one line): 16 MiB; the
whole map is at most ``billing_credits._lines.MAX_FILE_BYTES``."""


def _read_map(path: str | None, *, many: bool, option: str) -> dict[str, Any] | None:
    """A JSON object, or CSV rows ``key,value`` (a header row is skipped if it does not map).

    Checked whole: keys and values are non-empty strings (``many``: a value is a list of
    them, or one string in CSV rows); anything else is refused naming the file and the entry.
    """
    if path is None:
        return None
    import csv

    from billing_credits._lines import read_text_bounded

    def bad(problem: str) -> click.BadParameter:
        return click.BadParameter(f"{path}: {problem}", param_hint=option)

    try:
        text = read_text_bounded(path, limit=_MAP_LINE_BYTES)
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
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as error:  # a field past csv's limit (131,072 characters), a stray quote
        raise bad(f"not CSV ({error})") from None
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


@migrate.command("plan")
@_endpoints
@click.option("--from", "source", required=True, help="Source provider.")
@click.option("--to", "target", required=True, help="Target provider.")
@click.option("--customer", "customers", multiple=True, help="Only these customers (repeatable).")
@click.option("--customer-map", type=click.Path(exists=True, dir_okay=False),
              help="CSV (source,target) or JSON object mapping customer ids (lines up to "
                   "16 MiB).")
@click.option("--scope-map", type=click.Path(exists=True, dir_okay=False),
              help="CSV (product,price) or JSON {product: [prices]} mapping products to prices "
                   "(lines up to 16 MiB).")
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
        extra = {} if comparison is None else {"consumption_differs": comparison.as_json(),
                                               "undocumented_ties": comparison.ties("target")}
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
    touches (every grant's own changes are in the plan file). What retiring the source would
    leave spendable is for ``apply --retire`` to say."""
    from rich.table import Table

    from billing_credits._readable import identity_text

    console = _console()
    target = summary["target"] if summary.get("target_identity") is None \
        else identity_text(summary["target_identity"])
    console.print(f"plan {summary['source']} → {target}: "
                  f"{summary['grants_to_create']} grant(s) to create, "
                  f"{summary['refused']} refused, {summary['changes']} change(s)")
    for reason, count in summary["skipped"].items():
        console.print(f"  skipped {count}: {reason}")
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
    if plan.header.strict and refused:  # in the command line's words, before opening anything
        raise MigrationError(
            f"the plan has {refused} refusal(s) and was made without --lenient: fix them "
            "(--customer-map, --scope-map, --priority) and plan again, or plan again with "
            "--lenient to skip them")
    if retire and plan.header.retire_overlaps.get(retire):
        _say(f"note: {plan.header.retire_overlaps[retire]}")
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
    _say_duplicates(report.duplicates)
    summary = {**report.as_dict(), "already_there": report.already_done, "refused": refused,
               "duplicates": report.duplicates}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        retired = f", retired {report.retired}" if retire else ""
        duplicated = (f" ({len(report.duplicates)} held more than once on the target)"
                      if report.duplicates else "")
        click.echo(f"created {report.created}, already there {report.already_done}"
                   f"{duplicated}, refused {refused}{' (skipped)' if refused else ''}, "
                   f"failed {len(report.failed)}{retired} in {report.seconds:.1f} s")
    if not report.ok:
        sys.exit(EXIT_PROVIDER_ERROR)


def _say_duplicates(duplicates: dict[str, list[str]], shown: int = 20) -> None:
    """A warning per planned grant the target already holds more than once (count and ids)."""
    for key, ids in list(duplicates.items())[:shown]:
        _say(f"warning: planned grant {key} is already on the target {len(ids)} times "
             f"({', '.join(ids)}): void the extra ones (billing-credits grants void ID)")
    if len(duplicates) > shown:
        _say(f"warning: {len(duplicates) - shown} more planned grant(s) held more than once "
             "(see --json, or migrate verify)")


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
        extra = {} if comparison is None else {"consumption_differs": comparison.as_json(),
                                               "undocumented_ties": comparison.ties("target")}
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

_TIE_CUSTOMERS = 5
"""How many customers' undocumented ties a plan or verify prints (all in ``--json``)."""


def _print_comparison(comparison: Any) -> None:
    if comparison is None:
        return
    if comparison.ok:
        click.echo(f"consumption: every customer burns the same way on both sides "
                   f"({len(comparison.source.customers)} simulated)")
    else:
        click.echo(f"consumption differs for {len(comparison.differences)} customer(s):")
        for line in comparison.lines():
            click.echo(f"  {line}")
    for side in ("source", "target"):  # issue 18.3: say where an order rests on a guess
        ties = comparison.ties(side)
        if ties:
            click.echo(f"the {side}'s order rests on an undocumented tie for {len(ties)} "
                       "customer(s):")
            # one line per customer (its first tie, and how many more), at most
            # _TIE_CUSTOMERS customers: a large plan must stay readable; --json has them all
            for shown, (customer, notes) in enumerate(ties.items()):
                if shown == _TIE_CUSTOMERS:
                    click.echo(f"  … and {len(ties) - shown} more customer(s); --json lists "
                               "every tie")
                    break
                more = f" (and {len(notes) - 1} more tie(s))" if len(notes) > 1 else ""
                click.echo(f"  {customer}: {notes[0]}{more}")
