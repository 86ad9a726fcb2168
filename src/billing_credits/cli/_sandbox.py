"""``billing-credits sandbox``: serve the installed vendor fakes on loopback with a demo account."""

from __future__ import annotations

import json
import sys

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
