"""What every command of the ``billing-credits`` command line shares: the root group and its
error handling (one line, an exit code, never a traceback), ``--provider``/``--setting``
options, opening a provider, progress, and printing grants as rows, details or JSON.

Heavy imports (rich, providers) happen inside commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from billing_credits._errors import (
    BillingCreditsError,
    ConfigurationError,
    InputTooLargeError,
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

    # Masked before the spaces are collapsed: a secret split over lines is joined first.
    click.echo(" ".join(redact(message).split()), err=True)


def _fail(error: BillingCreditsError) -> NoReturn:
    _say(f"error: {error}")
    invalid = (InvalidGrantError, NotRepresentableError, ConfigurationError,
               UnsupportedOperationError, InputTooLargeError)
    sys.exit(EXIT_INVALID if isinstance(error, invalid) else EXIT_PROVIDER_ERROR)


EXIT_INTERRUPTED = 130

_activity: list[Callable[[], str]] = []


def _doing(describe: Callable[[], str]) -> None:
    """Say what the running command has done so far, for a Ctrl-C."""
    _activity[:] = [describe]


EXIT_TERMINATED = 143  # 128 + SIGTERM


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so it unwinds as Ctrl-C does: partial outputs
    removed, the journal closed, what was done said."""


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise _Terminated


def _interrupted(terminated: bool = False) -> NoReturn:
    done = ""
    if _activity:
        try:
            done = f": {_activity[0]()}"
        except Exception:
            done = ""
    click.echo(f"\n{'terminated' if terminated else 'interrupted'}{done}", err=True)
    sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)


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
            previous = _catch_sigterm()
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
            except (click.Abort, KeyboardInterrupt) as error:
                # click turns a KeyboardInterrupt (SIGTERM's _Terminated too) into Abort.
                _interrupted(terminated=isinstance(error, _Terminated)
                             or isinstance(error.__cause__, _Terminated))
            finally:
                _restore_sigterm(previous)
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


def _catch_sigterm() -> Any:
    """Turn SIGTERM into ``_Terminated`` while a command runs (main thread only); the
    handler it replaces, to restore."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        return None


def _restore_sigterm(previous: Any) -> None:
    import signal

    if previous is not None:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, previous)


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
    from billing_credits._secrets import install_log_redaction

    try:
        opened = get_provider(provider, **pairs)
    except BillingCreditsError:
        raise
    except (ValueError, TypeError, ArithmeticError, LookupError, AttributeError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise ConfigurationError(f"provider {provider!r}: invalid setting ({message})") from None
    install_log_redaction()  # the SDK's loggers exist now: filter its child loggers too
    return opened


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


def _grant_columns() -> list[Any]:
    from ._tables import Column

    # Drop rank: the higher, the sooner a column goes on a narrow terminal; 0 never (the ids,
    # the amount, the balance and the expiry). Only name and adjusted are ever cut (with "…").
    return [
        Column("id"), Column("customer", drop=3), Column("amount", right=True),
        Column("balance", right=True), Column("expires", least=10), Column("status", drop=5),
        Column("priority", drop=6), Column("effective", drop=8, least=10),
        Column("name", whole=False, cap=20, drop=7),
        Column("adjusted", whole=False, cap=20, drop=9),
    ]


def _row(grant: Any) -> list[str]:
    from ._tables import when

    return [
        grant.id or "", grant.customer_id, str(grant.amount),
        f"{grant.balance.amount:f}" if grant.balance else "-",
        when(grant.expires_at), grant.status.value if grant.status else "-",
        str(grant.priority) if grant.priority is not None else "default",
        when(grant.effective_at, never="-"), grant.name or "",
        ", ".join(a.field for a in grant.adjustments) or "-",
    ]


def _console(*, stderr: bool = False) -> Any:
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() else None if stream.isatty() else 250
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


class _Rows:
    """Prints grants as a table while they arrive: the first row at once, then in batches
    (``_tables.Stream``: ids, amounts, balances and expiries whole, other columns dropped to
    fit and named at the end)."""

    def __init__(self, *, wide: bool = False) -> None:
        from ._tables import Stream

        self.table = Stream(_grant_columns(), wide=wide)
        self.count = 0
        self.adjusted = 0
        self.fields: set[str] = set()
        self.batch: list[list[str]] = []

    def add(self, grant: Any) -> None:
        self.batch.append(_row(grant))
        self.count += 1
        self.adjusted += bool(grant.adjustments)
        self.fields.update(a.field for a in grant.adjustments)
        if self.count == 1 or len(self.batch) >= 200:
            self.flush()

    def flush(self) -> None:
        self.table.print(self.batch, header=self.count == len(self.batch))
        self.batch = []

    def finish(self) -> None:
        self.flush()
        click.echo(f"{self.count} grant{'s' if self.count != 1 else ''}")
        hidden = self.table.hidden
        if hidden:
            names = [f"adjusted ({self.adjusted} grant(s) adjusted: {', '.join(sorted(self.fields))}; "
                     "`grants get ID` shows how)"
                     if name == "adjusted" and self.adjusted else name for name in hidden]
            from ._tables import echo_all, wrapped

            echo_all(wrapped(f"hidden to fit {self.table.limit} columns: {', '.join(names)}; "
                             "--wide shows every column, --json every field", indent=""))


def _show(grants: Iterable[Any], as_json: bool, *, wide: bool = False) -> None:
    if as_json:
        for grant in grants:
            click.echo(_grant_json(grant))
        return
    rows = _Rows(wide=wide)
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

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, force=True,
                            format="%(levelname)s %(name)s: %(message)s")
        # On the handler too: it masks records of any logger, SDK children included.
        install_log_redaction(*logging.getLogger().handlers)


def _plain_rows(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  " + "  ".join([*cells, row[-1]]))




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


# -- simulate (issue 12) ---------------------------------------------------------------------


def _write_html(path: str, text: str) -> None:
    from pathlib import Path

    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    click.echo(f"report written to {path}", err=True)


def _usage_for(path: str | None, grants: Any) -> Any:
    from billing_credits.consumption._simulate import read_usage, units_of

    return None if path is None else read_usage(path, units=units_of(grants))


def _writable_folder(path: str, option: str) -> None:
    """Refuse, before any work, an output path whose folder is missing or not writable."""
    import os
    from pathlib import Path

    folder = Path(path).parent
    if not folder.is_dir():
        raise click.BadParameter(f"{path}: folder {str(folder)!r} does not exist", param_hint=option)
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"{path}: folder {str(folder)!r} is not writable", param_hint=option)


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


def main() -> None:
    cli(prog_name="billing-credits")
