"""Issue 9.6: a plan whose 'migrate' item lost its grant (or the grant's key) is refused when
loaded, naming the file, before anything is created (it was an AssertionError from the summary
check, and `migrate apply` printed `internal error`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import cli
from billing_credits.local import LocalProvider
from billing_credits.migrate._plan import MigrationPlan


def _plan(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    source = LocalProvider(tmp_path / "source.db")
    source.create_grant(bc.CreditGrant(
        customer_id="cus_1", amount=bc.Money(amount=Decimal(10), currency="USD"),
        effective_at=datetime(2026, 1, 1, tzinfo=UTC), idempotency_key="k1"))
    path = tmp_path / "plan.jsonl"
    bc.plan_migration(source, LocalProvider(tmp_path / "target.db")).save(path)
    return path, [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("edit", ["grant", "key"])
def test_a_migrate_item_without_its_grant_or_key_is_not_a_valid_plan(
        tmp_path: Path, edit: str) -> None:
    path, lines = _plan(tmp_path)
    item = next(line for line in lines if line.get("action") == "migrate")
    if edit == "grant":
        item["grant"] = None
    else:
        del item["grant"]["idempotency_key"]  # type: ignore[attr-defined]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(bc.MigrationError, match="not a valid plan"):
        MigrationPlan.load(path)
    result = CliRunner().invoke(cli, ["migrate", "apply", str(path), "--journal",
                                       str(tmp_path / "journal.jsonl")])
    assert "internal error" not in result.output
    assert "not a valid plan" in result.output
    assert list(LocalProvider(tmp_path / "target.db").list_grants("cus_1")) == []
