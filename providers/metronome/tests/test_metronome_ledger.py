"""Issue 11 on Metronome: balances, ledgers, updates and both consumption orders, against
``MetronomeFake`` burning grants and credits down in Metronome's documented order; every
request and response checked against the metronome-sdk types."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_credits_metronome import MetronomeCreditsProvider, MetronomePlansProvider
from billing_credits_metronome._ledger import (
    CREDITS_ORDER,
    PLANS_ORDER,
    credit_entries,
    plans_edit_body,
    plans_entry,
)
from billing_credits_metronome._translate import TranslationConfig
from billing_credits_metronome.testing import MetronomeFake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metronome_helpers import PRODUCT, TOKEN, make_fake, runtime
from metronome_sdk_checks import Recorder, check_exchange

import billing_credits as bc
from billing_credits.testing import FakeTransport

START = datetime(2026, 6, 1, tzinfo=UTC)
P1 = "0b0f7d4e-1c1e-4c52-9d0e-3f6a7c1b2a01"
P2 = "0b0f7d4e-1c1e-4c52-9d0e-3f6a7c1b2a02"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 15, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> MetronomeFake:
    return make_fake(clock=clock)


@pytest.fixture
def recorder(fake: MetronomeFake) -> Recorder:
    return Recorder(fake)


def _settings(recorder: Recorder, clock: Clock) -> dict[str, Any]:
    transport = FakeTransport(recorder)
    return {"bearer_token": TOKEN, "runtime": runtime(), "clock": clock,
            "http_client": httpx.Client(transport=transport),
            "async_http_client": httpx.AsyncClient(transport=transport)}


@pytest.fixture
def plans(recorder: Recorder, clock: Clock) -> Iterator[MetronomePlansProvider]:
    with MetronomePlansProvider(**_settings(recorder, clock)) as provider:
        yield provider


@pytest.fixture
def credits(recorder: Recorder, clock: Clock) -> Iterator[MetronomeCreditsProvider]:
    with MetronomeCreditsProvider(product_id=PRODUCT, **_settings(recorder, clock)) as provider:
        yield provider


def usd(text: str) -> bc.Money:
    return bc.Money(amount=Decimal(text), currency="USD")


def grant(customer: str, amount: str, priority: str, *, ends: datetime,
          products: tuple[str, ...] = (), name: str = "g") -> bc.CreditGrant:
    return bc.CreditGrant(customer_id=customer, amount=usd(amount), name=name,
                          priority=Decimal(priority), effective_at=START, expires_at=ends,
                          scope=bc.Scope(product_ids=products) if products else bc.Scope())


def check_all(recorder: Recorder) -> None:
    assert recorder.exchanges
    for request, response in recorder.exchanges:
        check_exchange(request, response)


# -- metronome-plans ---------------------------------------------------------------------------


def test_plans_burn_down_follows_metronomes_order(
    plans: MetronomePlansProvider, fake: MetronomeFake, recorder: Recorder, clock: Clock
) -> None:
    """Priority first, the sooner expiry on a tie, product-scoped grants only for their
    products; balances, listEntries and the ledger say exactly that."""
    customer = str(uuid.uuid4())
    late = plans.create_grant(grant(customer, "10.00", "1", ends=datetime(2026, 7, 1, tzinfo=UTC),
                                    name="late"))
    soon = plans.create_grant(grant(customer, "10.00", "1",
                                    ends=datetime(2026, 6, 20, tzinfo=UTC), name="soon"))
    scoped = plans.create_grant(grant(customer, "5.00", "0.5", products=(P1,),
                                      ends=datetime(2026, 7, 1, tzinfo=UTC), name="scoped"))
    last = plans.create_grant(grant(customer, "8.00", "2", ends=datetime(2026, 7, 1, tzinfo=UTC),
                                    name="last"))
    ids = {g.name: g.id or "" for g in (late, soon, scoped, last)}

    made = fake.consume_grants(customer, 1500, invoice_id="inv-1")
    assert [(d["credit_grant_id"], d["amount"]) for d in made] == [
        (ids["soon"], 1000), (ids["late"], 500)]
    made = fake.consume_grants(customer, 300, product_id=P1, invoice_id="inv-2")
    assert [d["credit_grant_id"] for d in made] == [ids["scoped"]]
    fake.consume_grants(customer, 100, pending=True, invoice_id="inv-draft")

    usage = [bc.Usage(customer_id=customer, amount=usd("15.00"), at=clock.now)]
    allocation = bc.allocate([late, soon, scoped, last], usage, PLANS_ORDER)
    assert [(d.grant_id, d.amount) for d in allocation.draws] == [
        (ids["soon"], Decimal("10.00")), (ids["late"], Decimal("5.00"))], \
        "the declared order is the fake's"

    [balance] = plans.get_balance(customer)
    assert balance.usable == usd("15.00")
    assert balance.pending == usd("1.00")
    assert {p.grant_id: (p.usable.amount, p.pending.amount) for p in balance.parts} == {
        ids["late"]: (Decimal("5.00"), Decimal("1.00")), ids["soon"]: (0, 0),
        ids["scoped"]: (Decimal("2.00"), 0), ids["last"]: (Decimal("8.00"), 0)}
    assert "listGrants" in balance.source

    entries = list(plans.list_ledger(customer))
    assert [(e.kind.value, e.grant_id, e.amount.amount, e.reference) for e in entries] == [
        ("granted", ids["late"], Decimal("10.00"), None),
        ("granted", ids["soon"], Decimal("10.00"), None),
        ("granted", ids["scoped"], Decimal("5.00"), None),
        ("granted", ids["last"], Decimal("8.00"), None),
        ("consumed", ids["soon"], Decimal("-10.00"), "inv-1"),
        ("consumed", ids["late"], Decimal("-5.00"), "inv-1"),
        ("consumed", ids["scoped"], Decimal("-3.00"), "inv-2"),
    ]
    assert entries[-1].running_balance == usd("15.00"), "Metronome's running balance"

    # Time passes: what was left of 'late' (posted) expires on 1 July.
    clock.now = datetime(2026, 7, 2, tzinfo=UTC)
    expired = list(plans.list_ledger(customer, grant_id=ids["scoped"]))
    assert [(e.kind, e.amount.amount) for e in expired] == [
        (bc.LedgerKind.GRANTED, Decimal("5.00")), (bc.LedgerKind.CONSUMED, Decimal("-3.00")),
        (bc.LedgerKind.EXPIRED, Decimal("-2.00"))]
    assert expired[-1].at == datetime(2026, 7, 1, tzinfo=UTC)
    since = list(plans.list_ledger(customer, since=datetime(2026, 6, 30, tzinfo=UTC)))
    assert {e.kind for e in since} == {bc.LedgerKind.EXPIRED}
    assert plans.get_balance(customer) == []
    check_all(recorder)


def test_plans_update_and_async(plans: MetronomePlansProvider, recorder: Recorder,
                                clock: Clock) -> None:
    customer = str(uuid.uuid4())
    created = plans.create_grant(grant(customer, "4.00", "1",
                                       ends=datetime(2026, 7, 1, tzinfo=UTC)))
    grant_id = created.id or ""
    renamed = plans.update_grant(grant_id, name="Renamed",
                                 expires_at=datetime(2026, 8, 1, 0, 30, tzinfo=UTC))
    assert renamed.name == "Renamed"
    assert renamed.expires_at == datetime(2026, 8, 1, 1, tzinfo=UTC)
    assert [a.field for a in renamed.adjustments] == ["expires_at"], "ceiled to the hour"

    async def run() -> tuple[list[bc.Balance], list[bc.LedgerEntry], bc.CreditGrant]:
        balances = await plans.aget_balance(customer, unit="USD")
        entries = [e async for e in plans.alist_ledger(customer)]
        updated = await plans.aupdate_grant(grant_id, expires_at=datetime(2026, 9, 1, tzinfo=UTC))
        return balances, entries, updated

    balances, entries, updated = asyncio.run(run())
    assert balances[0].usable == usd("4.00")
    assert [e.kind for e in entries] == [bc.LedgerKind.GRANTED]
    assert updated.expires_at == datetime(2026, 9, 1, tzinfo=UTC)
    check_all(recorder)


def test_plans_refusals_come_before_any_request(plans: MetronomePlansProvider,
                                                recorder: Recorder) -> None:
    with pytest.raises(bc.NotRepresentableError, match="metadata"):
        plans.update_grant(str(uuid.uuid4()), metadata={"a": "b"})
    with pytest.raises(bc.NotRepresentableError, match="at"):
        plans.get_balance(str(uuid.uuid4()), at=START)
    with pytest.raises(bc.UnsupportedOperationError):
        plans.consume(str(uuid.uuid4()), usd("1.00"), reference="r")
    assert recorder.exchanges == []


# -- metronome (customer credits) --------------------------------------------------------------


def test_credits_burn_down_follows_metronomes_prioritisation(
    credits: MetronomeCreditsProvider, fake: MetronomeFake, recorder: Recorder, clock: Clock
) -> None:
    """Priority, then fewer applicable products, then the earlier end; balances and
    customerBalances/list ledgers say exactly that."""
    customer = str(uuid.uuid4())
    broad = credits.create_grant(grant(customer, "10.00", "1",
                                       ends=datetime(2026, 7, 1, tzinfo=UTC), name="broad"))
    narrow = credits.create_grant(grant(customer, "10.00", "1", products=(P1,),
                                        ends=datetime(2026, 8, 1, tzinfo=UTC), name="narrow"))
    early = credits.create_grant(grant(customer, "6.00", "1",
                                       ends=datetime(2026, 6, 20, tzinfo=UTC), name="early"))
    top = credits.create_grant(grant(customer, "4.00", "0",
                                     ends=datetime(2026, 7, 1, tzinfo=UTC), name="top"))
    ids = {g.name: g.id or "" for g in (broad, narrow, early, top)}
    vendor = {name: grant_id.split(":")[1] for name, grant_id in ids.items()}

    made = fake.consume_credits(customer, 1200, product_id=P1, invoice_id="inv-1")
    assert [-d["amount"] for d in made] == [400, 800]
    made = fake.consume_credits(customer, 1000, product_id=P2, invoice_id="inv-2")
    assert [-d["amount"] for d in made] == [600, 400]
    assert list(fake.credit_ledgers) == [vendor["top"], vendor["narrow"],
                                                vendor["early"], vendor["broad"]]

    grants = [broad, narrow, early, top]
    usage = [bc.Usage(customer_id=customer, amount=usd("12.00"), at=clock.now, product_id=P1),
             bc.Usage(customer_id=customer, amount=usd("10.00"), at=clock.now, product_id=P2)]
    allocation = bc.allocate(grants, usage, CREDITS_ORDER)
    assert [(d.grant_id, d.amount) for d in allocation.draws] == [
        (ids["top"], Decimal("4.00")), (ids["narrow"], Decimal("8.00")),
        (ids["early"], Decimal("6.00")), (ids["broad"], Decimal("4.00"))], \
        "the declared order is the fake's"

    [balance] = credits.get_balance(customer)
    assert balance.usable == usd("8.00")
    assert balance.pending == usd("0")
    assert {p.grant_id: p.usable.amount for p in balance.parts} == {
        ids["broad"]: Decimal("6.00"), ids["narrow"]: Decimal("2.00"), ids["early"]: 0,
        ids["top"]: 0}

    entries = list(credits.list_ledger(customer))
    consumed = [(e.grant_id, e.amount.amount, e.reference) for e in entries
                if e.kind is bc.LedgerKind.CONSUMED]
    assert sorted(consumed) == sorted([
        (ids["top"], Decimal("-4.00"), "inv-1"), (ids["narrow"], Decimal("-8.00"), "inv-1"),
        (ids["early"], Decimal("-6.00"), "inv-2"), (ids["broad"], Decimal("-4.00"), "inv-2")])
    granted = {e.grant_id: e.amount.amount for e in entries if e.kind is bc.LedgerKind.GRANTED}
    assert granted == {ids["broad"]: Decimal("10.00"), ids["narrow"]: Decimal("10.00"),
                       ids["early"]: Decimal("6.00"), ids["top"]: Decimal("4.00")}

    # As of other moments (covering_date + ledgers): before the usage, now, and ahead.
    assert credits.capabilities.balance_as_of == "any"
    [before] = credits.get_balance(customer, at=datetime(2026, 6, 2, tzinfo=UTC))
    assert before.usable == usd("30.00")
    [same] = credits.get_balance(customer, at=clock.now)
    assert (same.usable, {p.grant_id: p.usable.amount for p in same.parts}) == (
        balance.usable, {p.grant_id: p.usable.amount for p in balance.parts})
    [ahead] = credits.get_balance(customer, at=datetime(2026, 7, 15, tzinfo=UTC))
    assert ahead.usable == usd("2.00")
    assert [p.grant_id for p in ahead.parts] == [ids["narrow"]]

    # 2 July: 'broad' ended with 6.00 left; the ledger says so and the balance drops it.
    clock.now = datetime(2026, 7, 2, tzinfo=UTC)
    later = list(credits.list_ledger(customer, grant_id=ids["broad"]))
    assert [(e.kind, e.amount.amount) for e in later] == [
        (bc.LedgerKind.GRANTED, Decimal("10.00")), (bc.LedgerKind.CONSUMED, Decimal("-4.00")),
        (bc.LedgerKind.EXPIRED, Decimal("-6.00"))]
    [after] = credits.get_balance(customer)
    assert after.usable == usd("2.00")
    total = bc.exact_sum(e.amount.amount for e in credits.list_ledger(customer))
    assert total == after.usable.amount, "the ledger sums to the balance"
    check_all(recorder)


def test_credits_update_can_only_shorten(credits: MetronomeCreditsProvider, recorder: Recorder,
                                         clock: Clock) -> None:
    customer = str(uuid.uuid4())
    created = credits.create_grant(grant(customer, "4.00", "1",
                                         ends=datetime(2026, 7, 1, tzinfo=UTC)))
    grant_id = created.id or ""
    shorter = credits.update_grant(grant_id, expires_at=datetime(2026, 6, 25, tzinfo=UTC))
    assert shorter.expires_at == datetime(2026, 6, 25, tzinfo=UTC)
    sent = [r for r, _ in recorder.exchanges if r.url.path.endswith("updateEndDate")]
    assert len(sent) == 1
    with pytest.raises(bc.NotRepresentableError, match="only shorten"):
        credits.update_grant(grant_id, expires_at=datetime(2026, 9, 1, tzinfo=UTC))
    with pytest.raises(bc.NotRepresentableError, match="name"):
        credits.update_grant(grant_id, name="x")
    assert credits.capabilities.updatable_fields == {"expires_at"}
    assert asyncio.run(credits.aget_balance(customer))[0].usable == usd("4.00")
    check_all(recorder)


def test_the_declared_orders_cite_metronome() -> None:
    assert MetronomePlansProvider.consumption_order is PLANS_ORDER
    assert MetronomeCreditsProvider.consumption_order is CREDITS_ORDER
    assert [r.name for r in PLANS_ORDER.rules] == ["priority", "expires_at"]
    assert [r.name for r in CREDITS_ORDER.rules] == [
        "priority", "contract_before_customer", "cost_basis", "fewest_products",
        "fewest_usage_filters", "expires_at", "starts_at", "fewest_contracts"]
    assert all("metronome" in r.cites for r in (*PLANS_ORDER.rules, *CREDITS_ORDER.rules))
    assert not PLANS_ORDER.documented_tie_break
    assert not CREDITS_ORDER.documented_tie_break
    assert "listGrants" in MetronomePlansProvider.remaining_source
    assert "customerCredits/list" in MetronomeCreditsProvider.remaining_source


# -- pure translation --------------------------------------------------------------------------

CONFIG = TranslationConfig(provider="metronome-plans")
USD = {"id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "name": "USD (cents)"}


@given(cents=st.integers(min_value=1, max_value=10**12), negative=st.booleans())
def test_deductions_read_as_decreases_whatever_their_sign(cents: int, negative: bool) -> None:
    """Metronome's docs show deductions as positive amounts, the SDK calls an entry's amount
    the change to the balance: both read as the same exact decrease."""
    raw = {"amount": -cents if negative else cents, "created_by": "Metronome System",
           "credit_grant_id": "g", "effective_at": "2026-06-01T00:00:00.000Z",
           "reason": "Automated invoice deduction", "running_balance": 0, "invoice_id": "inv"}
    entry = plans_entry(raw, "c", USD, CONFIG)
    assert entry.kind is bc.LedgerKind.CONSUMED
    assert entry.amount == usd(str(Decimal(-cents).scaleb(-2)))
    credit = {"id": "x", "access_schedule": {"credit_type": USD}, "ledger": [
        {"type": "CREDIT_AUTOMATED_INVOICE_DEDUCTION", "amount": raw["amount"],
         "invoice_id": "inv", "segment_id": "s", "timestamp": "2026-06-01T00:00:00.000Z"}]}
    [read] = credit_entries(credit, "c", CONFIG)
    assert read.amount == entry.amount
    assert read.grant_id == "c:x"


def test_unreadable_entries_are_invalid_responses() -> None:
    with pytest.raises(bc.InvalidResponseError):
        credit_entries({"id": "x", "ledger": [{"type": "CREDIT_MANUAL", "amount": "lots",
                                               "timestamp": "2026-06-01T00:00:00Z"}]},
                       "c", CONFIG)
    manual = credit_entries({"id": "x", "ledger": [
        {"type": "CREDIT_MANUAL", "amount": -250, "reason": "goodwill",
         "timestamp": "2026-06-01T00:00:00Z"}]}, "c", CONFIG)
    assert [(e.kind, e.amount) for e in manual] == [(bc.LedgerKind.ADJUSTED, usd("-2.50"))]


def test_edit_body_sends_never_as_the_far_future_date() -> None:
    body, adjustments = plans_edit_body("g", bc.GrantUpdate(expires_at=None), CONFIG, START)
    assert body == {"id": "g", "expires_at": "2099-12-31T00:00:00.000Z"}
    assert adjustments == []
    with pytest.raises(bc.NotRepresentableError, match="name"):
        plans_edit_body("g", bc.GrantUpdate(name=""), CONFIG, START)


@pytest.mark.parametrize("name", ["metronome-plans", "metronome"])
def test_a_vendor_repeating_its_cursor_cannot_loop_a_balance(name: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [], "next_page": "again"})

    transport = httpx.MockTransport(answer)
    settings: dict[str, Any] = {"product_id": PRODUCT} if name == "metronome" else {}
    provider = bc.get_provider(name, bearer_token=TOKEN, runtime=runtime(attempts=1),
                               http_client=httpx.Client(transport=transport), **settings)
    with provider, pytest.raises(bc.InvalidResponseError, match="cursor"):
        provider.get_balance(str(uuid.uuid4()))


ENDS = [datetime(2026, 6, 20, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC),
        datetime(2026, 8, 1, tzinfo=UTC)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["metronome-plans", "metronome"]),
       grants=st.lists(st.tuples(st.sampled_from(["0", "1", "2"]),
                                 st.integers(min_value=1, max_value=5000),
                                 st.sampled_from([(), (P1,), (P1, P2)]),
                                 st.sampled_from(ENDS)), min_size=1, max_size=6),
       usage=st.lists(st.tuples(st.integers(min_value=1, max_value=4000),
                                st.sampled_from([None, P1, P2])), min_size=1, max_size=5))
def test_the_fake_burns_in_the_declared_order(
    name: str, grants: list[tuple[str, int, tuple[str, ...], datetime]],
    usage: list[tuple[int, str | None]],
) -> None:
    """Whatever the grants and usage, the fake draws exactly what the provider's declared
    consumption order gives the engine (ties by grant id on both sides), and the balance
    agrees with it to the cent."""
    clock = Clock()
    fake = make_fake(clock=clock)
    recorder = Recorder(fake)
    settings_: dict[str, Any] = _settings(recorder, clock)
    provider: bc.Provider = (MetronomePlansProvider(**settings_) if name == "metronome-plans"
                             else MetronomeCreditsProvider(product_id=PRODUCT, **settings_))
    customer = str(uuid.uuid4())
    with provider:
        created = [provider.create_grant(grant(customer, str(Decimal(cents).scaleb(-2)),
                                               priority, ends=end, products=products))
                   for priority, cents, products, end in grants]
        consume = fake.consume_grants if name == "metronome-plans" else fake.consume_credits
        for n, (cents, product) in enumerate(usage):
            consume(customer, cents, product_id=product, invoice_id=f"inv-{n}")
        order = provider.consumption_order
        assert order is not None
        expected = bc.allocate(created, [
            bc.Usage(customer_id=customer, amount=usd(str(Decimal(c).scaleb(-2))), at=clock.now,
                     product_id=product, reference=f"inv-{n}")
            for n, (c, product) in enumerate(usage)], order)
        drawn: dict[str, Decimal] = {}
        for entry in provider.list_ledger(customer):
            if entry.kind is bc.LedgerKind.CONSUMED:
                key = entry.grant_id or ""
                drawn[key] = drawn.get(key, Decimal(0)) - entry.amount.amount
        assert drawn == {k: v for k, v in expected.consumed().items() if v}
        [balance] = provider.get_balance(customer)
        assert {p.grant_id: p.usable.amount for p in balance.parts} == expected.remaining


def test_the_fake_refuses_like_metronome(fake: MetronomeFake, clock: Clock) -> None:
    def post(path: str, body: dict[str, Any], **query: str) -> httpx.Response:
        with httpx.Client(transport=FakeTransport(fake)) as client:
            return client.post(f"https://api.metronome.com{path}", json=body, params=query,
                               headers={"Authorization": f"Bearer {TOKEN}"})

    future = {"customer_ids": [str(uuid.uuid4())], "ending_before": "2030-01-01T00:00:00Z"}
    assert post("/v1/credits/listEntries", future).status_code == 400
    assert post("/v1/credits/listEntries", {}, sort="sideways").status_code == 400
    assert post("/v1/credits/listEntries", {}, limit="5").status_code == 400, "no limit here"
    assert post("/v1/contracts/customerBalances/list", {}).status_code == 400
    assert post("/v1/contracts/customerBalances/list",
                {"customer_id": str(uuid.uuid4()), "limit": 26}).status_code == 400
    ok = post("/v1/contracts/customerBalances/list", {"customer_id": str(uuid.uuid4())})
    assert ok.json() == {"data": [], "next_page": None}


@pytest.mark.parametrize("answer", [
    {"data": "nope", "next_page": None},
    {"data": [{"customer_id": "c", "ledgers": [{"credit_type": USD, "entries": [7]}]}]},
    {"data": [{"customer_id": "c", "ledgers": 3}]},
])
def test_a_malformed_ledger_is_an_invalid_response(answer: dict[str, Any]) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    provider = bc.get_provider("metronome-plans", bearer_token=TOKEN, runtime=runtime(attempts=1),
                               http_client=httpx.Client(transport=transport))
    with provider, pytest.raises(bc.InvalidResponseError):
        list(provider.list_ledger("c"))
