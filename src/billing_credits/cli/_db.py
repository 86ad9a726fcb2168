"""``billing-credits db upgrade``: bring the ``local`` ledger's database to this release's
schema (SQLite file or PostgreSQL), or say what that would do."""

from __future__ import annotations

import json

import click

from billing_credits._errors import ConfigurationError

from ._common import _pairs, cli


@cli.group()
def db() -> None:
    """The local ledger's database (SQLite or PostgreSQL): its schema and upgrades."""


@db.command("upgrade")
@click.option("--dry-run", is_flag=True, help="Say what the upgrade would do; change nothing.")
@click.option("-s", "--setting", "settings", multiple=True, metavar="KEY=VALUE",
              help="path=FILE or url=postgresql://... (default: $BILLING_CREDITS_DB, else "
                   "the per-user database).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the steps.")
def upgrade(dry_run: bool, settings: tuple[str, ...], as_json: bool) -> None:
    """Upgrade the local ledger's database in place, in one transaction (all or nothing).

    Opening the database with this release does the same; run this to do it at a time of
    your choosing, or with --dry-run to see first. A database written by a newer release is
    refused.
    """
    from billing_credits.plugins._registry import providers

    pairs = _pairs(settings, "--setting")
    unknown = sorted(set(pairs) - {"path", "url"})
    if unknown:
        raise ConfigurationError(f"db upgrade: no setting {', '.join(unknown)}; give path= or url=")
    local = providers()["local"]
    steps: list[str] = local.upgrade_database(dry_run=dry_run, **pairs)  # type: ignore[attr-defined]
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "steps": steps}))
        return
    for line in steps:
        click.echo(line)
