"""Import of exported grants (review of issue 8): an exported grant was paid for where it came
from and is never billed again; times finer than the target holds are aligned in the safe
direction, as the planner does, and repeated failures are summarized."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
from billing_credits_metronome.testing import MetronomeFake

import billing_credits as bc
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
