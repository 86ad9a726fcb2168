"""``billing-credits export`` and ``import``: grants as neutral JSON lines."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ._common import (
    EXIT_PROVIDER_ERROR,
    Progress,
    _AtomicOutput,
    _doing,
    _open,
    _print_failures,
    _provider_only,
    _say,
    _writable_folder,
    cli,
    provider_options,
    quiet_option,
)


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

def _rejects_beside(name: object) -> str:
    """Where an import's rejects go by default: beside the input when it is a regular file in a
    writable folder, else in the working folder (a device, a pipe, a read-only folder: never
    ``/dev``), as an absolute path so the summary says exactly where."""
    import os
    import stat
    from pathlib import Path

    if not isinstance(name, str) or name in ("-", "<stdin>"):
        return str(Path.cwd() / "import.rejects.jsonl")
    path = Path(name)
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError:
        regular = False
    if regular and os.access(path.parent, os.W_OK):
        return str(path.absolute().with_name(f"{path.name}.rejects.jsonl"))
    return str(Path.cwd() / f"{path.name}.rejects.jsonl")


@cli.command("import")
@provider_options
@click.argument("source", type=click.File("rb"))
@click.option("--include-ended", is_flag=True,
              help="Also import ended grants, kept ended (refused when they cannot be).")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Where lines that were not imported go, with the problem, as JSON lines "
                   "(default SOURCE.rejects.jsonl beside a regular SOURCE in a writable "
                   "folder, else NAME.rejects.jsonl in the working folder; "
                   "import.rejects.jsonl for stdin).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Grants per transaction, on providers that take batches (local).")
@quiet_option
def import_(provider: str, settings: tuple[str, ...], as_json: bool, source: Any,
            include_ended: bool, rejects: str | None, batch_size: int, quiet: bool) -> None:
    """Create grants from neutral JSON lines (as written by export); safe to repeat."""
    from billing_credits.migrate._transfer import import_grants, reject_line

    rejected = _Rejects(rejects or _rejects_beside(getattr(source, "name", "-")))
    try:
        with _open(provider, settings) as opened, Progress("importing", quiet=quiet) as bar:
            _doing(lambda: f"read {bar.done} line(s); every batch written is complete: "
                           "run the import again to finish (nothing is created twice)"
                           + (f"; {rejected.count} failed line(s) written to {rejected.path}"
                              if rejected.count else ""))
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
