"""Issue 17 (simulate streams per customer), 20.3 (its table fits 80 columns) and 18.3 (it
says, per customer, where the order rests on an undocumented tie).

The CLI runs on ``local`` databases registered under orders shaped like Stripe's (nothing
documented after priority) so that ties happen; grants are created with customers interleaved,
so the listing is not grouped by customer and the spool has to group it.
"""

from __future__ import annotations

import io
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
from billing_credits.consumption._report import SimulationReport
from billing_credits.consumption._simulate import simulate_each
from billing_credits.consumption._spool import Spool
from billing_credits.local import LocalProvider

from .conftest import STRIPE

NOW = datetime.now(UTC).replace(microsecond=0)
LONG_NAME = "Annual prepaid commitment for the analytics workspace"


class StripeOrdered(LocalProvider):
    name = "test-stripe-ordered"
    consumption_order: ClassVar[bc.ConsumptionOrder | None] = STRIPE


@pytest.fixture(autouse=True)
def providers() -> Iterator[None]:
    @bc.hookimpl
    def register_providers(register: bc.ProviderRegister) -> None:
        register(StripeOrdered)

    bc.plugin_manager().register(SimpleNamespace(register_providers=register_providers),
                                 name="simulator-streaming-test")
    yield
    bc.plugin_manager().unregister(name="simulator-streaming-test")


def grant(customer: str, name: str, amount: str, *, priority: int = 1, days: int = 30,
          unit: dict[str, object] | None = None) -> bc.CreditGrant:
    money = bc.Money(amount=Decimal(amount), **(unit or {"currency": "USD"}))  # type: ignore[arg-type]
    return bc.CreditGrant(
        customer_id=customer, name=name, amount=money, priority=Decimal(priority),
        effective_at=NOW - timedelta(days=1), expires_at=NOW + timedelta(days=days),
        idempotency_key=f"{customer}-{name}-{amount}")


GRANTS = [
    # interleaved customers: the listing comes back in this (creation) order
    grant("cus_tied", "Top-up", "50.00", priority=5),
    grant("cus_plain", "Only", "10.00", priority=1),
    grant("cus_tied", "Welcome", "20.00", priority=5, days=60),
    grant("cus_wide", LONG_NAME, "123456789012.50", priority=1),
    grant("cus_plain", "Cloud", "300", unit={"unit": {"id": "ccu", "name": "Cloud credits"}}),
    grant("cus_wide", "Small", "1.00", priority=2, days=5),
    grant("cus_" + "x" * 100, "Short", "5.00"),
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "sim.db"
    with bc.get_provider("test-stripe-ordered", path=str(path)) as provider:
        for item in GRANTS:
            provider.create_grant(item)
    return path


def run(*args: str, columns: int = 80) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": str(columns)}).invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_streamed_cli_equals_the_whole_simulation(db: Path) -> None:
    """The spooled, per-customer run gives every customer exactly what ``simulate`` over the
    whole listing gives (same grants, same synthetic usage start)."""
    code, out, err = run("simulate", "-p", "test-stripe-ordered", "-s", f"path={db}", "--json")
    assert code == 0, err
    streamed = [json.loads(line) for line in out.splitlines()]
    assert [line["customer_id"] for line in streamed] == sorted({g.customer_id for g in GRANTS})
    with bc.get_provider("test-stripe-ordered", path=str(db)) as provider:
        held = list(provider.list_grants())
    assert [g.customer_id for g in held][:3] == ["cus_tied", "cus_plain", "cus_tied"]  # not grouped
    for line in streamed:
        mine = [g for g in held if g.customer_id == line["customer_id"]]
        granted = {g["grant_id"]: Decimal(g["granted"]) for g in line["grants"]}
        assert granted == {g.id: g.amount.amount for g in mine}
        for unit, totals in line["totals"].items():  # synthetic usage spends exactly what is held
            used = Decimal(totals["consumed"]) + Decimal(totals["expired"])
            assert used + Decimal(totals["remaining"]) == Decimal(totals["granted"]), unit


def test_simulate_each_reads_one_customer_at_a_time() -> None:
    """Each customer's result is yielded before the next customer's grants are read."""
    pulled: list[str] = []

    def groups() -> Iterator[tuple[str, list[bc.CreditGrant], None]]:
        for customer in ("a", "b", "c"):
            pulled.append(customer)
            yield customer, [grant(customer, "G", "10.00").model_copy(update={"id": f"g-{customer}"})], None

    seen = []
    for sim in simulate_each(groups(), STRIPE, start=NOW):
        seen.append(sim.customer_id)
        assert pulled == seen  # nothing read ahead
    assert seen == ["a", "b", "c"]


def test_the_spool_groups_an_interleaved_listing_and_cleans_up() -> None:
    with Spool() as spool:
        spool.add_grants(g.model_copy(update={"id": f"g{i}"}) for i, g in enumerate(GRANTS))
        folder = spool._folder
        assert folder.exists()
        groups = list(spool.groups(synthetic=True))
        assert [c for c, _, _ in groups] == sorted({g.customer_id for g in GRANTS})
        for customer, grants, usage in groups:
            assert usage is None
            assert [g.name for g in grants] == [g.name for g in GRANTS if g.customer_id == customer]
            assert all(isinstance(g, bc.CreditGrant) for g in grants)
        assert spool.unit_of("cus_tied") == GRANTS[0].amount
        assert spool.unit_of("cus_plain") is None  # two units: the usage must name one
    assert not folder.exists()


def test_the_report_is_written_customer_by_customer() -> None:
    """Each customer's section is in the output as soon as it is added; the summary at the
    end (the stylesheet shows it first)."""
    out = io.StringIO()
    report = SimulationReport(out, STRIPE, title="t")
    grants = [g.model_copy(update={"id": f"g{i}"}) for i, g in enumerate(GRANTS)]
    groups = [(c, [g for g in grants if g.customer_id == c], None)
              for c in sorted({g.customer_id for g in grants})]
    for sim in simulate_each(groups, STRIPE, start=NOW):
        before = len(out.getvalue())
        report.add(sim)
        assert f'data-customer="{sim.customer_id}"' in out.getvalue()[before:]
    assert "</html>" not in out.getvalue()
    report.close()
    text = out.getvalue()
    assert text.index('class="summary"') > text.rindex('class="customer"')
    assert "section.summary{order:1}" in text
    assert text.endswith("</html>\n")


def test_a_failed_run_leaves_no_report(db: Path, tmp_path: Path) -> None:
    usage = tmp_path / "usage.csv"
    usage.write_text("customer_id,at,amount\ncus_plain,2026-01-01T00:00:00Z,5\n")  # two units
    report = tmp_path / "r.html"
    code, _, err = run("simulate", "-p", "test-stripe-ordered", "-s", f"path={db}",
                       "--usage", str(usage), "--html", str(report))
    assert code == 2, err
    assert not report.exists()
    assert not list(tmp_path.glob(".r.html*"))


@pytest.mark.parametrize("columns", [80, 100])
def test_the_table_fits_the_terminal_except_whole_ids(db: Path, tmp_path: Path,
                                                      columns: int) -> None:
    code, out, err = run("simulate", "-p", "test-stripe-ordered", "-s", f"path={db}",
                         "--html", str(tmp_path / "r.html"), columns=columns)
    assert code == 0, err
    long_id = "cus_" + "x" * 100
    wide = [line for line in out.splitlines() if len(line) > columns]
    assert wide == [f"{long_id} (USD)"]  # a whole id, on its own line
    lines = out.splitlines()
    # the columns are named once, and each grant's figures are in them
    assert lines[1].split() == ["grant", "granted", "used", "lost", "left", "ended", "(UTC)"]
    assert "cus_plain (Cloud credits (ccu))" in lines
    assert any(line.startswith("  Cloud credits (ccu) ") for line in lines)  # in the totals
    assert any(line.split()[:2] == ["Only", "10.00"] for line in lines)
    # a long name goes on a line of its own; an amount too wide for its column, long form
    assert f"  {LONG_NAME}" in lines
    assert "    granted: 123456789012.50" in lines
    # notes and definitions wrapped, not cut
    assert "lost: credit that expired unused" in out
    assert "Usage is synthetic" in out


def test_each_customer_whose_order_rests_on_an_undocumented_tie_is_named(db: Path) -> None:
    code, out, err = run("simulate", "-p", "test-stripe-ordered", "-s", f"path={db}")
    assert code == 0, err
    text = " ".join(out.split())  # unwrapped
    pair = "Top-up and Welcome" if "tie: Top-up and Welcome" in text else "Welcome and Top-up"
    assert (f"note: undocumented tie: {pair} rank equal under stripe's documented rules "
            "(priority)") in text
    assert f"(simulated: {pair.split(' and ', maxsplit=1)[0]} first, by grant id)" in text
    assert text.count("note: undocumented tie") == 1  # only cus_tied: the others never tie
    block = out.split("cus_tied (USD)")[1].split("\ncus_")[0]
    assert "undocumented tie" in block

    code, out, err = run("simulate", "-p", "test-stripe-ordered", "-s", f"path={db}", "--json")
    ties = {line["customer_id"]: line["undocumented_ties"]
            for line in map(json.loads, out.splitlines())}
    assert [c for c, notes in ties.items() if notes] == ["cus_tied"]


def test_migrate_plan_names_each_customer_whose_target_order_rests_on_a_tie(
    tmp_path: Path,
) -> None:
    """Issue 18.3: with a source that documents its tie-break (Metronome Plans: the sooner
    expiry) and a target that does not (Stripe), the plan says per customer where the
    target's order is a guess, even where the simulated orders happen to agree."""
    from .test_cli_simulate import PlansLike, StripeLike

    @bc.hookimpl
    def register_providers(register: bc.ProviderRegister) -> None:
        for cls in (PlansLike, StripeLike):
            register(cls)

    bc.plugin_manager().register(SimpleNamespace(register_providers=register_providers),
                                 name="simulator-streaming-plan")
    try:
        source = tmp_path / "source.db"
        with bc.get_provider("test-plans-like", path=str(source)) as provider:
            # cus_agree: the tie-break by id happens to match the source's sooner expiry
            for customer, name, days in (("cus_agree", "A first", 20), ("cus_agree", "B later", 40),
                                         ("cus_solo", "Only", 20)):
                provider.create_grant(bc.CreditGrant(
                    customer_id=customer, name=name, priority=Decimal(5),
                    amount=bc.Money(amount=Decimal("10.00"), currency="USD"),
                    effective_at=NOW - timedelta(days=1), expires_at=NOW + timedelta(days=days),
                    idempotency_key=f"{customer}-{name}"))
        args = ["migrate", "plan", "--from", "test-plans-like", "--to", "test-stripe-like",
                "-F", f"path={source}", "-T", f"path={tmp_path / 'target.db'}"]
        code, out, err = run(*args, "-o", str(tmp_path / "plan.jsonl"))
        assert code == 0, err
        assert "the target's order rests on an undocumented tie for 1 customer(s):" in out
        tied = [line for line in out.splitlines() if "undocumented tie:" in line]
        assert len(tied) == 1
        assert tied[0].startswith("  cus_agree: undocumented tie: ")
        assert ("A first and B later rank equal under stripe's documented rules (priority)"
                in tied[0]) or ("B later and A first rank equal under stripe's documented "
                                "rules (priority)" in tied[0])
        code, out, err = run(*args, "-o", str(tmp_path / "plan2.jsonl"), "--json")
        assert code == 0, err
        assert list(json.loads(out)["undocumented_ties"]) == ["cus_agree"]
    finally:
        bc.plugin_manager().unregister(name="simulator-streaming-plan")
