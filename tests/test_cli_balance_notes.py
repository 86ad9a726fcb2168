"""``billing-credits balance`` prints what a balance says about its figures (issue 18 review:
the notes line was added without a test)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import _ledger as cli_ledger
from billing_credits.cli import cli

NOTES = ("usage not yet invoiced is not deducted",
         "grant g1: 2.00 USD expired credit not yet posted")


class _Provider:
    def get_balance(self, customer_id: str, *, unit: str | None = None,
                    at: datetime | None = None) -> list[bc.Balance]:
        usd = bc.Money(amount=Decimal("3.00"), currency="USD")
        return [bc.Balance(customer_id=customer_id, usable=usd, pending=usd.with_amount(
            Decimal(0)), as_of=datetime(2026, 1, 1, tzinfo=UTC), source="test",
            uninvoiced_usage_deducted=False, notes=NOTES)]


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> None:
    @contextlib.contextmanager
    def opened(provider: str, settings: Any) -> Iterator[_Provider]:
        yield _Provider()

    monkeypatch.setattr(cli_ledger, "_open", opened)


def test_balance_prints_every_note(stub: None) -> None:
    result = CliRunner().invoke(cli, ["balance", "cus_1"])
    assert result.exit_code == 0, result.output
    for note in NOTES:
        assert f"  note: {note}" in result.stdout


def test_balance_json_carries_notes_and_uninvoiced_flag(stub: None) -> None:
    result = CliRunner().invoke(cli, ["balance", "cus_1", "--json"])
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    found = json.loads(line)
    assert found["notes"] == list(NOTES)
    assert found["uninvoiced_usage_deducted"] is False
