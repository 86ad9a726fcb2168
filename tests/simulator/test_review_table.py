"""Review of issue 20.3 (``simulate`` tables at 80 columns): long grant and unit NAMES (not
ids) wrap, the totals row stays in its columns, vendor text cannot drive the terminal, and a
narrow terminal gets the long form rather than rows wider than it."""

from __future__ import annotations

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

from .conftest import STRIPE

NOW = datetime.now(UTC).replace(microsecond=0)
LONG_UNIT = "A very long unit name " * 5
LONG_GRANT = "Annual prepaid commitment " * 5


class Probe(LocalProvider):
    name = "test-review-table"
    consumption_order: ClassVar[bc.ConsumptionOrder | None] = STRIPE


@pytest.fixture(autouse=True)
def providers() -> Iterator[None]:
    @bc.hookimpl
    def register_providers(register: bc.ProviderRegister) -> None:
        register(Probe)

    bc.plugin_manager().register(SimpleNamespace(register_providers=register_providers),
                                 name="review-table")
    yield
    bc.plugin_manager().unregister(name="review-table")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "t.db"
    with bc.get_provider("test-review-table", path=str(path)) as provider:
        for customer, name, amount, unit in (
                ("cus_a", LONG_GRANT, "10.00", {"currency": "USD"}),
                ("cus_b", "evil\x1b]0;owned\x07\x1b[31mRED\nsecond line", "5.00",
                 {"currency": "USD"}),
                ("cus_c", "x", "3", {"unit": {"id": "u", "name": LONG_UNIT}})):
            provider.create_grant(bc.CreditGrant(
                customer_id=customer, name=name, priority=Decimal(1),
                amount=bc.Money(amount=Decimal(amount), **unit),  # type: ignore[arg-type]
                effective_at=NOW - timedelta(days=1), expires_at=NOW + timedelta(days=30),
                idempotency_key=f"{customer}-{amount}"))
    return path


def run(db: Path, columns: int) -> list[str]:
    result = CliRunner(env={"COLUMNS": str(columns)}).invoke(
        cli, ["simulate", "-p", "test-review-table", "-s", f"path={db}"], color=True)
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("columns", [80, 100, 40])
def test_no_line_is_wider_than_the_terminal(db: Path, columns: int) -> None:
    lines = run(db, columns)
    assert [line for line in lines if len(line) > columns] == []
    text = " ".join(" ".join(lines).split())
    assert " ".join(LONG_GRANT.split()) in text  # wrapped, not cut
    assert " ".join(LONG_UNIT.split()) in text


def test_the_totals_row_keeps_its_figures_in_their_columns(db: Path) -> None:
    lines = run(db, 80)
    at = lines[1].index("granted") + len("granted")  # where the granted column ends
    totals = lines[next(i for i, x in enumerate(lines) if x.startswith("total")):]
    rows = [line for line in totals if line.split() == ["3", "3", "0", "0"]]
    assert len(rows) == 1, totals  # the long unit name on a line of its own
    assert rows[0].index("3") + 1 == at


def test_vendor_names_cannot_send_control_characters_to_the_terminal(db: Path) -> None:
    out = "\n".join(run(db, 80))
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "second line" in out
    assert not any(line.startswith("second line") for line in out.splitlines())


def test_a_tie_between_two_grants_of_the_same_name_says_which_is_which() -> None:
    from billing_credits.consumption._report import tie_notes

    start = datetime(2026, 1, 1, tzinfo=UTC)
    grants = [bc.CreditGrant(
        id=f"g{i}", customer_id="c", name="Top-up", priority=Decimal(1),
        amount=bc.Money(amount=Decimal("10.00"), currency="USD"), effective_at=start,
        expires_at=start + timedelta(days=10)) for i in range(2)]
    sim = bc.simulate(grants, None, STRIPE, start=start).customers["c"]
    (note,) = tie_notes(sim, STRIPE)
    assert "Top-up (g0) and Top-up (g1)" in note
    assert "simulated: Top-up (g0) first" in note


def test_synthetic_usage_says_not_covered_is_no_shortfall(tmp_path: Path) -> None:
    """A grant expiring with credit left under the synthetic stream shows the same amount as
    lost and as not covered: both the report and the table must say it is not a shortfall."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    grants = [bc.CreditGrant(
        id=f"g{i}", customer_id="c", name=name, priority=Decimal(5),
        amount=bc.Money(amount=Decimal(amount), currency="USD"), effective_at=start,
        expires_at=start + timedelta(days=days))
        for i, (name, amount, days) in enumerate((("Top-up", "50.00", 30),
                                                  ("Welcome", "20.00", 60)))]
    simulation = bc.simulate(grants, None, STRIPE, start=start)
    assert simulation.customers["c"].unit_totals["USD"]["uncovered"] > 0
    assert "not a shortfall" in simulation.html()
    given = bc.simulate(grants, [bc.Usage(customer_id="c", at=start + timedelta(days=1),
                                          amount=bc.Money(amount=Decimal("500"), currency="USD"),
                                          reference="u")], STRIPE)
    assert "not a shortfall" not in given.html()  # real usage: a real shortfall


def test_the_spool_file_is_removed_when_the_run_is_interrupted() -> None:
    from billing_credits.consumption._spool import Spool

    folder = None
    with pytest.raises(KeyboardInterrupt), Spool() as spool:  # noqa: PT012
        folder = spool._folder
        spool.add_grants([])
        raise KeyboardInterrupt
    assert folder is not None
    assert not folder.exists()
