"""Issue 9.1 (core): an unreadable listing item never stops export or plan, never vanishes.

A tiny provider lists two readable grants and, on its second page, two items it cannot read
(``Page(..., unreadable=[...])``). ``export`` writes the grants and puts the two items in a
rejects file, saying how many; ``plan_migration`` lists them as refusals with the vendor id and
the problem; ``import`` turns every line that is not a valid grant into a rejects entry.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import cli

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _grant(index: int) -> bc.CreditGrant:
    return bc.CreditGrant(
        customer_id="cus_1", amount=bc.Money(amount=Decimal("10.00"), currency="USD"),
        effective_at=datetime(2026, 1, 1, tzinfo=UTC), expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        id=f"g_{index}", provider="half-readable", status=bc.GrantStatus.ACTIVE,
        balance=bc.Money(amount=Decimal("10.00"), currency="USD"), idempotency_key=f"hr-{index}")


class HalfReadable(bc.Provider):
    """Page 1: a grant. Page 2: a grant and two items that could not be read."""

    name = "half-readable"
    capabilities = bc.Capabilities()
    settings: ClassVar[tuple[bc.Setting, ...]] = ()

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        raise bc.UnsupportedOperationError(self.name, "create")
        yield  # pragma: no cover

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        if cursor is None:
            page = bc.Page([_grant(1)], next_cursor="p2", request_id="req_1")
        else:
            _, unreadable = bc.read_items(
                self.name, [{"id": "credgr_zero", "amount": 0}, {"amount": "x"}],
                bc.CreditGrant.model_validate, lambda item: item.get("id"))
            page = bc.Page([_grant(2)], unreadable=unreadable, request_id="req_2")
        result: bc.Page = yield bc.blocking(lambda: page)
        return result

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        raise bc.NotFoundError(grant_id)
        yield  # pragma: no cover


@pytest.fixture
def half_readable() -> Iterator[None]:
    @bc.hookimpl
    def register_providers(register: bc.ProviderRegister) -> None:
        register(HalfReadable)

    pm = bc.plugin_manager()
    pm.register(SimpleNamespace(register_providers=register_providers), name="half-readable-test")
    yield
    pm.unregister(name="half-readable-test")


def test_export_grants_reports_unreadable_items_to_the_callback() -> None:
    out = io.StringIO()
    seen: list[bc.UnreadableGrant] = []
    count = bc.export_grants(HalfReadable(), out, on_unreadable=seen.append)
    assert count == 2
    assert len(out.getvalue().splitlines()) == 2
    assert [entry.vendor_id for entry in seen] == ["credgr_zero", None]
    assert all(entry.raw is not None and entry.problem for entry in seen)


def test_export_without_callback_raises_after_every_readable_grant() -> None:
    out = io.StringIO()
    with pytest.raises(bc.UnreadableGrantsError) as caught:
        bc.export_grants(HalfReadable(), out)
    assert len(out.getvalue().splitlines()) == 2
    assert len(caught.value.entries) == 2


def test_cli_export_writes_rejects_and_says_how_many(half_readable: None, tmp_path: Path) -> None:
    output = tmp_path / "grants.jsonl"
    result = CliRunner().invoke(cli, ["export", "-p", "half-readable", "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert len(output.read_text().splitlines()) == 2
    rejects = tmp_path / "grants.jsonl.rejects.jsonl"
    entries = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [e["vendor_id"] for e in entries] == ["credgr_zero", None]
    assert entries[0]["raw"] == {"id": "credgr_zero", "amount": 0}
    assert all(e["kind"] == "unreadable" and e["problem"] for e in entries)
    assert "2 item(s) could not be read" in result.stderr
    assert str(rejects) in result.stderr


def test_cli_export_rejects_option_names_the_file(half_readable: None, tmp_path: Path) -> None:
    named = tmp_path / "bad.jsonl"
    result = CliRunner().invoke(cli, ["export", "-p", "half-readable", "-o", str(tmp_path / "o"),
                                      "--rejects", str(named)])
    assert result.exit_code == 0, result.output
    assert len(named.read_text().splitlines()) == 2


def test_plan_lists_unreadable_items_as_refusals(tmp_path: Path) -> None:
    target = bc.get_provider("local", path=str(tmp_path / "target.db"))
    plan = bc.plan_migration(HalfReadable(), target, now=NOW)
    refused = [item for item in plan.refusals if item.reason and "unreadable" in item.reason]
    assert len(refused) == 2
    assert refused[0].source_id == "credgr_zero"
    assert "credgr_zero" in (refused[0].reason or "")
    assert len(plan.to_create) == 2
    target.close()


def test_import_rejects_every_line_that_is_not_a_grant(tmp_path: Path) -> None:
    good = _grant(7).model_dump_json(exclude={"raw"})
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join([
        good.encode(),
        b"not json at all",
        b"\xff\xfe binary \x00 junk",
        b"[" * 5000,
        json.dumps({"customer_id": "cus_1"}).encode(),
        json.dumps({"customer_id": "cus_1", "amount": {"amount": "1E-200", "currency": "USD"},
                    "idempotency_key": "k"}).encode(),
        b"",
    ]))
    result = CliRunner().invoke(cli, ["import", str(source)])
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert "created 1, already there 0, skipped 0, failed 5" in result.stdout
    rejects = [json.loads(line) for line in
               (tmp_path / "in.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5, 6]
    assert all(r["kind"] == "rejected" and r["problem"] for r in rejects)


def test_import_grants_reports_bad_lines_to_on_reject() -> None:
    seen: list[Any] = []
    report = bc.import_grants(HalfReadable(), ["{", b"\xff"],
                              on_reject=lambda n, line, why: seen.append((n, why)))
    assert [n for n, _ in seen] == [1, 2]
    assert len(report.failed) == 2
