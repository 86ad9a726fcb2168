"""Issue 8 on Metronome: balances read by each field's documented meaning, custom-field keys
registered by ``setup`` (and the fake refusing the others), record-only creates that never
bill, retire timing and idempotent retires, replayed creates, pages in O(page size)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from billing_credits_metronome import MetronomeCreditsProvider, MetronomePlansProvider
from billing_credits_metronome import _provider as mp
from billing_credits_metronome import _translate as tr
from billing_credits_metronome._balance import grant_balance
from billing_credits_metronome.testing import MetronomeFake
from click.testing import CliRunner
from metronome_helpers import PRODUCT, TOKEN, make_fake, runtime, set_up

import billing_credits as bc
from billing_credits.cli import cli
from billing_credits.testing import FakeTransport, serve

NOW = datetime(2026, 11, 10, 12, 30, tzinfo=UTC)
"""Mid-period: the fake's billing period ends at the next month's start (2026-12-01)."""
CUSTOMER = "d7abd0cd-4ae9-4db7-8676-e986a4ebd8dc"


def clock() -> datetime:
    return NOW


def plans(fake: MetronomeFake, **settings: Any) -> MetronomePlansProvider:
    transport = FakeTransport(fake)
    return MetronomePlansProvider(
        bearer_token=TOKEN, base_url="https://api.metronome.com", runtime=runtime(),
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport), clock=clock, **settings)


def credits(fake: MetronomeFake, **settings: Any) -> MetronomeCreditsProvider:
    transport = FakeTransport(fake)
    return MetronomeCreditsProvider(
        bearer_token=TOKEN, base_url="https://api.metronome.com", runtime=runtime(),
        http_client=httpx.Client(transport=transport), product_id=PRODUCT, clock=clock,
        **settings)


def usd(amount: str) -> bc.Money:
    return bc.Money(amount=Decimal(amount), currency="USD")


def grant(expires_at: datetime, **changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "customer_id": CUSTOMER, "amount": usd("100.00"), "name": "Prepaid",
        "effective_at": datetime(2026, 11, 1, tzinfo=UTC), "expires_at": expires_at,
        "priority": Decimal(1), "idempotency_key": f"k-{uuid.uuid4()}"}
    data.update(changes)
    return bc.CreditGrant(**data)


@pytest.fixture
def fake() -> MetronomeFake:
    return make_fake(clock=clock)


# -- 8.2: the balance ---------------------------------------------------------------------


def test_fake_including_pending_is_zero_when_the_grant_expires_before_the_period_ends(
    fake: MetronomeFake,
) -> None:
    provider = plans(fake)
    short = provider.create_grant(grant(datetime(2026, 11, 20, tzinfo=UTC)))
    long = provider.create_grant(grant(datetime(2027, 6, 1, tzinfo=UTC)))
    assert short.id
    assert long.id
    for grant_id in (short.id, long.id):
        fake.deduct(grant_id, 2000)
        fake.deduct(grant_id, 500, pending=True)
    views = {g.id: g.raw["_summary"] for g in provider.list_grants(CUSTOMER) if g.raw}
    assert views[short.id]["balance_excluding_pending"] == "8000"
    assert views[short.id]["balance_including_pending"] == "0"
    assert views[long.id]["balance_excluding_pending"] == "8000"
    assert views[long.id]["balance_including_pending"] == "7500"
    assert views[short.id]["pending_deductions"]["amount"] == "500"


def test_active_grant_expiring_before_period_end_reads_what_is_usable(
    fake: MetronomeFake,
) -> None:
    """The issue's case: $100, $20 used, expiring before the period ends. Metronome says
    including_pending 0; the customer can still use $80 (min() read 0)."""
    provider = plans(fake)
    created = provider.create_grant(grant(datetime(2026, 11, 20, tzinfo=UTC)))
    assert created.id
    fake.deduct(created.id, 2000)
    read = provider.get_grant(created.id)
    assert read.status is bc.GrantStatus.ACTIVE
    assert read.balance == usd("80.00")
    assert read.raw
    assert read.raw["_summary"]["balance_rule"] == (
        "excluding_pending - pending_deductions")
    # a pending (draft invoice) deduction is usage already incurred: certain to be taken
    fake.deduct(created.id, 500, pending=True)
    assert provider.get_grant(created.id).balance == usd("75.00")
    fake.post_pending(created.id)
    assert provider.get_grant(created.id).balance == usd("75.00")


def test_grant_outliving_the_period_reads_including_pending(fake: MetronomeFake) -> None:
    provider = plans(fake)
    created = provider.create_grant(grant(datetime(2027, 6, 1, tzinfo=UTC)))
    assert created.id
    fake.deduct(created.id, 2000)
    fake.deduct(created.id, 500, pending=True)
    read = provider.get_grant(created.id)
    assert read.balance == usd("75.00")
    assert read.raw
    assert read.raw["_summary"]["balance_rule"] == "including_pending"


def test_balance_rules_on_raw_items() -> None:
    """Each documented field read by its meaning, including the cases the fake never makes."""
    item = {"balance": {"effective_at": "2026-12-01T00:00:00.000Z", "excluding_pending": 8000,
                        "including_pending": 0},
            "pending_deductions": [{"amount": -300}, {"amount": 200}]}
    expires = datetime(2026, 11, 20, tzinfo=UTC)
    assert grant_balance(item, expires_at=expires, now=NOW)[0] == Decimal(7500)
    # pending deductions not given: nothing is certain to be taken
    assert grant_balance({"balance": item["balance"]}, expires_at=expires, now=NOW) == (
        Decimal(8000), "excluding_pending (pending deductions not listed)")
    # expired: nothing left, whatever a stale balance says
    assert grant_balance(item, expires_at=expires, now=expires)[0] == Decimal(0)
    # never below zero
    over = {**item, "pending_deductions": [{"amount": 9000}]}
    assert grant_balance(over, expires_at=expires, now=NOW)[0] == Decimal(0)
    assert grant_balance({}, expires_at=expires, now=NOW) == (None, "no balance")


def test_plan_migration_moves_the_80(fake: MetronomeFake, tmp_path: Path) -> None:
    provider = plans(fake)
    created = provider.create_grant(grant(datetime(2026, 11, 20, tzinfo=UTC)))
    assert created.id
    fake.deduct(created.id, 2000)
    with bc.get_provider("local", path=str(tmp_path / "t.db")) as target:
        plan = bc.plan_migration(provider, target, now=NOW)
    [item] = plan.items
    assert item.action == "migrate", item.reason
    assert item.grant is not None
    assert item.grant.amount == usd("80.00")


# -- 8.9: custom-field keys ---------------------------------------------------------------


@pytest.mark.parametrize("make", [plans, credits])
def test_unregistered_key_is_refused_with_what_to_run(
    make: Callable[..., bc.Provider],
) -> None:
    fake = make_fake(ready=False, clock=clock)
    provider = make(fake)
    paid = grant(datetime(2027, 6, 1, tzinfo=UTC), paid_amount=usd("100.00"))
    with pytest.raises(bc.BadRequestError) as refused:
        provider.create_grant(paid)
    assert refused.value.code == mp.KEY_NOT_REGISTERED
    assert "billing-credits setup" in str(refused.value)
    assert not fake.grants
    assert not fake.credits
    done = provider.setup()
    assert done
    assert all("registered custom field key" in line for line in done)
    assert provider.create_grant(paid).paid_amount == usd("100.00")


def test_unregistered_key_is_found_whatever_the_refusal_says() -> None:
    """Metronome's wording for the refusal is not documented: the provider asks listKeys."""

    class Terse(MetronomeFake):
        def error(self, status: int, message: str, code: str | None = None) -> httpx.Response:
            return super().error(status, "Bad request" if status == 400 else message, code)

    fake = Terse(token=TOKEN, clock=clock)
    provider = plans(fake)
    provider.setup()  # the library's keys, not the caller's own
    with pytest.raises(bc.BadRequestError) as refused:
        provider.create_grant(grant(datetime(2027, 6, 1, tzinfo=UTC), metadata={"crm": "42"}))
    assert refused.value.code == mp.KEY_NOT_REGISTERED
    assert "key(s) crm for credit_grant" in str(refused.value)
    assert "-s custom_field_keys=crm" in str(refused.value)
    with pytest.raises(bc.BadRequestError) as other:  # another 400 stays what it is
        provider.create_grant(grant(datetime(2027, 6, 1, tzinfo=UTC),
                                    customer_id="not-a-uuid"))
    assert other.value.code != mp.KEY_NOT_REGISTERED


@pytest.mark.parametrize("make", [plans, credits])
def test_setup_registers_every_key_once(make: Callable[..., bc.Provider]) -> None:
    fake = make_fake(ready=False, clock=clock)
    provider = make(fake, custom_field_keys="x_account_id, region")
    assert isinstance(provider, mp._MetronomeProvider)
    done = provider.setup()
    entity = provider.entity
    assert set(fake.field_keys[entity]) == set(provider.custom_field_keys())
    assert set(provider.custom_field_keys()) >= {*provider.own_keys, *bc.PROVENANCE_KEYS,
                                                 "x_account_id", "region"}
    assert len(done) == len(provider.custom_field_keys())
    adds = sum(1 for r in fake.requests if r[0] == mp.ADD_KEY)
    assert provider.setup() == []  # idempotent: listKeys first, nothing added
    assert sum(1 for r in fake.requests if r[0] == mp.ADD_KEY) == adds


def test_setup_treats_duplicate_as_done() -> None:
    class Forgetful(MetronomeFake):
        """Lists no keys (say, another process registered them meanwhile)."""

        def _list_keys(self, query: dict[str, str], body: dict[str, Any]) -> Any:
            return {"data": [], "next_page": None}

    fake = Forgetful(token=TOKEN, clock=clock)
    fake.register_custom_field_keys("credit_grant", [tr.PAID_AMOUNT])
    done = plans(fake).setup()
    assert not any(tr.PAID_AMOUNT in line for line in done)
    assert tr.PAID_AMOUNT in fake.field_keys["credit_grant"]


def test_fake_custom_field_endpoints_match_the_sdk() -> None:
    from metronome.types.v1 import CustomFieldListKeysResponse
    from metronome.types.v1.custom_field_add_key_params import CustomFieldAddKeyParams
    from metronome_sdk_checks import check_params

    fake = make_fake(ready=False)
    provider = plans(fake)
    provider.setup()
    for path, _query, body in fake.requests:
        if path == mp.ADD_KEY:
            check_params(CustomFieldAddKeyParams, body)
    listed = fake._list_keys({}, {"entities": ["credit_grant"]})
    for entry in listed["data"]:
        CustomFieldListKeysResponse.model_validate(entry)
    refused = fake.handle(httpx.Request(
        "POST", "https://api.metronome.com/v1/customFields/addKey",
        headers={"authorization": f"Bearer {TOKEN}"},
        json={"entity": "credit_grant", "key": tr.PAID_AMOUNT, "enforce_uniqueness": False}))
    assert refused.status_code == 400
    assert b"Duplicate custom field key" in refused.content


def test_cli_setup(fake: MetronomeFake) -> None:
    fresh = MetronomeFake(token=TOKEN)
    with serve(fresh) as server:
        args = ["setup", "--provider", "metronome-plans", "-s", f"bearer_token={TOKEN}",
                "-s", f"base_url={server.url}", "-s", "custom_field_keys=x_account_id"]
        first = CliRunner().invoke(cli, args)
        assert first.exit_code == 0, first.output
        assert "registered custom field key 'bc_paid_amount' for credit_grant" in first.output
        assert "x_account_id" in first.output
        again = CliRunner().invoke(cli, [*args, "--json"])
        assert again.exit_code == 0, again.output
        assert '"done": []' in again.output
    assert TOKEN not in first.output + again.output


# -- 8.3: record only, and the paid amount reported ---------------------------------------


def test_invoicing_plans_declares_it_and_record_only_never_bills(fake: MetronomeFake) -> None:
    provider = plans(fake, invoice_paid_amount=True)
    assert provider.capabilities.invoices_paid_amount is True
    recorder = provider.record_only()
    assert recorder is not provider
    assert recorder.capabilities.invoices_paid_amount is False
    assert recorder.record_only() is recorder
    paid = grant(datetime(2027, 6, 1, tzinfo=UTC), paid_amount=usd("40.00"))
    stored = recorder.create_grant(paid)
    assert stored.id
    item = fake.grants[stored.id].item
    assert item["paid_amount"]["amount"] == 0
    assert "invoice_id" not in item
    assert item["custom_fields"][tr.PAID_AMOUNT] == "40.00"
    assert stored.paid_amount == usd("40.00")
    assert [a.field for a in stored.adjustments] == ["paid_amount"]
    assert "record_only" in stored.adjustments[0].reason
    recorder.close()  # the copy leaves the shared connection open
    billed = provider.create_grant(paid.model_copy(update={"idempotency_key": "billed"}))
    assert billed.id
    assert fake.grants[billed.id].item["paid_amount"]["amount"] == 4000
    assert "invoice_id" in fake.grants[billed.id].item
    assert not [a for a in billed.adjustments if a.field == "paid_amount"]
    assert plans(fake).record_only().capabilities.invoices_paid_amount is False


def test_paid_amount_sent_as_zero_is_an_adjustment(fake: MetronomeFake) -> None:
    provider = plans(fake)
    assert provider.record_only() is provider
    paid = grant(datetime(2027, 6, 1, tzinfo=UTC), paid_amount=usd("40.00"))
    assert [a.field for a in provider.preview(paid)] == ["paid_amount"]
    stored = provider.create_grant(paid)
    [adjustment] = stored.adjustments
    assert (adjustment.field, adjustment.requested, adjustment.stored) == (
        "paid_amount", "40.00 USD", "0")
    assert "invoice_paid_amount" in adjustment.reason


# -- 8.6: retire timing and retires that find the work done -------------------------------


@pytest.mark.parametrize("make", [plans, credits])
def test_retire_effective_at(make: Callable[..., bc.Provider], fake: MetronomeFake) -> None:
    provider = make(fake)
    assert provider.retire_effective_at("void", NOW) == NOW
    assert provider.retire_effective_at("expire", NOW) == datetime(2026, 11, 10, 13, tzinfo=UTC)
    on_hour = datetime(2026, 11, 10, 12, tzinfo=UTC)
    assert provider.retire_effective_at("expire", on_hour) == on_hour
    assert make(fake, time_alignment="none").retire_effective_at("expire", NOW) == NOW


@pytest.mark.parametrize("make", [plans, credits])
def test_expire_is_no_later_than_retire_effective_at(
    make: Callable[..., bc.Provider], fake: MetronomeFake,
) -> None:
    provider = make(fake)
    for start in (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 10, 12, tzinfo=UTC)):
        created = provider.create_grant(grant(datetime(2027, 6, 1, tzinfo=UTC),
                                              effective_at=start))
        assert created.id
        expired = provider.expire_grant(created.id)
        assert expired.expires_at is not None
        assert expired.expires_at <= provider.retire_effective_at("expire", NOW)


@pytest.mark.parametrize("make", [plans, credits])
def test_expire_of_an_expired_grant_is_already_retired(
    make: Callable[..., bc.Provider], fake: MetronomeFake,
) -> None:
    provider = make(fake)
    created = provider.create_grant(grant(datetime(2027, 6, 1, tzinfo=UTC)))
    assert created.id
    first = provider.expire_grant(created.id)
    edits = len(fake.requests)
    again = provider.expire_grant(created.id)
    assert again.expires_at == first.expires_at
    assert not [r for r in fake.requests[edits:] if r[0].endswith(("editGrant", "updateEndDate"))]


def test_void_of_a_voided_grant_is_already_retired(fake: MetronomeFake) -> None:
    provider = plans(fake)
    created = provider.create_grant(grant(datetime(2027, 6, 1, tzinfo=UTC)))
    assert created.id
    assert provider.void_grant(created.id).status is bc.GrantStatus.VOIDED
    # a crash between voiding and recording it: the retry finds it voided
    with pytest.raises(bc.NotFoundError) as done:
        provider.void_grant(created.id)
    assert done.value.code == mp.ALREADY_VOIDED
    with pytest.raises(bc.NotFoundError) as missing:
        provider.void_grant(str(uuid.uuid4()))
    assert missing.value.code == "not_listed"


# -- C2: replayed --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [plans, credits])
def test_replayed_says_whether_the_create_made_a_grant(
    make: Callable[..., bc.Provider], fake: MetronomeFake,
) -> None:
    provider = make(fake)
    wanted = grant(datetime(2027, 6, 1, tzinfo=UTC))
    first = provider.create_grant(wanted)
    second = provider.create_grant(wanted)  # 409 → found by uniqueness key
    assert (first.replayed, second.replayed) == (False, True)
    assert first == second
    assert first.id == second.id


# -- 8.13: a page costs O(page size) ------------------------------------------------------


@pytest.mark.parametrize("make", [plans, credits])
def test_listing_builds_each_item_once(make: Callable[..., bc.Provider],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(clock=clock)
    provider = make(fake)
    others = str(uuid.uuid4())
    for i in range(30):
        provider.create_grant(grant(datetime(2027, 6, 1, tzinfo=UTC),
                                    customer_id=CUSTOMER if i % 3 else others))
    built: list[int] = []
    for name in ("_grant_view", "_credit_view"):
        original = getattr(fake, name)

        def counting(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            built.append(1)
            return _original(*args, **kwargs)

        monkeypatch.setattr(fake, name, counting)
    listed = list(provider.list_grants(CUSTOMER, page_size=4))
    assert len(listed) == 20
    assert len(built) == 20  # each item viewed once, not once per page
    if isinstance(provider, MetronomePlansProvider):
        built.clear()
        assert len(list(provider.list_grants(page_size=7))) == 30
        assert len(built) == 30


def test_set_up_helper_registers_the_test_keys() -> None:
    fake = set_up(MetronomeFake(token=TOKEN))
    assert "x_account_id" in fake.field_keys["credit_grant"]
    assert not fake.requests


# -- 8.11: the application's own key after a migration ------------------------------------


@pytest.mark.parametrize("target_name", ["metronome-plans", "metronome"])
def test_the_applications_key_finds_the_migrated_grant(
    fake: MetronomeFake, tmp_path: Path, target_name: str,
) -> None:
    """After cut-over, the application re-sends its own create (original amount, its own
    metadata) with its own key: Metronome answers 409, and the library returns the migrated
    grant, which took over that key with what was left and provenance custom fields, instead of
    a ConflictError."""
    source = bc.get_provider("local", path=str(tmp_path / "s.db"))
    welcome = grant(datetime(2027, 6, 1, tzinfo=UTC), idempotency_key="welcome-1",
                    metadata={"n": "1"})
    source.create_grant(welcome)
    source.consume(CUSTOMER, usd("30.00"), at=datetime(2026, 11, 5, tzinfo=UTC),
                   reference="use-1")
    target = plans(fake) if target_name == "metronome-plans" else credits(
        fake, async_http_client=httpx.AsyncClient(transport=FakeTransport(fake)))
    plan = bc.plan_migration(source, target, now=NOW)
    [item] = plan.to_create
    assert item.key == "welcome-1"
    assert item.grant is not None
    assert item.grant.amount == usd("70.00")

    assert asyncio.run(bc.apply_plan(plan, target, journal=tmp_path / "j.db")).created == 1
    [migrated] = list(target.list_grants(CUSTOMER))

    again = target.create_grant(welcome)  # the application, after cut-over
    assert again.replayed is True
    assert again.id == migrated.id
    assert len(list(target.list_grants(CUSTOMER))) == 1


def test_balance_arithmetic_is_exact_not_the_default_28_digits() -> None:
    """Issue 8.7 on Metronome's readers: a usable balance computed from vendor numbers is never
    rounded to Python's default 28 digits (which would overstate what is left)."""
    item = {"balance": {"effective_at": "2026-12-01T00:00:00.000Z",
                        "excluding_pending": Decimal("1E+27"), "including_pending": 0},
            "pending_deductions": [{"amount": Decimal("0.001")}]}
    expires = datetime(2026, 11, 20, tzinfo=UTC)
    assert grant_balance(item, expires_at=expires, now=NOW)[0] == Decimal(
        "999999999999999999999999999.999")
    # a customer credit's total and balance over segments of very different sizes
    config = MetronomeCreditsProvider(bearer_token=TOKEN, product_id=PRODUCT).config
    unit = {"id": "fa2f1b3d-9d52-4951-a099-25991fd394d6", "name": "cloud consumption units"}
    credit = {
        "id": "6162d87b-e5db-4a33-b7f2-76ce6ead4e85", "type": "CREDIT", "priority": 1,
        "product": {"id": PRODUCT, "name": "credits"}, "balance": Decimal("0.001"),
        "access_schedule": {"credit_type": unit, "schedule_items": [
            {"id": "a", "amount": Decimal("0.001"), "starting_at": "2026-11-01T00:00:00.000Z",
             "ending_before": "2026-12-01T00:00:00.000Z"},
            {"id": "b", "amount": Decimal("1E+27"), "starting_at": "2026-12-01T00:00:00.000Z",
             "ending_before": "2027-01-01T00:00:00.000Z"}]}}
    read = tr.credit_from_item(credit, CUSTOMER, config, NOW, provider="metronome")
    assert read.amount.amount == Decimal("1000000000000000000000000000.001")
    assert read.balance is not None
    assert read.balance.amount == Decimal("1000000000000000000000000000.001")
