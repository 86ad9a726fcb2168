"""Issue 18 (points 3-6) on Metronome: the consumption orders read to the end, category edits,
future-dated manual ledger entries, and releasing a uniqueness key on void. Each test here
failed on the code before issue 18 (the failure is named in its docstring)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_credits_metronome import MetronomeCreditsProvider, MetronomePlansProvider
from billing_credits_metronome._ledger import CREDITS_ORDER, PLANS_ORDER, plans_edit_body
from billing_credits_metronome._translate import TranslationConfig
from billing_credits_metronome.testing import MetronomeFake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metronome_helpers import PRODUCT, TOKEN, make_fake, runtime
from metronome_sdk_checks import Recorder, check_exchange

import billing_credits as bc
from billing_credits.testing import FakeTransport

START = datetime(2026, 6, 1, tzinfo=UTC)
END = datetime(2026, 8, 1, tzinfo=UTC)
CONTRACT_A = "c0a1b2c3-0000-4000-8000-00000000000a"
CONTRACT_B = "c0a1b2c3-0000-4000-8000-00000000000b"


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


def _settings(recorder: Recorder, clock: Clock, **extra: Any) -> dict[str, Any]:
    transport = FakeTransport(recorder)
    return {"bearer_token": TOKEN, "runtime": runtime(attempts=1), "clock": clock,
            "http_client": httpx.Client(transport=transport),
            "async_http_client": httpx.AsyncClient(transport=transport), **extra}


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


def sent(recorder: Recorder, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r, _ in recorder.exchanges if r.url.path == path]


def check_all(recorder: Recorder) -> None:
    for request, response in recorder.exchanges:
        check_exchange(request, response)


# -- 3. consumption orders read to the end -----------------------------------------------------


def test_the_plans_order_says_a_further_rule_exists_unread() -> None:
    """Before issue 18 the order declared "Nothing is documented after expiry", though the
    manage-credits page goes on ("If two credit grants h…") in a text no copy could show."""
    assert not PLANS_ORDER.documented_tie_break, "ties after expiry stay reported"
    [*_, expiry] = PLANS_ORDER.rules
    assert "could not be read" in expiry.note
    assert "If two credit grants h" in expiry.note
    assert "Nothing is documented after expiry" not in (PLANS_ORDER.__doc__ or "")
    assert any("could not be read" in rule for rule, _ in PLANS_ORDER.describe())


def _credit(customer: str, amount: str, *, contracts: tuple[str, ...] = ()) -> bc.CreditGrant:
    return bc.CreditGrant(customer_id=customer, amount=usd(amount), name="c",
                          priority=Decimal(1), effective_at=START, expires_at=END,
                          scope=bc.Scope(contract_ids=contracts))


def test_fewer_applicable_contracts_burn_first(
    credits: MetronomeCreditsProvider, fake: MetronomeFake, recorder: Recorder, clock: Clock
) -> None:
    """Before issue 18 the contracts rule was dismissed ("customer-level credits apply to
    none"), ``Usage`` could not name a contract, and the fake ignored applicable_contract_ids.
    prioritization-rules: "number of contracts a commit is applicable" breaks the last tie;
    no applicable_contract_ids = all contracts (credit_create_params.py)."""
    customer = str(uuid.uuid4())
    everywhere = credits.create_grant(_credit(customer, "10.00"))
    only_a = credits.create_grant(_credit(customer, "3.00", contracts=(CONTRACT_A,)))
    a_or_b = credits.create_grant(_credit(customer, "4.00", contracts=(CONTRACT_A, CONTRACT_B)))
    assert only_a.scope.contract_ids == (CONTRACT_A,)
    ids = {"everywhere": everywhere.id, "only_a": only_a.id, "a_or_b": a_or_b.id}
    vendor = {k: (v or "").split(":")[1] for k, v in ids.items()}

    drawn = fake.consume_credits(customer, 900, contract_id=CONTRACT_A, invoice_id="inv-a")
    made = [(entry["amount"], entry["segment_id"]) for entry in drawn]
    assert [-amount for amount, _ in made] == [300, 400, 200]
    assert list(fake.credit_ledgers) == [vendor["only_a"], vendor["a_or_b"],
                                         vendor["everywhere"]]
    drawn_b = fake.consume_credits(customer, 100, contract_id=CONTRACT_B, invoice_id="inv-b")
    assert len(drawn_b) == 1
    assert drawn_b[0]["segment_id"] in {s["id"] for s in fake.credits[vendor["everywhere"]].segments}

    usage = [bc.Usage(customer_id=customer, amount=usd("9.00"), at=clock.now,
                      contract_id=CONTRACT_A, reference="inv-a"),
             bc.Usage(customer_id=customer, amount=usd("1.00"), at=clock.now,
                      contract_id=CONTRACT_B, reference="inv-b")]
    allocation = bc.allocate([everywhere, only_a, a_or_b], usage, CREDITS_ORDER)
    assert [(d.grant_id, d.amount) for d in allocation.draws] == [
        (ids["only_a"], Decimal("3.00")), (ids["a_or_b"], Decimal("4.00")),
        (ids["everywhere"], Decimal("2.00")), (ids["everywhere"], Decimal("1.00"))], \
        "the declared order is the fake's"
    assert allocation.ties == [], "the contracts rule decides: no undocumented tie"
    [balance] = credits.get_balance(customer)
    assert {p.grant_id: p.usable.amount for p in balance.parts} == allocation.remaining
    check_all(recorder)


def test_usage_applicability_is_declared() -> None:
    """Before issue 18 the usage-applicability rule (group-value specifiers, staging copy of the
    prioritization page) was neither declared nor refused."""
    [rule] = [r for r in CREDITS_ORDER.rules if r.name == "fewest_usage_filters"]
    assert "staging" in rule.cites
    grouped = bc.CreditGrant(
        customer_id="c", amount=usd("1"), priority=Decimal(1), effective_at=START,
        scope=bc.Scope(specifiers=(bc.Specifier(pricing_group_values={"region": "eu"}),
                                   bc.Specifier(presentation_group_values={"tier": "a"}))))
    tagged = grouped.model_copy(update={"scope": bc.Scope(specifiers=(
        bc.Specifier(product_tags=("compute",), pricing_group_values={"region": "eu"}),))})
    assert rule.value(grouped) == 2
    assert rule.value(tagged) is None, "a specifier with product tags has no usage applicability"


# -- 4. category edits on Plans ----------------------------------------------------------------


def _grant(customer: str, **fields: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {"amount": usd("5.00"), "name": "g", "priority": Decimal(1),
                            "effective_at": START, "expires_at": END, **fields}
    return bc.CreditGrant(customer_id=customer, **data)


def test_edit_grant_changes_the_category(plans: MetronomePlansProvider,
                                         recorder: Recorder) -> None:
    """editGrant takes ``credit_grant_type`` (types/v1/credit_grant_edit_params.py); before
    issue 18 a category change was refused ("editGrant changes only name and expires_at")."""
    made = plans.create_grant(_grant(str(uuid.uuid4()), category=bc.Category.PAID))
    assert made.category is bc.Category.PAID
    edited = plans.update_grant(made.id or "", category=bc.Category.PROMOTIONAL)
    assert edited.category is bc.Category.PROMOTIONAL, "reads back as edited"
    assert sent(recorder, "/v1/credits/editGrant") == [
        {"id": made.id, "credit_grant_type": "promotional"}]
    labelled = plans.update_grant(made.id or "", category_label="welcome offer")
    assert (labelled.category, labelled.category_label) == (
        bc.Category.PROMOTIONAL, "welcome offer")
    check_all(recorder)


def test_a_category_edit_that_would_not_read_back_is_refused_before_editing(
    plans: MetronomePlansProvider, recorder: Recorder
) -> None:
    """The grant's ``bc_category`` custom field decides its category on read-back and editGrant
    cannot change custom fields: the edit is refused, clearly, and nothing is edited."""
    made = plans.create_grant(_grant(str(uuid.uuid4()), category=bc.Category.PAID,
                                     category_label="trial"))
    assert made.raw is not None
    assert made.raw["custom_fields"]["bc_category"] == "paid"
    with pytest.raises(bc.NotRepresentableError, match="bc_category"):
        plans.update_grant(made.id or "", category=bc.Category.PROMOTIONAL)
    assert sent(recorder, "/v1/credits/editGrant") == []
    assert plans.get_grant(made.id or "").category is bc.Category.PAID


def test_the_edit_message_names_what_edit_grant_changes() -> None:
    """Before issue 18: "editGrant changes only name and expires_at"."""
    config = TranslationConfig(provider="metronome-plans")
    with pytest.raises(bc.NotRepresentableError,
                       match="name, expires_at and credit_grant_type"):
        plans_edit_body("g", bc.GrantUpdate(metadata={"a": "b"}), config, START)


# -- 5. future-dated manual ledger entries -----------------------------------------------------


def test_a_balance_says_whether_future_manual_entries_count(
    credits: MetronomeCreditsProvider, fake: MetronomeFake, clock: Clock
) -> None:
    """Metronome's Credit.balance includes "future-dated manual ledger entries". Before issue 18
    ``get_balance(c)`` counted a manual entry dated tomorrow and ``get_balance(c, at=now)``
    did not (they differed by 10.00), and neither said so."""
    customer = str(uuid.uuid4())
    made = credits.create_grant(_grant(customer, amount=usd("50.00")))
    credit_id = (made.id or "").split(":")[1]
    fake.add_manual_entry(credit_id, Decimal(-1000), clock.now + timedelta(days=1))
    [now] = credits.get_balance(customer)
    [at_now] = credits.get_balance(customer, at=clock.now)
    assert now.usable == usd("40.00")
    assert at_now.usable == now.usable
    assert any("future-dated ones too" in n for n in now.notes)
    assert any("future-dated ones too" in n for n in at_now.notes)
    [before] = credits.get_balance(customer, at=clock.now - timedelta(days=1))
    assert before.usable == usd("50.00")
    assert any("excludes every ledger entry dated after as_of" in n for n in before.notes)


# -- 6. releasing a uniqueness key on void -----------------------------------------------------


def test_release_uniqueness_key_lets_a_voided_grants_key_create_again(
    recorder: Recorder, clock: Clock
) -> None:
    """voidGrant ``release_uniqueness_key`` ("resets the uniqueness key on this grant so it can
    be re-used", types/v1/credit_grant_void_params.py). Before issue 18 the provider never
    sent it: creating again under the key was a ConflictError whatever the settings."""
    customer = str(uuid.uuid4())
    wanted = _grant(customer, idempotency_key="migrate-42")
    with MetronomePlansProvider(**_settings(recorder, clock)) as plain:
        assert plain.release_uniqueness_key is False, "off by default"
        first = plain.create_grant(wanted)
        plain.void_grant(first.id or "")
        assert sent(recorder, "/v1/credits/voidGrant") == [{"id": first.id}]
        with pytest.raises(bc.ConflictError):
            plain.create_grant(wanted)
        releasing = plain.releasing_keys()
        assert releasing is not plain
        assert releasing.release_uniqueness_key
        second = releasing.create_grant(wanted.model_copy(update={"idempotency_key": "m-43"}))
        releasing.void_grant(second.id or "")
        assert sent(recorder, "/v1/credits/voidGrant")[-1] == {
            "id": second.id, "release_uniqueness_key": True}
        again = plain.create_grant(wanted.model_copy(update={"idempotency_key": "m-43"}))
        assert again.id != second.id
        assert again.replayed is False, "a new grant under the released key"
    with MetronomePlansProvider(release_uniqueness_key="on",
                                **_settings(recorder, clock)) as configured:
        assert configured.releasing_keys() is configured
    check_all(recorder)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(credits_=st.lists(st.tuples(st.sampled_from(["0", "1"]),
                                   st.integers(min_value=1, max_value=3000),
                                   st.sampled_from([(), (CONTRACT_A,), (CONTRACT_A, CONTRACT_B)])),
                         min_size=1, max_size=5),
       usage=st.lists(st.tuples(st.integers(min_value=1, max_value=2500),
                                st.sampled_from([None, CONTRACT_A, CONTRACT_B])),
                      min_size=1, max_size=4))
def test_the_fake_and_the_declared_order_agree_on_contracts(
    credits_: list[tuple[str, int, tuple[str, ...]]], usage: list[tuple[int, str | None]]
) -> None:
    """Whatever the credits' contracts and the usage's contract, the fake draws exactly what
    ``CREDITS_ORDER`` gives the engine, and the balance agrees to the cent."""
    clock = Clock()
    fake = make_fake(clock=clock)
    recorder = Recorder(fake)
    customer = str(uuid.uuid4())
    with MetronomeCreditsProvider(product_id=PRODUCT, **_settings(recorder, clock)) as provider:
        made = [provider.create_grant(_credit(customer, str(Decimal(cents).scaleb(-2)),
                                              contracts=contracts).model_copy(
                                                  update={"priority": Decimal(priority)}))
                for priority, cents, contracts in credits_]
        for n, (cents, contract) in enumerate(usage):
            fake.consume_credits(customer, cents, contract_id=contract, invoice_id=f"inv-{n}")
        expected = bc.allocate(made, [
            bc.Usage(customer_id=customer, amount=usd(str(Decimal(c).scaleb(-2))), at=clock.now,
                     contract_id=contract, reference=f"inv-{n}")
            for n, (c, contract) in enumerate(usage)], CREDITS_ORDER)
        drawn: dict[str, Decimal] = {}
        for entry in provider.list_ledger(customer):
            if entry.kind is bc.LedgerKind.CONSUMED:
                drawn[entry.grant_id or ""] = drawn.get(entry.grant_id or "", Decimal(0)) \
                    - entry.amount.amount
        assert drawn == {k: v for k, v in expected.consumed().items() if v}
        [balance] = provider.get_balance(customer)
        assert {p.grant_id: p.usable.amount for p in balance.parts} == expected.remaining


def test_a_product_only_specifier_credit_is_drawn_by_the_fake_as_by_the_engine(
    credits: MetronomeCreditsProvider, fake: MetronomeFake, clock: Clock
) -> None:
    """Review of issue 18: the engine draws a credit whose specifier names only a product
    (``admits``; CommitSpecifier.product_id "the specifier will only apply to the product with
    the specified ID"), but the fake skipped every credit with specifiers, so the fake and
    ``CREDITS_ORDER`` disagreed (the fake drew the all-usage credit instead) while the README
    said neither draws such a credit."""
    customer = str(uuid.uuid4())
    only_product = credits.create_grant(_credit(customer, "3.00").model_copy(update={
        "scope": bc.Scope(specifiers=(bc.Specifier(product_id=PRODUCT),))}))
    everywhere = credits.create_grant(_credit(customer, "10.00").model_copy(update={
        "priority": Decimal(2)}))
    grouped = credits.create_grant(_credit(customer, "5.00").model_copy(update={
        "priority": Decimal(0), "scope": bc.Scope(specifiers=(
            bc.Specifier(product_id=PRODUCT, pricing_group_values={"region": "eu"}),))}))
    fake.consume_credits(customer, 400, product_id=PRODUCT, invoice_id="inv-1")
    expected = bc.allocate([only_product, everywhere, grouped], [
        bc.Usage(customer_id=customer, amount=usd("4.00"), at=clock.now, product_id=PRODUCT,
                 reference="inv-1")], CREDITS_ORDER)
    assert [(d.grant_id, d.amount) for d in expected.draws] == [
        (only_product.id, Decimal("3.00")), (everywhere.id, Decimal("1.00"))]
    [balance] = credits.get_balance(customer)
    assert {p.grant_id: p.usable.amount for p in balance.parts} == expected.remaining


def test_manual_entries_of_a_credit_with_no_open_segment_count_nothing() -> None:
    """Review of issue 18: "expired and upcoming credit or commit segments contribute 0 to the
    balance ... All manual ledger entries associated with active credit or commit segments are
    included" (metronome-sdk ``types/shared/credit.py`` ``Credit.balance``). A credit listed for
    a moment in a gap between its segments (no segment open) counted its +5.00 manual entry as
    usable; it now counts nothing, as Metronome's balance would."""
    from billing_credits_metronome._ledger import credits_balances_at

    usd_cents = {"id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "name": "USD (cents)"}
    item = {"id": "cr-gap", "type": "CREDIT", "priority": 1,
            "product": {"id": PRODUCT, "name": "p"},
            "access_schedule": {"credit_type": usd_cents, "schedule_items": [
                {"id": "s1", "amount": 1000, "starting_at": "2026-01-01T00:00:00Z",
                 "ending_before": "2026-02-01T00:00:00Z"},
                {"id": "s2", "amount": 1000, "starting_at": "2026-03-01T00:00:00Z",
                 "ending_before": "2026-04-01T00:00:00Z"}]},
            "ledger": [{"type": "CREDIT_MANUAL", "amount": 500, "reason": "goodwill",
                        "timestamp": "2026-01-15T00:00:00Z"}]}
    config = TranslationConfig(provider="metronome")
    gap = datetime(2026, 2, 15, tzinfo=UTC)
    [balance] = credits_balances_at([item], "cus", config, gap, now=gap)
    assert balance.usable == usd("0")
    [inside] = credits_balances_at([item], "cus", config, datetime(2026, 3, 15, tzinfo=UTC),
                                   now=gap)
    assert inside.usable == usd("15.00"), "an open segment: its amount plus the manual entry"
