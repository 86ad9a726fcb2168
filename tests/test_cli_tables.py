"""Tables at 80 columns (issue 20.3): ids, amounts, balances and expiries whole, hidden columns
named, streamed rows in line with their header, long explanations on their own lines, a
running balance in the ledger, ``providers`` one line per provider."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import _common as _cli
from billing_credits.cli import _ledger as _ledger_cli
from billing_credits.cli import cli

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WIDTH = 80


@pytest.fixture(autouse=True)
def columns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    monkeypatch.setenv("BILLING_CREDITS_DB", str(tmp_path / "tables.db"))


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def assert_fits(out: str, ids: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """No line wider than WIDTH, except a line holding nothing but one whole id."""
    for line in out.splitlines():
        if len(line) > WIDTH:
            assert line.strip() in ids or UUID.fullmatch(line.strip()), line


def metronome_grant(number: int, amount: str = "100.00", **changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "id": f"5f0c9c2e-8f5a-4b1e-9d3a-{number:012d}", "provider": "metronome",
        "customer_id": "13117714-3f05-48e5-a6e9-a66093f13b4d", "status": "active",
        "amount": {"amount": amount, "currency": "USD"},
        "balance": {"amount": amount, "currency": "USD"},
        "name": "Quarterly commitment top-up for the enterprise plan", "priority": "0.75",
        "effective_at": "2026-01-01T00:00:00Z", "expires_at": "2027-01-01T00:00:00Z",
        "adjustments": [{"field": "effective_at", "requested": "2026-01-01T00:00:30Z",
                         "stored": "2026-01-01T00:00:00Z", "reason": "Metronome: hours"}],
    }
    data.update(changes)
    return bc.CreditGrant.model_validate(data)


def test_grants_list_keeps_ids_amount_balance_expiry_and_names_what_it_hid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    grants = [metronome_grant(1), metronome_grant(2, "2500.50")]
    _cli._show(grants, as_json=False)
    out = capsys.readouterr().out
    lines = out.splitlines()
    for grant in grants:
        row = next(line for line in lines if grant.id is not None and grant.id in line)
        assert str(grant.amount) in row
        assert f"{grant.balance.amount:f}" in row if grant.balance else False
        assert "2027-01-01" in row
    header = lines[0].split()
    assert header[:4] == ["id", "amount", "balance", "expires"]
    note = " ".join(out.split("hidden to fit 80 columns:", 1)[1].split())
    for hidden in ("customer", "status", "priority", "effective", "name", "adjusted"):
        assert hidden in note
        assert hidden not in header
    assert "--wide shows every column" in note
    assert "--json every field" in note
    assert "2 grant(s) adjusted: effective_at" in note
    assert_fits(out)  # Metronome rows (uuid ids) fit 80 columns


def test_grants_list_wide_shows_every_column_and_nothing_hidden(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _cli._show([metronome_grant(1)], as_json=False, wide=True)
    out = capsys.readouterr().out
    assert out.split()[:10] == ["id", "customer", "amount", "balance", "expires", "status",
                                "priority", "effective", "name", "adjusted"]
    assert "Quarterly commitment top-up for the enterprise plan" in out
    assert "hidden" not in out


def test_a_wide_terminal_drops_nothing(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    _cli._show([metronome_grant(1)], as_json=False)
    out = capsys.readouterr().out
    assert "hidden" not in out
    assert "Quarterly commitmen…" in out  # the name is cut only to its cap, with "…"


def column_ends(header: str) -> dict[str, int]:
    return {match.group(): match.end() for match in re.finditer(r"\S+", header)}


def test_streamed_rows_stay_in_line_with_their_header_when_a_later_row_is_wider(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def arriving() -> Iterator[bc.CreditGrant]:
        yield metronome_grant(1, "5.00")  # printed at once, alone
        for number in range(2, 6):
            yield metronome_grant(number, "1234567890.123456789")  # much wider amounts

    _cli._show(arriving(), as_json=False)
    lines = capsys.readouterr().out.splitlines()
    header = None
    checked = 0
    for line in lines:
        if line.startswith("id "):
            header = column_ends(line)
            continue
        if not UUID.match(line):
            continue
        assert header is not None
        # amount and balance are right-aligned: each ends where its header ends.
        amount = re.search(r"\d+\.\d+ USD", line)
        assert amount is not None
        assert amount.end() == header["amount"], (line, header)
        balance = re.search(r"(?<= )\d+\.\d+(?= )", line[amount.end():])
        assert balance is not None
        assert amount.end() + balance.end() == header["balance"], (line, header)
        checked += 1
    assert checked == 5


def test_balance_puts_a_long_source_on_its_own_wrapped_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = ("Metronome /v1/contracts/customerBalances/list: balance of each commit and credit "
              "in the contract's ledger, summed per credit type; pending invoices counted "
              "from the draft invoices' credit lines (their total less what was applied) " * 2)
    parts = tuple(bc.BalancePart(grant_id=f"5f0c9c2e-8f5a-4b1e-9d3a-{n:012d}",
                                 usable=bc.Money("1234.50", "USD"),
                                 expires_at=datetime(2027, 1, 1, 12, 30, tzinfo=UTC),
                                 priority=Decimal("0.75")) for n in range(3))
    balance = bc.Balance(customer_id="13117714-3f05-48e5-a6e9-a66093f13b4d",
                         usable=bc.Money("3703.50", "USD"), pending=bc.Money("0", "USD"),
                         parts=parts, as_of=datetime(2026, 6, 1, tzinfo=UTC), source=source)
    _ledger_cli._print_balance(balance.customer_id, balance)
    out = capsys.readouterr().out
    assert_fits(out)
    lines = out.splitlines()
    assert lines[0].startswith("13117714-3f05-48e5-a6e9-a66093f13b4d")
    assert "usable 3703.50 USD" in out
    assert "source" not in lines[0]  # the explanation is on its own lines
    source_lines = [line for line in lines if line.startswith("  source:")
                    or (line.startswith("    ") and not UUID.search(line))]
    assert len(source_lines) > 2
    assert " ".join(" ".join(source_lines).split()) == f"source: {' '.join(source.split())}"
    for part in parts:
        assert any(part.grant_id in line and "1234.50" in line for line in lines)


def test_balance_ledger_and_providers_fit_80_columns_and_the_ledger_runs_a_balance() -> None:
    ids = []
    for amount, priority in (("10.00", "0"), ("5.00", "1")):
        out = run("grants", "create", "--customer", "cus_wide", "--amount", amount, "--currency",
                  "USD", "--priority", priority, "--effective-at", "2026-01-01T00:00:00Z",
                  "--name", "A rather long name for a grant, longer than any column " * 2,
                  "--idempotency-key", f"tables-{priority}", "--json")
        ids.append(json.loads(out)["id"])
    run("consume", "cus_wide", "12.25", "--currency", "USD", "--reference", "invoice-7")
    balance = run("balance", "cus_wide")
    ledger = run("ledger", "cus_wide")
    listing = run("providers")
    details = "".join(run("providers", name) for name in
                      ("local", "stripe", "metronome", "metronome-plans", "acme"))
    for out in (balance, ledger, listing, details):
        assert_fits(out, set(ids))
    # The ledger: a running balance after each entry.
    header, *rows = ledger.splitlines()
    assert "balance after" in header
    afters = [re.findall(r"-?\d+\.\d+ USD", row)[-1] for row in rows if " USD" in row]
    assert afters == ["10.00 USD", "15.00 USD", "5.00 USD", "2.75 USD"]
    assert all(grant_id in ledger for grant_id in ids)
    assert "invoice-7" in ledger
    # providers: one line per provider, then where the details are.
    names = [line.split()[0] for line in listing.splitlines() if line and not
             line.startswith("`")]
    assert {"local", "stripe", "metronome", "metronome-plans", "acme"} <= set(names)
    assert len(names) == len(set(names))
    assert "providers NAME" in listing
    assert "schedule segments" not in listing
    # Stripe's currency list wraps to the width, every currency still there.
    stripe = run("providers", "stripe")
    assert max(len(line) for line in stripe.splitlines()) <= WIDTH
    for code in ("AED", "USD", "ZMW"):
        assert code in stripe
