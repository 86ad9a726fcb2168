"""The command line where a new user tripped (issue 10): one test per point."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from billing_credits_metronome.testing import MetronomeFake
from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import _common as _cli
from billing_credits.cli import cli
from billing_credits.testing import FakeTransport


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("BILLING_CREDITS_DB", str(path))
    monkeypatch.delenv("COLUMNS", raising=False)
    return path


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None
        ) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input, env=env)
    return result.exit_code, result.stdout, result.stderr


def create(customer: str = "cus_1", key: str = "k-1", *extra: str) -> str:
    code, out, err = run("grants", "create", "--customer", customer, "--amount", "25.00",
                         "--currency", "USD", "--idempotency-key", key, "--json", *extra)
    assert code == 0, err
    grant_id: str = json.loads(out)["id"]
    return grant_id


def read_back(**changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "id": "credgr_test_61RVeOe7oWfDNJp9b41L6Gu5xZXmJWGq", "provider": "stripe",
        "customer_id": "cus_QkWqvHnV3C5xR1", "status": "active",
        "amount": {"amount": "25.00", "currency": "USD"}, "name": "A rather long grant name " * 3,
        "adjustments": [{"field": "scope", "requested": "all usage",
                         "stored": "price_type=metered", "reason": "Stripe: metered only"}],
    }
    data.update(changes)
    return bc.CreditGrant.model_validate(data)


def commands() -> Iterator[tuple[str, click.Command]]:
    def walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{path} {name}".strip())
    yield from walk(cli, "")


# -- tables ---------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_tables_never_cut_an_id_and_show_adjustments(
    width: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    grant = read_back()
    _cli._show([grant], as_json=False)
    out = capsys.readouterr().out
    assert grant.id is not None
    assert grant.id in out
    # The customer id prints whole, or its column is named among the hidden ones; so are the
    # adjustments (with how many grants have some).
    hidden = " ".join(out.split("hidden to fit", 1)[1].split()) if "hidden to fit" in out else ""
    assert grant.customer_id in out or "customer" in hidden
    assert "adjusted" in out.split("\n", 1)[0] or "adjusted (1 grant(s) adjusted: scope" in hidden
    assert "scope" in out


def test_grants_get_shows_every_field(db: Path, tmp_path: Path) -> None:
    source = tmp_path / "grant.json"
    source.write_text(json.dumps({
        "customer_id": "cus_9", "amount": {"amount": "30", "currency": "EUR"},
        "paid_amount": {"amount": "12.50", "currency": "EUR"}, "category": "paid",
        "category_label": "enterprise", "reason": "Prepayment", "name": "Quarterly",
        "priority": "0.75", "metadata": {"deal": "d-42"},
        "scope": {"product_ids": ["prod_compute"]},
        "schedule": [
            {"amount": "10", "starts_at": "2026-01-01T00:00:00Z", "ends_before": "2026-02-01T00:00:00Z"},
            {"amount": "20", "starts_at": "2026-02-01T00:00:00Z", "ends_before": "2030-03-01T00:00:00Z"}],
        "idempotency_key": "get-every-field"}))
    code, out, err = run("grants", "create", "--from-json", str(source), "--json")
    assert code == 0, err
    grant_id = json.loads(out)["id"]
    code, out, _ = run("grants", "get", grant_id)
    assert code == 0
    for text in (grant_id, "cus_9", "12.50 EUR", "paid", "enterprise", "Prepayment", "Quarterly",
                 "0.75", "metadata.deal", "d-42", "scope.product_ids", "prod_compute",
                 "schedule.0.amount", "schedule.1.ends_before", "get-every-field",
                 "adjustments"):
        assert text in out, text


@pytest.mark.parametrize("width", [40, 60, 80])
def test_grants_get_never_cuts_an_id_on_a_narrow_terminal(
    width: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    grant = read_back(metadata={"migrated_from_grant": "78465f9c-78e4-4985-a96f-425d9b42ab22"})
    _cli._detail(grant)
    lines = capsys.readouterr().out.splitlines()
    assert grant.id is not None
    for whole in (grant.id, "78465f9c-78e4-4985-a96f-425d9b42ab22", "price_type=metered"):
        assert any(whole in line for line in lines), whole


def test_a_grant_with_adjustments_shows_them_in_get(capsys: pytest.CaptureFixture[str]) -> None:
    _cli._detail(read_back())
    out = capsys.readouterr().out
    assert "adjustments.0.field" in out
    assert "price_type=metered" in out


# -- streaming and limits --------------------------------------------------------------------


def test_list_prints_its_first_row_before_the_listing_ends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def slow() -> Iterator[bc.CreditGrant]:
        yield read_back()
        raise RuntimeError("the second page never comes")

    with pytest.raises(RuntimeError):
        _cli._show(slow(), as_json=False)
    assert "credgr_test_61RVeOe7oWfDNJp9b41L6Gu5xZXmJWGq" in capsys.readouterr().out


def test_list_limit_and_repeatable_customer(db: Path) -> None:
    for i in range(3):
        create("cus_a", f"a-{i}")
    create("cus_b", "b-0")
    code, out, _ = run("grants", "list", "--limit", "2", "--json")
    assert code == 0
    assert len(out.splitlines()) == 2
    code, out, _ = run("grants", "list", "--customer", "cus_a", "--customer", "cus_b", "--json")
    assert code == 0
    assert len(out.splitlines()) == 4


# -- progress and summaries ------------------------------------------------------------------


def test_import_reports_created_then_already_there_with_progress_and_json(
    db: Path, tmp_path: Path,
) -> None:
    for i in range(3):
        create("cus_a", f"a-{i}")
    exported = tmp_path / "out.jsonl"
    code, _, err = run("export", "-o", str(exported))
    assert code == 0, err
    assert json.loads(err.splitlines()[0]) == {"progress": 3, "what": "exporting"}
    target = f"path={tmp_path / 'target.db'}"
    code, out, err = run("import", str(exported), "-s", target)
    assert code == 0, err
    assert out.strip() == "created 3, already there 0, skipped 0, failed 0"
    assert {"progress": 3, "what": "importing"} in [json.loads(x) for x in err.splitlines()]
    code, out, err = run("import", str(exported), "-s", target, "--json", "--quiet")
    assert code == 0
    assert json.loads(out) == {"created": 0, "already_there": 3, "skipped": 0, "failed": 0,
                                "paid_recorded_only": 0,
                                "times_aligned": 0}
    assert err == ""


def test_ctrl_c_says_what_was_done_and_exits_130(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from billing_credits.migrate import _transfer

    def interrupted(*args: Any, progress: Any = None, **kwargs: Any) -> Any:
        progress(40)
        raise KeyboardInterrupt

    monkeypatch.setattr(_transfer, "import_grants", interrupted)
    source = tmp_path / "in.jsonl"
    source.write_text("")
    code, _, err = run("import", str(source), "--quiet")
    assert code == 130
    assert "interrupted: read 40 line(s)" in err
    assert "Traceback" not in err


def test_export_to_a_file_is_atomic(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from billing_credits.migrate import _transfer

    create()
    target = tmp_path / "grants.jsonl"

    def broken(provider: Any, out: Any, **kwargs: Any) -> int:
        out.write('{"half": ')
        raise KeyboardInterrupt

    monkeypatch.setattr(_transfer, "export_grants", broken)
    code, _, err = run("export", "-o", str(target))
    assert code == 130
    assert "not written" in err
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if "grants" in p.name] == []


# -- refusals a script can rely on ------------------------------------------------------------


def test_from_json_with_field_flags_is_refused(db: Path, tmp_path: Path) -> None:
    source = tmp_path / "g.json"
    source.write_text('{"customer_id": "c", "amount": {"amount": "1", "currency": "USD"}}')
    code, _, err = run("grants", "create", "--from-json", str(source), "--amount", "5")
    assert code == 2
    assert "--from-json" in err
    assert "--amount" in err
    assert not db.exists() or run("grants", "list", "--json")[1] == ""


@pytest.mark.parametrize("option", ["-s", "--metadata"])
def test_a_repeated_key_is_refused(db: Path, option: str) -> None:
    args = ["grants", "create", "--customer", "c", "--amount", "1", "--currency", "USD"]
    code, _, err = run(*args, option, "path=a", option, "path=b")
    assert code == 2
    assert "path given twice" in err
    assert len(err.strip().splitlines()) == 1


def test_usage_errors_are_one_line(db: Path) -> None:
    for args in (["grants", "list", "--bogus"], ["migrate", "apply"], ["nope"],
                 ["grants", "list", "--limit", "zero"]):
        code, out, err = run(*args)
        assert code == 2, args
        assert out == ""
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("error: ")


def test_every_option_has_help_text() -> None:
    missing = [f"{path} {param.opts[0]}" for path, command in commands()
               for param in command.params
               if isinstance(param, click.Option) and not param.hidden and not param.help]
    assert missing == []


def test_customer_is_repeatable_everywhere() -> None:
    found = [(path, param.multiple) for path, command in commands() for param in command.params
             if isinstance(param, click.Option) and "--customer" in param.opts]
    assert len(found) >= 4
    assert all(multiple for _, multiple in found), found


def test_json_where_a_command_prints_a_result_and_nowhere_else() -> None:
    with_json = {path for path, command in commands()
                 if any(isinstance(p, click.Option) and "--json" in p.opts for p in command.params)}
    assert with_json == {
        "providers", "grants create", "grants list", "grants get", "grants void",
        "grants expire", "grants update", "import", "migrate plan", "migrate apply",
        "migrate verify", "sandbox", "setup", "balance", "ledger", "consume", "simulate",
        "db upgrade"}


def test_create_for_several_customers_keys_each(db: Path) -> None:
    code, out, err = run("grants", "create", "--customer", "a", "--customer", "b", "--amount",
                         "1", "--currency", "USD", "--idempotency-key", "promo", "--json")
    assert code == 0, err
    keys = sorted(json.loads(line)["idempotency_key"] for line in out.splitlines())
    assert keys == ["promo:a", "promo:b"]


# -- providers ---------------------------------------------------------------------------------


def test_providers_filters_shows_environment_variables_and_keeps_every_note() -> None:
    code, out, _ = run("providers", "local")
    assert code == 0
    assert out.startswith("local")
    assert "stripe" not in out
    assert "BILLING_CREDITS_DB" in out
    code, out, _ = run("providers", "metronome", "--json")
    entry = json.loads(out)
    notes = [v for k, v in _provider_class("metronome").capabilities.describe() if k == "note"]
    assert len(notes) > 1
    assert entry["notes"] == notes
    code, _, err = run("providers", "nope")
    assert code == 2
    assert "installed providers" in err


def _provider_class(name: str) -> Any:
    return next(i for i in bc.available_providers() if i.name == name)


# -- metronome listing without product_id -------------------------------------------------------


def test_metronome_lists_without_product_id_and_refuses_creating() -> None:
    fake = MetronomeFake(token="t")
    transport = FakeTransport(fake)
    with bc.get_provider("metronome", bearer_token="t", http_client=httpx.Client(
            transport=transport)) as credits:
        assert list(credits.list_grants("d7abd0cd-4ae9-4db7-8676-e986a4ebd8dc")) == []
        with pytest.raises(bc.ConfigurationError, match="product_id"):
            credits.create_grant(bc.CreditGrant(
                customer_id="d7abd0cd-4ae9-4db7-8676-e986a4ebd8dc",
                amount=bc.Money(amount=Decimal(5), currency="USD")))
    assert [path for path, _, _ in fake.requests] == ["/v1/contracts/customerCredits/list"]


def test_plan_shows_progress_reading_the_source(db: Path, tmp_path: Path) -> None:
    for i in range(3):
        create("cus_a", f"p-{i}")
    target = f"path={tmp_path / 'target.db'}"
    plan = str(tmp_path / "plan.jsonl")
    code, _, err = run("migrate", "plan", "--from", "local", "--to", "local", "-T", target,
                       "-o", plan, "--json")
    assert code == 0, err
    lines = [json.loads(x) for x in err.splitlines()]
    assert lines[-1] == {"progress": 3, "what": "reading source"}
    code, _, err = run("migrate", "plan", "--from", "local", "--to", "local", "-T", target,
                       "-o", plan, "--json", "--quiet")
    assert code == 0
    assert err == ""


def test_a_bare_group_prints_its_help() -> None:
    for args in ([], ["grants"], ["migrate"]):
        code, out, err = run(*args)
        assert code == 0, err
        assert out.startswith("Usage: ")
        assert err == ""


def test_ctrl_c_during_apply_says_how_far_it_got(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from billing_credits.migrate import _apply as _migration

    for i in range(2):
        create("cus_a", f"c-{i}")
    target = f"path={tmp_path / 'target.db'}"
    plan = str(tmp_path / "plan.jsonl")
    assert run("migrate", "plan", "--from", "local", "--to", "local", "-T", target, "-o", plan,
               "--json", "--quiet")[0] == 0

    async def interrupted(*args: Any, progress: Any, **kwargs: Any) -> Any:
        progress(1, 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(_migration, "apply_plan", interrupted)
    code, _, err = run("migrate", "apply", plan, "-T", target, "--quiet")
    assert code == 130
    assert "interrupted: 1 of 2 planned grant(s) confirmed" in err
    assert "run apply again" in err
