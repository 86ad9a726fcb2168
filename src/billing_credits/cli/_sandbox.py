"""``billing-credits sandbox``: serve the installed vendor fakes on loopback with a demo account."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click

from billing_credits._errors import (
    ConfigurationError,
)

from ._common import cli


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
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        stack.enter_context(_stops_on_signals(stop))
        started = [stack.enter_context(start()) for name, start in installed.items()
                   if not only or name in only]
        _mask_secret_settings(started)
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


@contextlib.contextmanager
def _stops_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP set ``stop``, even when the sandbox was started with
    them ignored (a script's background job inherits SIGINT ignored, and Python then never
    raises KeyboardInterrupt): the servers stop and the command exits. The handlers in place
    before are restored after."""
    import signal

    wanted = [signal.SIGINT, signal.SIGTERM]
    if hasattr(signal, "SIGHUP"):  # not on Windows
        wanted.append(signal.SIGHUP)
    before: dict[signal.Signals, Any] = {}
    try:
        for number in wanted:
            before[number] = signal.signal(number, lambda *_: stop.set())
    except ValueError:  # not the main thread: signals are not ours to handle
        pass
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def _mask_secret_settings(started: list[Any]) -> None:
    """Register as secrets the values of every environment variable a sandbox sets that is a
    secret setting's variable (any installed provider's, plugins included): they print masked."""
    from billing_credits._secrets import register_secret
    from billing_credits.plugins._registry import providers

    secret_envs = {setting.env for provider in providers().values()
                   for setting in getattr(provider, "settings", ()) if setting.secret and setting.env}
    for box in started:
        for name, value in box.environment.items():
            if name in secret_envs:
                register_secret(value)
