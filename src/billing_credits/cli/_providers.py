"""``billing-credits providers`` and ``setup``: what is installed, and preparing an account."""

from __future__ import annotations

import json
from typing import Any

import click

from ._common import _open, cli, provider_options


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
    from ._tables import ELLIPSIS, width

    limit = width()
    if name is None:  # one line per provider; the details under `providers NAME`
        pad = max(len(info.name) for info in found) if found else 0
        for info in found:
            line = f"{info.name.ljust(pad)}  {info.description}"
            if len(line) > limit:
                line = line[: max(limit - 1, pad + 3)] + ELLIPSIS
            click.echo(line)
        click.echo("\n`billing-credits providers NAME` shows a provider's settings (each with its "
                   "environment variable) and capabilities; --json every provider's."
                   if limit >= 100 else
                   "\n`billing-credits providers NAME`: a provider's settings and capabilities")
        return
    for info in found:
        _provider_details(info, limit)


def _provider_details(info: Any, limit: int) -> None:
    """Name, description and module, the capabilities, then the settings; long values (a
    list of currencies) wrap under their own column, never past ``limit``."""
    from ._tables import echo_all, wrapped

    echo_all(wrapped(f"{info.name}: {info.description} ({info.module})", indent="",
                     limit=limit))
    _aligned([tuple(row) for row in info.capabilities.describe()], limit)
    if info.settings:
        click.echo()
        _aligned([("setting", "environment variable", "meaning")]
                 + [(s.name, s.env or "-", s.help + (" (secret)" if s.secret else ""))
                    for s in info.settings], limit)


def _aligned(rows: list[tuple[str, ...]], limit: int) -> None:
    """Rows in aligned columns; the last column wraps at ``limit`` under itself (or, when the
    columns before it leave it under 24 characters, on its own lines below)."""
    import textwrap

    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    start = 2 + sum(w + 2 for w in widths)
    for row in rows:
        head = "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        if limit - start >= 24:
            lines = textwrap.wrap(row[-1], width=limit - start, break_long_words=False,
                                  break_on_hyphens=False) or [""]
            click.echo((head + "  " + lines[0]).rstrip())
            for line in lines[1:]:  # a word too long for the column (an id): less indented
                click.echo((" " * start if start + len(line) <= limit else "      ") + line)
        else:
            click.echo(head.rstrip())
            for line in textwrap.wrap(row[-1], width=limit - 6, break_long_words=False,
                                      break_on_hyphens=False):
                click.echo("      " + line)


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
