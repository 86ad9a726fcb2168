"""Bulk import into local (issue 10): batches, each one transaction, safe to re-run."""

from __future__ import annotations

import enum
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import billing_credits as bc
from billing_credits.local import LocalProvider
from billing_credits.local._canonical import (
    _canonical,
    _canonical_from_request,
    _grant_ids,
    canonical_text,
    iso_and_stored,
)
from billing_credits.local._store import request_hash, text_hash
from billing_credits.testing import strategies as bcst

START = datetime(2026, 1, 1, tzinfo=UTC)


def line(i: int, **changes: Any) -> str:
    data: dict[str, Any] = {
        "customer_id": f"cus_{i % 7}", "amount": bc.Money(amount=Decimal(f"{i}.50"), currency="USD"),
        "effective_at": START, "expires_at": START + timedelta(days=400),
        "idempotency_key": f"bulk-{i}", "metadata": {"row": str(i)},
    }
    data.update(changes)
    return bc.CreditGrant(**data).model_dump_json()


def _reference_canonical(grant: bc.CreditGrant) -> dict[str, Any]:
    """The canonical form as first written: stored request hashes depend on it."""

    def normal(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value.normalize(bc.exact_context()))
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [normal(v) for v in value]
        if isinstance(value, enum.Enum):
            return value.value
        return value

    fields = grant.model_dump(exclude=set(bc.CreditGrant.read_back_fields()) | {"idempotency_key"})
    result: dict[str, Any] = normal(fields)
    return result


@settings(max_examples=150)
@given(bcst.grants())
def test_faster_canonical_form_is_unchanged(grant: bc.CreditGrant) -> None:
    reference = _reference_canonical(grant)
    assert _canonical(grant) == reference
    assert _canonical_from_request(grant, grant.request_fields()) == reference
    times = iso_and_stored(grant.effective_at), iso_and_stored(grant.expires_at)
    assert _canonical_from_request(grant, grant.request_fields(), times) == reference


def _times(grant: bc.CreditGrant) -> tuple[str | None, str | None]:
    return iso_and_stored(grant.effective_at)[0], iso_and_stored(grant.expires_at)[0]


@settings(max_examples=300)
@given(bcst.grants(bc.Capabilities()).filter(lambda grant: grant.schedule is None))
# the common grant: a currency, one window (no schedule), all usage
def test_canonical_text_is_the_encoded_canonical_form(grant: bc.CreditGrant) -> None:
    """The request hash of a common grant is written directly (issue 17): it must be the hash
    of the canonical form as first written, byte for byte, or stored hashes would no longer
    match their grants."""
    text = canonical_text(grant, *_times(grant))
    assert text is not None  # the direct path is the one taken for these grants
    assert text_hash(text) == request_hash(_reference_canonical(grant))


@settings(max_examples=150)
@given(bcst.grants())
def test_canonical_text_is_exact_or_declines(grant: bc.CreditGrant) -> None:
    """Any grant: the direct text equals the encoder's, or the grant is left to the encoder."""
    text = canonical_text(grant, *_times(grant))
    if text is not None:
        assert text_hash(text) == request_hash(_reference_canonical(grant))
    else:
        assert grant.schedule is not None or not grant.scope.is_all_usage \
            or grant.amount.unit is not None \
            or (grant.paid_amount is not None and grant.paid_amount.unit is not None)


def test_batch_grant_ids_are_new_sortable_and_distinct() -> None:
    ids = _grant_ids(1_000)
    assert len(set(ids)) == 1_000
    assert all(len(i) == 36 and i.startswith("lcg_") and int(i[4:], 16) >= 0 for i in ids)
    assert len({i[:16] for i in ids}) == 1  # one clock reading for the batch: they sort together
    assert ids == sorted(ids)  # in line order: the id breaks the tie of one creation time
    later = _grant_ids(1)[0]
    assert later[:16] >= ids[0][:16]


@settings(max_examples=300)
@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)),
                                               timezone(timedelta(0)),
                                               timezone(timedelta(hours=5, minutes=30))])))
def test_iso_and_stored_are_isoformat_and_the_stored_text(moment: datetime) -> None:
    assert iso_and_stored(moment) == (
        moment.isoformat(), moment.astimezone(UTC).isoformat(timespec="microseconds"))


def test_import_batches_then_rerun_creates_nothing(tmp_path: Path) -> None:
    source = [line(i) for i in range(2_500)]
    with LocalProvider(tmp_path / "bulk.db") as local:
        first = bc.import_grants(local, source, batch_size=1_000)
        assert first.summary() == {"created": 2_500, "already_there": 0, "skipped": 0,
                                   "failed": 0, "paid_recorded_only": 0,
                                "times_aligned": 0}
        again = bc.import_grants(local, source, batch_size=700)
        assert again.summary() == {"created": 0, "already_there": 2_500, "skipped": 0,
                                   "failed": 0, "paid_recorded_only": 0,
                                "times_aligned": 0}
        assert sum(1 for _ in local.list_grants(page_size=1_000)) == 2_500
        # Each imported grant reads back as it was written, and single creates agree with it.
        same = bc.CreditGrant.model_validate_json(source[42])
        assert local.create_grant(same).amount.amount == Decimal("42.50")
    assert sqlite3.connect(tmp_path / "bulk.db").execute(
        "SELECT COUNT(*) FROM grants").fetchone()[0] == 2_500


def test_a_reused_key_or_unrepresentable_line_fails_alone(tmp_path: Path) -> None:
    with LocalProvider(tmp_path / "bulk.db") as local:
        bc.import_grants(local, [line(1)])
        clash = line(2, idempotency_key="bulk-1")
        report = bc.import_grants(local, [line(3), clash, "not json", line(4)])
        assert report.created == 2
        assert [n for n, _ in report.failed] == [2, 3]
        assert "different grant" in report.failed[0][1]


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    """A row failing in the middle of a batch of 1,000 leaves none of the batch behind: not the grants
    before it, nor their ``granted`` ledger entries. The real ``insert_many`` runs; the failure
    is a real constraint of the database (a trigger refusing one idempotency key), and what is
    left is read through a second connection, as another process would see it."""
    path = tmp_path / "bulk.db"
    with LocalProvider(path) as local:
        bc.import_grants(local, [line(0)])  # the schema exists, with one grant before the batch
        outside = sqlite3.connect(path)
        outside.execute("CREATE TRIGGER refuse_one BEFORE INSERT ON grants "
                        "WHEN NEW.idempotency_key = 'bulk-500' "
                        "BEGIN SELECT RAISE(ABORT, 'row 500 refused'); END")
        outside.commit()
        with pytest.raises((sqlite3.IntegrityError, bc.BillingCreditsError), match="row 500 refused"):
            bc.import_grants(local, [line(i) for i in range(1, 1_001)], batch_size=1_000)
        assert [r[0] for r in outside.execute("SELECT idempotency_key FROM grants")] == ["bulk-0"]
        assert outside.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 1
        assert [g.idempotency_key for g in local.list_grants()] == ["bulk-0"]
        # The store is usable after the rollback: without the refusing trigger, the same
        # batch goes in whole.
        outside.execute("DROP TRIGGER refuse_one")
        outside.commit()
        report = bc.import_grants(local, [line(i) for i in range(1, 1_001)], batch_size=1_000)
        assert report.created == 1_000
        assert outside.execute("SELECT COUNT(*) FROM grants").fetchone()[0] == 1_001
        outside.close()


def _written(local: LocalProvider, prefix: str) -> tuple[list[Any], list[Any]]:
    """The lots and ledger rows of the customers named ``prefix...``, in the order written,
    without what differs between two grants made alike (ids, sequence numbers, the prefix)."""
    def work(tx: Any) -> tuple[list[Any], list[Any]]:
        lots = [(r[0][len(prefix):], *r[1:]) for r in tx.all(
            "SELECT customer_id, idx, unit, money, priority, created_at, starts_at, ends_before, "
            "amount, remaining, voided_at, admits_all, windows FROM lots WHERE customer_id "
            "LIKE ? ORDER BY grant_seq, idx", prefix + "%")]
        entries = [(r[0][len(prefix):], *r[1:]) for r in tx.all(
            "SELECT customer_id, segment, kind, amount, unit, at, reference, recorded_at "
            "FROM ledger WHERE customer_id LIKE ? ORDER BY seq", prefix + "%")]
        return lots, entries
    return local._store.read(work)


def test_a_batch_writes_the_lots_and_entries_a_create_writes(engine: str) -> None:
    """``import_batch`` has the database copy each lot and ``granted`` entry from its grant
    row; what it writes is what ``create_grant`` writes for the same grant, on both engines:
    one window and several, a priority, a custom unit, a narrowed scope, "now" as start."""
    moment = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    unit = bc.CreditUnit(id="tokens", name="Tokens")
    grants: list[dict[str, Any]] = [
        {"amount": bc.Money(amount=Decimal("10.50"), currency="USD"), "effective_at": START,
         "expires_at": START + timedelta(days=30), "priority": Decimal("2.5")},
        {"amount": bc.Money(amount=Decimal("7"), unit=unit), "effective_at": START},
        {"amount": bc.Money(amount=Decimal("3.000"), currency="EUR"),
         "schedule": [bc.Segment(amount=Decimal("1.000"), starts_at=START,
                                 ends_before=START + timedelta(days=10)),
                      bc.Segment(amount=Decimal("2"), starts_at=START + timedelta(days=10))]},
        {"amount": bc.Money(amount=Decimal("0.01"), currency="USD"),
         "scope": bc.Scope(product_ids=("prod_1",))},
        {"amount": bc.Money(amount=Decimal("12345678901234567890.123456789"), currency="USD"),
         "effective_at": START - timedelta(days=3), "expires_at": START + timedelta(days=3)},
    ]
    target = engine if engine.startswith("postgres") else None
    with LocalProvider(None if target else engine, url=target, clock=lambda: moment) as local:
        made = [bc.CreditGrant(customer_id=f"a-{i}", idempotency_key=f"a-{i}", **g)
                for i, g in enumerate(grants)]
        assert local.import_batch(made) == [True] * len(grants)
        for i, g in enumerate(grants):
            local.create_grant(bc.CreditGrant(customer_id=f"b-{i}", idempotency_key=f"b-{i}",
                                              **g))
        imported, created = _written(local, "a-"), _written(local, "b-")
        assert imported == created
        assert len(imported[0]) == len(grants) + 1  # the scheduled grant has two lots
        assert len(imported[1]) == len(grants)
        for i in range(len(grants)):
            assert [(b.usable, b.pending) for b in local.get_balance(f"a-{i}")] == [
                (b.usable, b.pending) for b in local.get_balance(f"b-{i}")]


def test_a_batch_consumes_in_the_order_of_its_lines(tmp_path: Path) -> None:
    """A batch's grants share one creation time (one clock reading): with the same priority
    and window, the id breaks the tie, so credit still burns in the order of the lines."""
    source = [line(i, customer_id="cus_same", amount=bc.Money("1.00", "USD"),
                   metadata={"n": str(i)}) for i in range(40)]
    with LocalProvider(tmp_path / "order.db") as local:
        assert bc.import_grants(local, source, batch_size=40).created == 40
        drawn = []
        for i in range(40):
            result = local.consume("cus_same", bc.Money("1.00", "USD"), reference=f"r{i}")
            drawn += [entry.grant_id for entry in result]
        listed = {g.id: g.metadata["n"] for g in local.list_grants("cus_same")}
        assert [listed[d] for d in drawn] == [str(i) for i in range(40)]


def test_the_default_scope_an_import_skips_is_the_one_export_writes() -> None:
    """An exported line's empty scope is left out before validation (the shared default is
    used instead): it must be exactly what ``export`` writes for the default scope."""
    import json

    from billing_credits.migrate._transfer import _ALL_USAGE_JSON

    assert json.loads(bc.Scope().model_dump_json()) == _ALL_USAGE_JSON
    exported = json.loads(bc.CreditGrant.model_validate_json(line(1)).model_dump_json())
    assert exported["scope"] == _ALL_USAGE_JSON
