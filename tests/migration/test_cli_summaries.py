"""Issue 8.8 from the CLI: local grants made without effective_at (microsecond "now") planned
onto Stripe (1 s resolution) are aligned, not refused, and the output names each reason once."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import cli

STRIPE = ["-T", "api_key=sk_test_cli_summary", "-T", "base_url=http://127.0.0.1:9"]


def test_plan_onto_a_coarser_clock_aligns_and_summarizes(tmp_path: Path) -> None:
    source = tmp_path / "s.db"
    with bc.get_provider("local", path=str(source)) as local:
        for n in range(400):
            local.create_grant(bc.CreditGrant(
                customer_id=f"cus_{n % 4}", amount=bc.Money(amount=Decimal(n + 1), currency="USD"),
                priority=Decimal(n % 100), idempotency_key=f"app-{n}"))
    plan = tmp_path / "plan.jsonl"
    runner = CliRunner()
    command = ["migrate", "plan", "--from", "local", "--to", "stripe", "-F", f"path={source}",
               *STRIPE, "-o", str(plan)]
    result = runner.invoke(cli, [*command, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["grants_to_create"], summary["refused"]) == (400, 0)
    assert summary["target_identity"].startswith("stripe:http://127.0.0.1:9:")
    assert summary["change_reasons"] == {
        "effective_at: stripe holds times in steps of 1 s: moved later (the safe direction)": 400,
        "scope: stripe: " + next(c.why.removeprefix("stripe: ")
                                 for i in bc.MigrationPlan.load(plan).items
                                 for c in i.changes if c.field == "scope"): 400,
    }

    result = runner.invoke(cli, command)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # the plan's own lines do not grow with its 400 grants; the consumption comparison after
    # them speaks per customer (4 here): at most two headers and two lines per customer
    cut = next(i for i, line in enumerate(lines) if line.startswith("consumption"))
    assert cut < 15, result.stdout
    assert len(lines) - cut <= 2 + 2 * 4, result.stdout
    assert sum("moved later" in line for line in lines) == 1
    assert any(line.split()[:1] == ["400"] for line in lines if "moved later" in line)
