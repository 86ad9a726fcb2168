"""``billing-credits providers`` and ``setup``: what is installed, and preparing an account."""

from __future__ import annotations

import json

import click

from ._common import _open, _plain_rows, cli, provider_options


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
