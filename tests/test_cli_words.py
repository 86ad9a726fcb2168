"""Errors and notes in the command line's own words, and the short Python spellings
(issue 20.5 and 20.6)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits._readable import duration_text, identity_text
from billing_credits.cli import cli
from billing_credits.local import LocalProvider

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


# -- Money, positionally ------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["12.34", Decimal("12.34"), 12, "12"])
def test_money_takes_amount_and_currency_by_position(amount: object) -> None:
    money = bc.Money(amount, "usd")  # type: ignore[arg-type]
    assert money == bc.Money(amount=Decimal(str(amount)), currency="USD")
    assert money.currency == "USD"
    assert money.amount == Decimal(str(amount))


def test_money_by_position_is_validated_like_by_name() -> None:
    assert bc.Money(amount="5", unit=bc.CreditUnit(id="cu")).unit_key == "unit:cu"
    with pytest.raises(bc.InvalidGrantError, match="given twice"):
        bc.Money("1", "USD", amount="2")  # type: ignore[call-arg]
    with pytest.raises(bc.InvalidGrantError, match="exactly one of currency"):
        bc.Money("1")
    with pytest.raises(bc.InvalidGrantError, match="not an ISO 4217"):
        bc.Money("1", "ZZZ")


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4,
                   min_value=Decimal("-1e12"), max_value=Decimal("1e12")))
def test_money_by_position_and_by_name_are_the_same(amount: Decimal) -> None:
    assert bc.Money(amount, "EUR") == bc.Money(amount=amount, currency="EUR")
    assert bc.Money(str(amount), "EUR") == bc.Money(amount=amount, currency="EUR")


# -- numbers: the value echoed, and the shape expected ---------------------------------------------


def test_a_bad_decimal_echoes_the_value_and_the_shape() -> None:
    with pytest.raises(bc.InvalidGrantError) as caught:
        bc.CreditGrant.model_validate({"customer_id": "c",
                                       "amount": {"amount": "12,34", "currency": "USD"}})
    assert "'12,34'" in str(caught.value)
    assert 'such as "12.34"' in str(caught.value)


@pytest.mark.parametrize(("args", "option"), [
    (["grants", "create", "--customer", "c", "--currency", "USD", "--amount", "12,34"], "--amount"),
    (["grants", "create", "--customer", "c", "--currency", "USD", "--amount", "1",
      "--priority", "high"], "--priority"),
    (["consume", "c", "1 234", "--currency", "USD", "--reference", "r"], "AMOUNT"),
])
def test_the_cli_names_its_option_echoes_the_value_and_shows_the_shape(
    args: list[str], option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BILLING_CREDITS_DB", str(tmp_path / "c.db"))
    code, _, err = run(*args)
    assert code == 2
    value = args[args.index(option) + 1] if option.startswith("--") else args[2]
    assert option in err
    assert repr(value) in err
    assert "12.34" in err
    assert "Input should be" not in err
    assert not (tmp_path / "c.db").exists() or "lcg_" not in (tmp_path / "c.db").read_text(
        errors="ignore")


# -- targets, retire notes, --lenient -------------------------------------------------------------


def test_identity_text_reads_like_a_place_and_keeps_what_tells_accounts_apart() -> None:
    assert identity_text("stripe:http://127.0.0.1:40975:-:f5c8bb5a44b2") == \
        "stripe at http://127.0.0.1:40975"
    assert identity_text("stripe:https://api.stripe.com:acct_1Ab:f5c8bb5a44b2") == \
        "stripe at https://api.stripe.com (acct_1Ab)"
    assert identity_text("metronome-plans:https://api.metronome.com:0123456789ab") == \
        "metronome-plans at https://api.metronome.com"
    assert identity_text("local:/srv/credits.db") == "local at /srv/credits.db"
    assert identity_text("memory") == "memory"


def test_duration_text_is_in_human_units() -> None:
    assert [duration_text(s) for s in (0, 42, 60, 3599, 3600, 2 * 86_400 + 3 * 3_600)] == [
        "0 s", "42 s", "1 min", "59 min 59 s", "1 h", "2 d 3 h"]


class Hourly(LocalProvider):
    """A local source whose retiring takes effect at the next whole hour (like Metronome's)."""

    def retire_effective_at(self, how: str, now: datetime) -> datetime:  # type: ignore[override]
        return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def hourly_plan(tmp_path: Path, *, strict: bool = True, refuse: bool = False) -> Path:
    source = Hourly(tmp_path / "s.db")
    source.create_grant(bc.CreditGrant(customer_id="c", amount=bc.Money("5", "USD"),
                                       effective_at=HOUR - timedelta(days=1)))
    if refuse:
        source.create_grant(bc.CreditGrant(customer_id="unmapped", amount=bc.Money("5", "USD"),
                                           effective_at=HOUR - timedelta(days=1)))
    target = bc.get_provider("local", path=str(tmp_path / "t.db"))
    plan = bc.plan_migration(source, target, strict=strict,
                             customer_map={"c": "c"} if refuse else None)
    path = tmp_path / "plan.jsonl"
    with path.open("w") as out:
        plan.write(out)
    source.close()
    target.close()
    return path


def test_the_plan_says_nothing_of_retiring_and_names_the_target_readably(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from billing_credits.cli._migrate import _print_plan
    from billing_credits.migrate._plan import MigrationPlan

    summary = MigrationPlan.load(hourly_plan(tmp_path)).summary()
    assert summary["retire_overlaps"]  # the plan file still records it, for apply
    _print_plan(summary, "plan.jsonl")
    out = capsys.readouterr().out
    assert out.startswith(f"plan local → local at {(tmp_path / 't.db').resolve()}: 1 grant(s)")
    assert "retir" not in out


def test_apply_with_retire_prints_the_note_in_human_units(tmp_path: Path) -> None:
    plan = hourly_plan(tmp_path)
    code, _, err = run("migrate", "apply", str(plan), "-T", f"path={tmp_path / 't.db'}",
                       "--quiet")
    assert code == 0, err
    assert "retir" not in err
    code, _, err = run("migrate", "apply", str(plan), "-T", f"path={tmp_path / 't.db'}",
                       "-F", f"path={tmp_path / 's.db'}", "--retire", "expire", "--quiet")
    assert code == 0, err
    note = next(line for line in err.splitlines() if line.startswith("note: retiring by expire"))
    assert re.search(r"\((\d+ min( \d+ s)?|\d+ s|1 h) after\)", note), note
    assert not re.search(r"\(\d{2,}(\.\d+)? s after", note), "raw seconds"


def test_applying_a_strict_plan_with_refusals_says_lenient(tmp_path: Path) -> None:
    plan = hourly_plan(tmp_path, refuse=True)
    code, _, err = run("migrate", "apply", str(plan), "-T", f"path={tmp_path / 't.db'}")
    assert code == 1
    assert "--lenient" in err
    assert "strict=False" not in err
