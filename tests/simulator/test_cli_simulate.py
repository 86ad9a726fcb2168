"""The CLI: ``simulate`` and ``migrate plan|verify --usage --report`` (issue 12).

Two ``local`` providers registered under other names carry orders shaped like Metronome's
(ties on the sooner expiry) and Stripe's (nothing documented after priority).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import cli
from billing_credits.local import LocalProvider

from .conftest import METRONOME_PLANS, STRIPE

NOW = datetime.now(UTC).replace(microsecond=0)


class PlansLike(LocalProvider):
    """A local database ordered like Metronome Plans."""

    name = "test-plans-like"
    consumption_order: ClassVar[bc.ConsumptionOrder | None] = METRONOME_PLANS


class StripeLike(LocalProvider):
    """A local database ordered like Stripe."""

    name = "test-stripe-like"
    consumption_order: ClassVar[bc.ConsumptionOrder | None] = STRIPE


class Unordered(LocalProvider):
    """A local database declaring no consumption order."""

    name = "test-unordered"
    consumption_order: ClassVar[bc.ConsumptionOrder | None] = None


@pytest.fixture(autouse=True)
def providers() -> Iterator[None]:
    @bc.hookimpl
    def register_providers(register: bc.ProviderRegister) -> None:
        for cls in (PlansLike, StripeLike, Unordered):
            register(cls)

    bc.plugin_manager().register(SimpleNamespace(register_providers=register_providers),
                                 name="simulator-cli-test")
    yield
    bc.plugin_manager().unregister(name="simulator-cli-test")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.db"
    with bc.get_provider("test-plans-like", path=str(path)) as provider:
        for customer, name, amount, priority, days in (
            ("cus_carol", "Top-up", "50.00", 5, 30), ("cus_carol", "Welcome", "20.00", 5, 60),
            ("cus_alice", "Only", "10.00", 1, 20),
        ):
            provider.create_grant(bc.CreditGrant(
                customer_id=customer, name=name, amount=bc.Money(amount=Decimal(amount), currency="USD"),
                priority=Decimal(priority), effective_at=NOW - timedelta(days=1),
                expires_at=NOW + timedelta(days=days), idempotency_key=f"{customer}-{name}"))
    return path


def plan_args(source: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["migrate", "plan", "--from", "test-plans-like", "--to", "test-stripe-like",
            "-F", f"path={source}", "-T", f"path={tmp_path / 'target.db'}",
            "-o", str(tmp_path / "plan.jsonl"), *extra]


def test_migrate_plan_lists_the_customer_and_rule_and_writes_the_report(
    source: Path, tmp_path: Path,
) -> None:
    code, out, err = run(*plan_args(source, tmp_path, "--report", str(tmp_path / "r.html")))
    assert code == 0, err
    assert "consumption differs for 1 customer(s):" in out
    assert "cus_carol: burn order" in out
    assert ("metronome-plans breaks the tie between Top-up and Welcome on expires_at (lowest "
            "first); stripe on nothing documented") in out
    report = (tmp_path / "r.html").read_text()
    assert 'data-customer="cus_carol" data-differs="true"' in report
    assert 'data-customer="cus_alice" data-differs="false"' in report

    code, out, err = run(*plan_args(source, tmp_path, "--json"))
    assert code == 0, err
    summary = json.loads(out)
    assert [d["customer_id"] for d in summary["consumption_differs"]] == ["cus_carol"]


def test_preserve_order_then_apply_and_verify_burn_alike(source: Path, tmp_path: Path) -> None:
    code, out, err = run(*plan_args(source, tmp_path, "--priority", "preserve-order"))
    assert code == 0, err
    assert "consumption: every customer burns the same way on both sides" in out
    target = f"path={tmp_path / 'target.db'}"
    code, out, err = run("migrate", "apply", str(tmp_path / "plan.jsonl"), "-T", target)
    assert code == 0, err
    code, out, err = run("migrate", "verify", str(tmp_path / "plan.jsonl"), "-T", target,
                         "--json", "--report", str(tmp_path / "verify.html"))
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"]
    assert result["consumption_differs"] == []
    assert "<svg" in (tmp_path / "verify.html").read_text()


def test_plan_with_a_usage_file(source: Path, tmp_path: Path) -> None:
    usage = tmp_path / "usage.csv"
    usage.write_text("customer_id,at,amount\n"
                     f"cus_carol,{(NOW + timedelta(days=1)).isoformat()},5\n"
                     f"cus_alice,{(NOW + timedelta(days=2)).isoformat()},1.50\n")
    code, out, err = run(*plan_args(source, tmp_path, "--usage", str(usage), "--json"))
    assert code == 0, err
    differs = json.loads(out)["consumption_differs"]
    assert [d["customer_id"] for d in differs] == ["cus_carol"]
    assert differs[0]["source_order"] == [differs[0]["source_order"][0]]  # one draw, one grant

    usage.write_text("customer_id,at,amount\ncus_carol,2026-01-01T00:00:00Z,-5\n")
    (tmp_path / "plan.jsonl").unlink()
    code, out, err = run(*plan_args(source, tmp_path, "--usage", str(usage)))
    assert code == 2
    assert "usage.csv:2.amount" in err
    assert not (tmp_path / "plan.jsonl").exists()


def test_simulate_prints_json_writes_html_and_reads_usage(source: Path, tmp_path: Path) -> None:
    html = tmp_path / "sim.html"
    code, out, err = run("simulate", "-p", "test-plans-like", "-s", f"path={source}", "--json",
                         "--html", str(html))
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["customer_id"] for line in lines] == ["cus_alice", "cus_carol"]
    carol = lines[1]
    names = {g["grant_id"]: g["name"] for g in carol["grants"]}
    assert [names[g] for g in carol["burn_order"]] == ["Top-up", "Welcome"]
    assert sum(Decimal(g["granted"]) for g in carol["grants"]) == Decimal("70.00")
    assert html.read_text().count('class="burndown"') == 2

    usage = tmp_path / "usage.jsonl"
    usage.write_text(json.dumps({"customer_id": "cus_carol", "at": NOW.isoformat(),
                                 "amount": "0.01"}) + "\n")
    code, out, err = run("simulate", "-p", "test-plans-like", "-s", f"path={source}",
                         "--customer", "cus_carol", "--usage", str(usage))
    assert code == 0, err
    assert "Top-up" in out
    assert "0.01" in out


def test_simulate_needs_a_declared_order(tmp_path: Path) -> None:
    code, _, err = run("simulate", "-p", "test-unordered", "-s", f"path={tmp_path / 'x.db'}")
    assert code == 2
    assert "declares no consumption order" in err
