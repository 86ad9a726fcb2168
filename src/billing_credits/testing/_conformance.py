"""The provider conformance suite: what every provider must do, checked the same way.

Subclass ``ProviderConformance`` in a test module and give it a ``provider`` fixture::

    class TestMyProvider(ProviderConformance):
        @pytest.fixture
        def provider(self, tmp_path):
            with MyProvider(base_url=...) as provider:
                yield provider

Tests for capabilities a provider does not declare skip themselves; tests for what it refuses
check that the refusal names the field and sent nothing (``provider.runtime.calls`` unchanged).
Override ``customer_id``, ``missing_id``, ``ids`` or ``sample_grant`` when a provider needs
other identifiers or values.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import billing_credits as bc

__all__ = ["ProviderConformance"]

Variant = Callable[["ProviderConformance", bc.Provider], bc.CreditGrant]


def _hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _requested(grant: bc.CreditGrant) -> dict[str, Any]:
    fields = grant.model_dump(exclude=set(bc.CreditGrant.read_back_fields()))
    for segment in fields.get("schedule") or ():
        segment.pop("id", None)
    return fields


def _plain_priority(domain: bc.PriorityDomain) -> Decimal:
    return Decimal(10) if domain.contains(Decimal(10)) else domain.nearest(Decimal(10))


def _variants() -> tuple[dict[str, Variant], dict[str, tuple[str, Variant]]]:
    def sample(**changes: Any) -> Variant:
        return lambda suite, provider: suite.sample_grant(provider, **changes)

    def scoped(part: str, kind: str, count: int) -> Variant:
        def build(suite: ProviderConformance, provider: bc.Provider) -> bc.CreditGrant:
            scope = bc.Scope.model_validate({part: suite.ids(kind, count)})
            return suite.sample_grant(provider, scope=scope)
        return build

    def priority(value: str) -> Variant:
        return sample(priority=Decimal(value))

    def scheduled(segments: int) -> Variant:
        def build(suite: ProviderConformance, provider: bc.Provider) -> bc.CreditGrant:
            start = suite.start()
            items = [
                bc.Segment(amount=Decimal(f"{i + 1}.25"), starts_at=start + timedelta(days=30 * i),
                           ends_before=start + timedelta(days=30 * (i + 1)))
                for i in range(segments)
            ]
            total = bc.exact_sum(s.amount for s in items)
            base = suite.sample_grant(provider)
            return suite.sample_grant(
                provider, amount=base.amount.with_amount(total), schedule=tuple(items),
                effective_at=None, expires_at=items[-1].ends_before,
            )
        return build

    def custom_unit(suite: ProviderConformance, provider: bc.Provider) -> bc.CreditGrant:
        unit = bc.CreditUnit(id=suite.ids("unit", 1)[0], name="cloud consumption units")
        return suite.sample_grant(provider, amount=bc.Money(amount=Decimal("100"), unit=unit))

    def paid(suite: ProviderConformance, provider: bc.Provider) -> bc.CreditGrant:
        base = suite.sample_grant(provider)
        return suite.sample_grant(provider, category=bc.Category.PAID,
                                  paid_amount=base.amount.with_amount(Decimal("7.50")))

    def long_name(suite: ProviderConformance, provider: bc.Provider) -> bc.CreditGrant:
        limit = provider.capabilities.name_max_length or 1000
        return suite.sample_grant(provider, name="n" * (limit + 1))

    def many_prices(suite: ProviderConformance, provider: bc.Provider) -> bc.CreditGrant:
        count = (provider.capabilities.max_price_ids or 20) + 1
        return suite.sample_grant(provider, scope=bc.Scope(price_ids=suite.ids("price", count)))

    round_trips: dict[str, Variant] = {
        "name_and_reason": sample(name="Spring promotion", reason="Make good for an outage"),
        "promotional_with_label": sample(category=bc.Category.PROMOTIONAL, category_label="trial"),
        "paid_with_cost_basis": paid,
        "metadata": sample(metadata={"order": "ord-42", "region": "eu-west", "note": "a b c"}),
        "no_expiry": sample(expires_at=None),
        "no_priority": sample(priority=None),
        "priority_zero": priority("0"),
        "priority_hundred": priority("100"),
        "priority_fraction": priority("0.5"),
        "custom_unit": custom_unit,
        "zero_decimal_currency": sample(amount=bc.Money(amount=Decimal("1200"), currency="JPY")),
        "scope_products_in_order": scoped("product_ids", "product", 3),
        "scope_product_tags": sample(scope=bc.Scope(product_tags=("compute", "storage"))),
        "scope_prices": scoped("price_ids", "price", 2),
        "scope_metered_prices": sample(scope=bc.Scope(metered_prices_only=True)),
        "scope_contracts": scoped("contract_ids", "contract", 2),
        "scope_specifiers": sample(scope=bc.Scope(specifiers=(
            bc.Specifier(product_tags=("compute",), pricing_group_values={"region": "eu"}),))),
        "schedule_of_three_segments": scheduled(3),
    }
    refusals: dict[str, tuple[str, Variant]] = {
        "custom_unit": ("amount", custom_unit),
        "fractional_minor_unit": ("amount", sample(
            amount=bc.Money(amount=Decimal("10.005"), currency="USD"))),
        "priority_fraction": ("priority", priority("0.5")),
        "priority_above_range": ("priority", priority("150")),
        "priority_beyond_double": ("priority", priority("0.1000000000000000000000001")),
        "product_tags": ("scope", sample(scope=bc.Scope(product_tags=("compute",)))),
        "specifiers": ("scope", sample(scope=bc.Scope(specifiers=(
            bc.Specifier(product_tags=("compute",)),)))),
        "too_many_prices": ("scope", many_prices),
        "schedule_of_three_segments": ("schedule", scheduled(3)),
        "name_too_long": ("name", long_name),
        "metadata_key_too_long": ("metadata", sample(metadata={"k" * 41: "v"})),
        "metadata_value_too_long": ("metadata", sample(metadata={"k": "v" * 501})),
    }
    return round_trips, refusals


ROUND_TRIPS, REFUSALS = _variants()


class ProviderConformance:
    """The conformance suite. Subclass it (as ``Test...``) and provide a ``provider`` fixture."""

    @pytest.fixture
    def provider(self) -> bc.Provider:
        raise NotImplementedError("define a `provider` fixture returning a ready provider")

    # -- overridable data ---------------------------------------------------------------

    def customer_id(self) -> str:
        """A fresh customer id the provider accepts."""
        return str(uuid.uuid4())

    def missing_id(self) -> str:
        """A grant id that does not exist."""
        return str(uuid.uuid4())

    def ids(self, kind: str, count: int) -> tuple[str, ...]:
        """``count`` fresh identifiers for scope parts (``product``, ``price``, ``contract``)."""
        return tuple(str(uuid.uuid4()) for _ in range(count))

    def start(self) -> datetime:
        """An hour-aligned start in the recent past, so a sample grant is active."""
        return _hour_floor(datetime.now(UTC)) - timedelta(hours=1)

    def sample_grant(self, provider: bc.Provider, **changes: Any) -> bc.CreditGrant:
        """A plain grant ``provider`` can represent: 10.00 in its first currency."""
        caps = provider.capabilities
        currency = "USD"
        if caps.currencies is not None and "USD" not in caps.currencies:
            currency = sorted(caps.currencies)[0]
        start = self.start()
        data: dict[str, Any] = {
            "customer_id": self.customer_id(),
            "amount": bc.Money(amount=Decimal("10.00"), currency=currency),
            "name": "Conformance credit",
            "effective_at": start,
            "expires_at": start + timedelta(days=30),
            "priority": _plain_priority(caps.priority),
            "idempotency_key": f"conformance-{uuid.uuid4()}",
        }
        data.update(changes)
        return bc.CreditGrant(**data)

    # -- helpers ------------------------------------------------------------------------

    def assert_same_request(self, stored: bc.CreditGrant, requested: bc.CreditGrant) -> None:
        """``stored`` (read back) holds exactly what ``requested`` asked for.

        Amounts compare as numbers (``10`` equals ``10.00``); segment ids, which providers
        assign, are ignored; so is ``effective_at`` when the request left it to the provider.
        """
        expected, actual = _requested(requested), _requested(stored)
        if requested.effective_at is None:
            expected.pop("effective_at")
            actual.pop("effective_at")
        assert actual == expected

    @contextmanager
    def no_io(self, provider: bc.Provider) -> Iterator[None]:
        """Assert the block sends no request through the provider's runtime."""
        before = provider.runtime.calls
        yield
        assert provider.runtime.calls == before, "a request was sent"

    def _require(self, provider: bc.Provider, operation: bc.Operation) -> None:
        if not provider.capabilities.supports(operation):
            pytest.skip(f"{provider.name} does not declare {operation!r}")

    # -- the suite ----------------------------------------------------------------------

    def test_capabilities_are_declared(self, provider: bc.Provider) -> None:
        assert isinstance(provider.capabilities, bc.Capabilities)
        assert provider.name
        assert {"create", "list", "get"} <= provider.capabilities.operations
        assert provider.capabilities.describe()

    def test_create_returns_the_grant_as_stored(self, provider: bc.Provider) -> None:
        grant = self.sample_grant(provider)
        created = provider.create_grant(grant)
        assert created.id
        assert created.provider == provider.name
        assert created.status is bc.GrantStatus.ACTIVE
        self.assert_same_request(created, grant)

    def test_get_returns_what_create_returned(self, provider: bc.Provider) -> None:
        created = provider.create_grant(self.sample_grant(provider))
        assert created.id is not None
        fetched = provider.get_grant(created.id)
        assert fetched.id == created.id
        self.assert_same_request(fetched, created)

    def test_get_missing_is_not_found(self, provider: bc.Provider) -> None:
        with pytest.raises(bc.NotFoundError):
            provider.get_grant(self.missing_id())

    def test_list_pages_past_the_first_page(self, provider: bc.Provider) -> None:
        customer = self.customer_id()
        created = [provider.create_grant(self.sample_grant(provider, customer_id=customer))
                   for _ in range(5)]
        before = provider.runtime.calls
        listed = list(provider.list_grants(customer, page_size=2))
        assert sorted(g.id or "" for g in listed) == sorted(g.id or "" for g in created)
        assert provider.runtime.calls - before >= 3, "five grants at two a page need 3 pages"
        assert all(g.customer_id == customer for g in listed)

    def test_same_idempotency_key_yields_one_grant(self, provider: bc.Provider) -> None:
        grant = self.sample_grant(provider)
        first = provider.create_grant(grant)
        second = provider.create_grant(grant)
        assert first.id == second.id
        assert [g.id for g in provider.list_grants(grant.customer_id)] == [first.id]

    def test_concurrent_creates_with_one_key_yield_one_grant(self, provider: bc.Provider) -> None:
        grant = self.sample_grant(provider)

        async def race() -> set[str | None]:
            created = await asyncio.gather(*(provider.acreate_grant(grant) for _ in range(4)))
            return {g.id for g in created}

        ids = asyncio.run(race())
        assert len(ids) == 1
        assert [g.id for g in provider.list_grants(grant.customer_id)] == list(ids)

    def test_void(self, provider: bc.Provider) -> None:
        self._require(provider, "void")
        created = provider.create_grant(self.sample_grant(provider))
        assert created.id is not None
        voided = provider.void_grant(created.id)
        assert voided.id == created.id
        assert voided.status is bc.GrantStatus.VOIDED

    def test_expire(self, provider: bc.Provider) -> None:
        self._require(provider, "expire")
        created = provider.create_grant(self.sample_grant(provider))
        assert created.id is not None
        expired = provider.expire_grant(created.id)
        assert expired.id == created.id
        assert expired.status is bc.GrantStatus.EXPIRED
        assert expired.expires_at is not None
        assert expired.expires_at <= datetime.now(UTC) + timedelta(hours=1)

    def test_async_twins(self, provider: bc.Provider) -> None:
        customer = self.customer_id()

        async def run() -> None:
            grants = [self.sample_grant(provider, customer_id=customer) for _ in range(3)]
            created = [await provider.acreate_grant(g) for g in grants]
            for grant, stored in zip(grants, created, strict=True):
                self.assert_same_request(stored, grant)
            assert created[0].id is not None
            fetched = await provider.aget_grant(created[0].id)
            assert fetched.id == created[0].id
            listed = [g.id async for g in provider.alist_grants(customer, page_size=2)]
            assert sorted(i or "" for i in listed) == sorted(g.id or "" for g in created)
            if provider.capabilities.supports("void"):
                assert created[1].id is not None
                voided = await provider.avoid_grant(created[1].id)
                assert voided.status is bc.GrantStatus.VOIDED
            if provider.capabilities.supports("expire"):
                assert created[2].id is not None
                expired = await provider.aexpire_grant(created[2].id)
                assert expired.status is bc.GrantStatus.EXPIRED

        asyncio.run(run())

    @pytest.mark.parametrize("variant", sorted(ROUND_TRIPS))
    def test_round_trip_of_each_field_it_holds(self, provider: bc.Provider, variant: str) -> None:
        grant = ROUND_TRIPS[variant](self, provider)
        if problems := provider.capabilities.check(grant):
            pytest.skip(f"{provider.name} does not hold {variant}: {problems[0]}")
        created = provider.create_grant(grant)
        self.assert_same_request(created, grant)
        assert created.id is not None
        self.assert_same_request(provider.get_grant(created.id), grant)

    @pytest.mark.parametrize("variant", sorted(REFUSALS))
    def test_refuses_what_it_cannot_hold_before_any_request(
        self, provider: bc.Provider, variant: str
    ) -> None:
        field, build = REFUSALS[variant]
        grant = build(self, provider)
        if not provider.capabilities.check(grant):
            pytest.skip(f"{provider.name} holds {variant}")
        with self.no_io(provider), pytest.raises(bc.NotRepresentableError) as refused:
            provider.create_grant(grant)
        assert any(f == field or f.startswith(f"{field}.") for f in refused.value.fields), (
            refused.value.fields
        )

    def test_invalid_grant_is_refused_before_any_request(self, provider: bc.Provider) -> None:
        data = self.sample_grant(provider).model_dump()
        data["effective_at"] = datetime(2030, 1, 1)
        with self.no_io(provider), pytest.raises(bc.InvalidGrantError) as refused:
            provider.create_grant(data)
        assert "effective_at" in refused.value.fields

    def test_a_read_back_grant_is_not_created_again(self, provider: bc.Provider) -> None:
        created = provider.create_grant(self.sample_grant(provider))
        with self.no_io(provider), pytest.raises(bc.InvalidGrantError):
            provider.create_grant(created)

    # -- balances, ledger, updates, consumption (issue 11) ------------------------------

    ledger_reconciles: bool = True
    """Whether the ledger of a grant sums to its balance (every movement is listed). Set False
    (with the reason in a comment) for a vendor whose ledger leaves movements out."""

    def _supports(self, provider: bc.Provider, operation: bc.Operation) -> None:
        if not provider.supports(operation):
            pytest.skip(f"{provider.name} does not offer {operation!r}")

    def _balance_of(self, provider: bc.Provider, customer: str, unit: str) -> bc.Balance:
        found = [b for b in provider.get_balance(customer) if b.unit_key == unit]
        assert len(found) == 1, f"one balance per unit, not {found}"
        assert found[0].customer_id == customer
        return found[0]

    def test_unsupported_ledger_operations_are_refused_before_any_request(
        self, provider: bc.Provider
    ) -> None:
        declined = [op for op in ("balance", "ledger", "update", "consume")
                    if not provider.supports(op)]
        if not declined:
            pytest.skip(f"{provider.name} offers every ledger operation")
        calls: dict[str, Callable[[], object]] = {
            "balance": lambda: provider.get_balance("c"),
            "ledger": lambda: next(provider.list_ledger("c")),
            "update": lambda: provider.update_grant("g", name="x"),
            "consume": lambda: provider.consume(
                "c", bc.Money(amount=Decimal(1), currency="USD"), reference="r"),
        }
        for operation in declined:
            with self.no_io(provider), pytest.raises(bc.UnsupportedOperationError):
                calls[operation]()

    def test_balance_counts_a_new_grant(self, provider: bc.Provider) -> None:
        self._supports(provider, "balance")
        customer = self.customer_id()
        grant = provider.create_grant(self.sample_grant(provider, customer_id=customer))
        balance = self._balance_of(provider, customer, grant.amount.unit_key)
        assert balance.usable.amount == grant.amount.amount
        assert balance.pending.same_unit(balance.usable)
        assert balance.source
        if balance.parts:
            assert grant.id in {p.grant_id for p in balance.parts}
            assert bc.exact_sum(p.usable.amount for p in balance.parts) == balance.usable.amount

    def test_balance_as_of_is_checked_before_any_request(self, provider: bc.Provider) -> None:
        self._supports(provider, "balance")
        customer = self.customer_id()
        past = datetime.now(UTC) - timedelta(days=1)
        if provider.capabilities.balance_as_of == "any":
            grant = provider.create_grant(self.sample_grant(provider, customer_id=customer))
            later = [b for b in provider.get_balance(customer, at=self.start() + timedelta(
                days=40)) if b.unit_key == grant.amount.unit_key]
            assert all(b.usable.amount == 0 for b in later), "expired credit is not usable"
        else:
            with self.no_io(provider), pytest.raises(bc.NotRepresentableError) as refused:
                provider.get_balance(customer, at=past)
            assert refused.value.fields == ("at",)
        with self.no_io(provider), pytest.raises(bc.InvalidGrantError):
            provider.get_balance(customer, at=datetime(2030, 1, 1))

    def test_ledger_belongs_to_the_customer_and_reconciles(self, provider: bc.Provider) -> None:
        self._supports(provider, "ledger")
        customer = self.customer_id()
        grant = provider.create_grant(self.sample_grant(provider, customer_id=customer))
        if provider.supports("consume"):
            provider.consume(customer, grant.amount.with_amount(Decimal("2.50")),
                             reference=f"conformance-{uuid.uuid4()}")
        entries = list(provider.list_ledger(customer))
        assert all(e.customer_id == customer for e in entries)
        assert all(e.amount.same_unit(grant.amount) for e in entries)
        mine = list(provider.list_ledger(customer, grant_id=grant.id))
        assert all(e.grant_id == grant.id for e in mine)
        if self.ledger_reconciles:
            assert grant.id is not None
            balance = provider.get_grant(grant.id).balance
            assert balance is not None
            assert bc.exact_sum(e.amount.amount for e in mine) == balance.amount
        later = datetime.now(UTC) + timedelta(days=400)
        assert list(provider.list_ledger(customer, since=later)) == []

    def test_update_changes_each_updatable_field(self, provider: bc.Provider) -> None:
        self._supports(provider, "update")
        fields = provider.capabilities.updatable_fields
        created = provider.create_grant(self.sample_grant(provider))
        assert created.id is not None
        if "expires_at" in fields:
            new_end = self.start() + timedelta(days=60)
            updated = provider.update_grant(created.id, expires_at=new_end)
            assert updated.expires_at == new_end
            assert provider.get_grant(created.id).expires_at == new_end
        if "name" in fields:
            assert provider.update_grant(created.id, name="Renamed").name == "Renamed"
        if "metadata" in fields:
            updated = provider.update_grant(created.id, metadata={"ticket": "T-1"})
            assert updated.metadata.get("ticket") == "T-1"
        assert provider.get_grant(created.id).amount.amount == created.amount.amount

    def test_update_refuses_what_it_cannot_change_before_any_request(
        self, provider: bc.Provider
    ) -> None:
        self._supports(provider, "update")
        fixed = {"expires_at", "name", "metadata"} - provider.capabilities.updatable_fields
        values: dict[str, object] = {"expires_at": self.start() + timedelta(days=9),
                                     "name": "x", "metadata": {"k": "v"}}
        for field in sorted(fixed):
            with self.no_io(provider), pytest.raises(bc.NotRepresentableError) as refused:
                provider.update_grant(self.missing_id(), **{field: values[field]})  # type: ignore[arg-type]
            assert refused.value.fields == (field,)
        with self.no_io(provider), pytest.raises(bc.InvalidGrantError):
            provider.update_grant(self.missing_id())

    def test_consume_burns_down_in_the_declared_order(self, provider: bc.Provider) -> None:
        """Two grants alike but for their priority: the lower priority pays first, in full,
        then the other pays the rest. The expectation is written out here, from the neutral
        model's rule (``CreditGrant.priority``: "lower consumed first", in every provider's
        domain), not computed with ``allocate`` or the provider's ``consumption_order``: a
        provider that declares, or runs, another order fails. A provider that holds no
        priority (Orb) gets two grants alike but for their end instead; its declared order
        must draw on the sooner-ending one first, and the provider must run that order."""
        self._supports(provider, "consume")
        order = provider.consumption_order
        assert order is not None, "a provider that consumes declares its consumption order"
        declared = [(rule.name, rule.direction) for rule in order.rules]
        customer = self.customer_id()
        domain = provider.capabilities.priority
        low, high = (domain.nearest(Decimal(1)), domain.nearest(Decimal(90)))
        assert low < high
        holds = domain.contains(low) and domain.contains(high)
        if holds:
            assert ("priority", "asc") in declared, (
                f"{provider.name} declares {declared}: the neutral model consumes lower "
                "priorities first, so a consuming provider's order sorts priority ascending")
            orders: tuple[dict[str, Any], dict[str, Any]] = ({"priority": low},
                                                             {"priority": high})
        else:  # a vendor that holds no priority (refused before any request): two grants
            # alike but for their end, which its declared order must tell apart (checked below)
            end = self.start() + timedelta(days=30)
            orders = ({"priority": None, "expires_at": end},
                      {"priority": None, "expires_at": end + timedelta(days=30)})
        # Created second first, so that "oldest grant first" (or a grant id) cannot explain a
        # draw on the first grant first.
        second = provider.create_grant(self.sample_grant(provider, customer_id=customer,
                                                         **orders[1]))
        first = provider.create_grant(self.sample_grant(provider, customer_id=customer,
                                                        **orders[0]))
        assert first.amount.amount == second.amount.amount == Decimal("10.00")
        if not holds:
            usage = bc.Usage(customer_id=customer, at=datetime.now(UTC),
                             amount=first.amount.with_amount(Decimal("12.50")))
            planned = bc.allocate([first, second], [usage], order)
            assert {d.grant_id: -d.amount for d in planned.draws} == {
                first.id: Decimal("-10.00"), second.id: Decimal("-2.50")}, (
                f"{provider.name} holds no priority; its declared order {declared} should "
                "draw on the sooner-ending grant first")
        amount = first.amount.with_amount(Decimal("12.50"))
        reference = f"conformance-{uuid.uuid4()}"
        entries = provider.consume(customer, amount, reference=reference)
        assert all(e.kind is bc.LedgerKind.CONSUMED and e.reference == reference
                   for e in entries)
        assert bc.exact_sum(e.amount.amount for e in entries) == -amount.amount
        drawn = {e.grant_id: e.amount.amount for e in entries}
        assert drawn == {first.id: Decimal("-10.00"), second.id: Decimal("-2.50")}, (
            f"priority {low} should pay first, in full; drew {drawn} "
            f"(low: {first.id}, high: {second.id})")
        again = provider.consume(customer, amount, reference=reference)
        assert [e.amount for e in again] == [e.amount for e in entries], "applied once"
        if provider.supports("balance"):
            balance = self._balance_of(provider, customer, amount.unit_key)
            assert balance.usable.amount == Decimal("7.50")

    def test_consume_never_goes_below_zero(self, provider: bc.Provider) -> None:
        self._supports(provider, "consume")
        customer = self.customer_id()
        grant = provider.create_grant(self.sample_grant(provider, customer_id=customer))
        with pytest.raises(bc.ConflictError):
            provider.consume(customer, grant.amount.with_amount(Decimal("10.01")),
                             reference=f"conformance-{uuid.uuid4()}")
        assert grant.id is not None
        balance = provider.get_grant(grant.id).balance
        assert balance is not None
        assert balance.amount == grant.amount.amount

    def test_ledger_async_twins(self, provider: bc.Provider) -> None:
        customer = self.customer_id()

        async def run() -> None:
            created = await provider.acreate_grant(
                self.sample_grant(provider, customer_id=customer))
            assert created.id is not None
            if provider.supports("consume"):
                entries = await provider.aconsume(
                    customer, created.amount.with_amount(Decimal(1)), reference=str(uuid.uuid4()))
                assert bc.exact_sum(e.amount.amount for e in entries) == -1
            if provider.supports("balance"):
                balances = await provider.aget_balance(customer, unit=created.amount.unit_key)
                assert [b.unit_key for b in balances] == [created.amount.unit_key]
            if provider.supports("ledger"):
                listed = [e async for e in provider.alist_ledger(customer)]
                assert all(e.customer_id == customer for e in listed)
            if provider.supports("update") and "name" in provider.capabilities.updatable_fields:
                updated = await provider.aupdate_grant(created.id, name="Async")
                assert updated.name == "Async"

        if not any(provider.supports(op) for op in ("balance", "ledger", "update", "consume")):
            pytest.skip(f"{provider.name} offers no ledger operation")
        asyncio.run(run())
