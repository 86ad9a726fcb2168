"""Issue 18.11: quiet duplicates and a SIGTERM during export.

``apply`` on a target already holding two grants for one planned grant (by key or by
provenance) says so, with the count and the ids, not only ``verify``; a ``SIGTERM`` during
``export -o`` removes the ``.partial`` file as Ctrl-C does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import cli

NOW = datetime.now(UTC).replace(microsecond=0)


def _welcome(customer: str) -> bc.CreditGrant:
    return bc.CreditGrant(customer_id=customer, amount=bc.Money(amount=Decimal(50), currency="USD"),
                          effective_at=NOW - timedelta(days=1), idempotency_key="welcome")


def _doubled(tmp_path: Path) -> tuple[bc.MigrationPlan, bc.Provider, str]:
    """A plan already applied, then a second target grant from the same source grant."""
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    source.create_grant(_welcome("cus_1"))
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    plan = bc.plan_migration(source, target)
    plan.save(tmp_path / "plan.jsonl")
    asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j"))
    [item] = plan.to_create
    assert item.grant is not None
    extra = target.create_grant(item.grant.as_new(idempotency_key="another-key"))
    source.close()
    return plan, target, extra.id or ""


def test_apply_reports_grants_already_held_twice(tmp_path: Path) -> None:
    plan, target, extra = _doubled(tmp_path)
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j2"))
    [item] = plan.to_create
    assert report.created == 0
    assert report.already_done == 1
    assert list(report.duplicates) == [item.key]
    ids = report.duplicates[item.key or ""]
    assert len(ids) == 2
    assert extra in ids
    assert report.as_dict()["duplicated"] == 1
    target.close()


def test_a_voided_extra_is_not_a_duplicate(tmp_path: Path) -> None:
    plan, target, extra = _doubled(tmp_path)
    target.void_grant(extra)
    report = asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j2"))
    assert report.duplicates == {}
    target.close()


def test_the_cli_apply_warns_with_count_and_ids(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, target, extra = _doubled(tmp_path)
    target.close()
    monkeypatch.setenv("BILLING_CREDITS_DB", str(tmp_path / "t.db"))
    result = CliRunner().invoke(cli, ["migrate", "apply", str(tmp_path / "plan.jsonl"),
                                      "-F", f"path={tmp_path / 's.db'}",
                                      "-T", f"path={tmp_path / 't.db'}"])
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "2 times" in warnings[0]
    assert extra in warnings[0]
    assert "held more than once" in result.stdout
    as_json = CliRunner().invoke(cli, ["migrate", "apply", str(tmp_path / "plan.jsonl"),
                                       "-F", f"path={tmp_path / 's.db'}",
                                       "-T", f"path={tmp_path / 't.db'}", "--json"])
    summary = json.loads(as_json.stdout)
    assert summary["duplicated"] == 1
    assert extra in next(iter(summary["duplicates"].values()))


# -- SIGTERM during export -o ------------------------------------------------------------------

def test_sigterm_during_export_removes_the_partial_file(tmp_path: Path) -> None:
    """An export of a few thousand grants one per page is sent SIGTERM once its .partial file
    exists: it ends as on Ctrl-C (exit 143, "terminated", the .partial file removed)."""
    database = tmp_path / "big.db"
    env = {**os.environ, "BILLING_CREDITS_DB": str(database)}
    local = bc.get_provider("local", path=str(database))
    lines = [json.dumps({"customer_id": f"cus_{i % 50}", "idempotency_key": f"k{i}",
                         "amount": {"amount": "5", "currency": "USD"}}) for i in range(5_000)]
    from billing_credits.migrate._transfer import import_grants

    import_grants(local, lines)
    local.close()
    out = tmp_path / "out.jsonl"
    partials: list[Path] = []
    for _ in range(3):  # the export may finish before the signal on a fast machine: retry
        child = subprocess.Popen([sys.executable, "-m", "billing_credits", "export", "-o",
                                  str(out), "-q", "--page-size", "1"],
                                 cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            partials = list(tmp_path.glob("*.partial"))
            if partials:
                break
            time.sleep(0.01)
        if child.poll() is None and partials:
            child.send_signal(signal.SIGTERM)
            _, err = child.communicate(timeout=60)
            if child.returncode != 0:  # else it finished just before the signal: again
                break
        child.communicate(timeout=60)
        out.unlink(missing_ok=True)
    else:
        pytest.skip("the export finished before it could be interrupted")
    assert partials, "the export never wrote its .partial file"
    assert child.returncode == 143, err
    assert not list(tmp_path.glob("*.partial")), err
    assert not out.exists()
    assert "Traceback" not in err
    assert "terminated: exported" in err, err
