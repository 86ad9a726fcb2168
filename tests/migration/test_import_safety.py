"""Import of exported grants (review of issue 8): an exported grant was paid for where it came
from and is never billed again; times finer than the target holds are aligned in the safe
direction, as the planner does, and repeated failures are summarized."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from billing_credits_metronome.testing import MetronomeFake
from billing_credits_stripe.testing import StripeFake
from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import cli
from billing_credits.testing import FakeTransport


def plans_target(fake: MetronomeFake) -> bc.Provider:
    target = bc.get_provider("metronome-plans", bearer_token="t",
                             base_url="https://api.metronome.com", invoice_paid_amount="true",
                             http_client=httpx.Client(transport=FakeTransport(fake)))
    target.setup()
    return target


def paid_grant(customer: str, **fields: object) -> bc.CreditGrant:
    return bc.CreditGrant(
        customer_id=customer, amount=bc.Money(amount=Decimal(100), currency="USD"),
        paid_amount=bc.Money(amount=Decimal(90), currency="USD"),
        effective_at=datetime(2026, 1, 1, tzinfo=UTC), expires_at=datetime(2027, 6, 1, tzinfo=UTC),
        **fields)  # type: ignore[arg-type]


def test_an_exported_paid_grant_is_recorded_not_invoiced_again(tmp_path: Path) -> None:
    fake = MetronomeFake(token="t")
    target = plans_target(fake)
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    exported = source.create_grant(paid_grant(str(uuid.uuid4()), idempotency_key="paid-1"))
    report = bc.import_grants(target, [exported.model_dump_json()])
    assert (report.created, report.failed, report.paid_recorded_only) == (1, [], 1)
    assert report.summary()["paid_recorded_only"] == 1
    [stored] = fake.grants.values()
    assert Decimal(stored.item["paid_amount"]["amount"]) == 0  # nothing invoiced
    assert stored.item.get("invoice_id") is None
    [again] = target.list_grants(exported.customer_id)
    assert again.paid_amount == exported.paid_amount  # kept as a record


def test_a_hand_written_line_is_created_as_given(tmp_path: Path) -> None:
    fake = MetronomeFake(token="t")
    target = plans_target(fake)
    line = paid_grant(str(uuid.uuid4()), idempotency_key="app-1").model_dump_json(
        exclude={"id", "provider"})
    report = bc.import_grants(target, [line])
    assert (report.created, report.failed, report.paid_recorded_only) == (1, [], 0)
    [stored] = fake.grants.values()
    assert Decimal(stored.item["paid_amount"]["amount"]) > 0  # the application asked to invoice


def stripe_target(fake: StripeFake) -> bc.Provider:
    transport = fake.transport()
    return bc.get_provider("stripe", api_key="sk_test_x", rate_limit="0",
                           http_client=httpx.Client(transport=transport))


def test_microsecond_times_are_aligned_to_a_one_second_target(tmp_path: Path) -> None:
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    for _ in range(5):  # no explicit effective_at: "now", with microseconds
        source.create_grant(bc.CreditGrant(customer_id="cus_1",
                                           amount=bc.Money(amount=Decimal(10), currency="USD")))
    exported = [g for g in source.list_grants() if g.effective_at and g.effective_at.microsecond]
    assert exported
    out = io.StringIO()
    bc.export_grants(source, out)
    target = stripe_target(StripeFake(seed=2))
    report = bc.import_grants(target, out.getvalue().splitlines())
    assert (report.created, report.failed) == (5, [])
    assert report.times_aligned == len(exported)
    assert report.alignment is not None
    assert "1 s" in report.alignment
    by_key = {g.idempotency_key: g for g in target.list_grants("cus_1")}
    for grant in exported:
        assert grant.id is not None
        assert grant.effective_at is not None
        stored = by_key[bc.migration_key("local", grant.id, None)]
        assert stored.effective_at is not None
        assert grant.effective_at < stored.effective_at <= grant.effective_at + timedelta(seconds=1)
    again = bc.import_grants(target, out.getvalue().splitlines())  # aligned alike: nothing new
    assert (again.created, again.already_there) == (0, 5)


def test_the_cli_summarizes_repeated_failures(tmp_path: Path) -> None:
    lines = tmp_path / "bad.jsonl"
    lines.write_text("not json\n" * 60)
    result = CliRunner().invoke(cli, ["import", str(lines), "-s", f"path={tmp_path / 't.db'}", "-q"])
    assert result.exit_code != 0
    err = result.stderr.splitlines()
    assert len(err) < 30
    assert any("40 more failure(s)" in line for line in err)
    assert any(line.strip().startswith("40 ×") for line in err)
    assert "failed 60" in result.stdout
