"""Issue 9.4: every Python API failure is one of the project's errors.

A seeded generator (so every run sees the same inputs, and a failure names its case) draws
hostile inputs: odd types, NaN and huge or tiny decimals, times at the edges of the calendar in
far-off zones, lone surrogates, NULs, nested garbage. Each is thrown at the neutral model
(``CreditGrant``, ``Money``, ``Segment``, ``Scope``, from Python and from JSON), at every
installed provider's ``check``, ``capabilities.check`` and ``preview``, at the vendor
translation functions both ways (neutral → request, and mutated vendor payloads → neutral),
and at the planner. Any exception outside ``BillingCreditsError`` is a failure, reported with
the input, the exception and where it was raised.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import billing_credits as bc
from billing_credits.local import LocalProvider
from billing_credits.migrate._planner import plan_migration

SEED = 9
CASES = 10_000
"""Generated inputs (each goes to the model; valid ones on to every provider and translation)."""

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
CUSTOMER_UUID = "6f1c0c9e-3d7e-4b7a-9a57-0d6f6b2b4b10"

# -- hostile values ---------------------------------------------------------------------------

_STRINGS = ["", " ", "\t\n", "cus_1", "x" * 300, "\ud800", "a\udfffb", "nul\0byte", "crlf\r\nkey",
            "é€😀", "USD", "usd", "XXX", "XAU", "KWD", "JPY", "2026-01-01T00:00:00Z",
            "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "1e999999999", "NaN",
            "-0", "0.1", "5", "1E-200", "1E+200", "sNaN", "Infinity", "price_1Abc", "bc_reason",
            "sk_test_abcdefghijkl", "{}", "[]", "null", "\x1b[31mred", "a" * 129]
_NUMBERS: list[Any] = [0, 1, -1, 5, 10**50, -(10**50), 2**63, 0.1, -0.0, float("nan"), float("inf"),
                       1e308, 1e-308, Decimal("1E-200"), Decimal("1E+200"), Decimal("NaN"),
                       Decimal("sNaN"), Decimal("-Infinity"), Decimal("0E-1000"),
                       Decimal("123456789012345678901234567890.123"), Decimal("0.001"),
                       Decimal("5"), Decimal("1E-40"), Decimal("99999999999999999999999999999999999999"),
                       True, False]
_OFFSETS = [timedelta(0), timedelta(hours=-1), timedelta(hours=1), timedelta(hours=23, minutes=59),
            timedelta(hours=-23, minutes=-59), timedelta(minutes=330)]


def _datetimes(rng: random.Random) -> Any:
    zone = timezone(rng.choice(_OFFSETS))
    choice = rng.randrange(8)
    if choice == 0:
        return datetime.max.replace(tzinfo=zone)
    if choice == 1:
        return datetime.min.replace(tzinfo=zone)
    if choice == 2:
        return datetime(2026, 1, 1)  # naive
    if choice == 3:
        return datetime(9999, 12, 31, 23, tzinfo=zone)
    if choice == 4:
        return datetime(1, 1, 1, 1, tzinfo=zone)
    if choice == 5:
        return rng.choice(["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
                           "2026-02-30T00:00:00Z", "2026-01-01", "yesterday", 253402300800,
                           -62135596801, 1.5e18])
    return NOW + timedelta(seconds=rng.randrange(-10**9, 10**9), microseconds=rng.randrange(10**6))


def _scalar(rng: random.Random) -> Any:
    pick = rng.randrange(10)
    if pick < 3:
        return rng.choice(_STRINGS)
    if pick < 6:
        return rng.choice(_NUMBERS)
    if pick < 8:
        return _datetimes(rng)
    return rng.choice([None, [], {}, (), [1, "a"], {"a": None}, object(), b"bytes", {1: 2}])


def _amount(rng: random.Random) -> Any:
    if rng.random() < 0.3:
        return _scalar(rng)
    money: dict[str, Any] = {"amount": rng.choice([*_NUMBERS, "12.50", "0.01", "1E-200"])}
    if rng.random() < 0.8:
        money["currency"] = rng.choice(["USD", "EUR", "JPY", "KWD", "BHD", "usd", "XAU", "XXX", "ZZZ",
                                        None, 5, "\ud800"])
    else:
        money["unit"] = rng.choice([{"id": "cu_1", "name": "credits"}, {"id": ""}, {"id": "\ud800"},
                                    "cu_1", None, {"id": "x" * 300}])
    return money


def _segment(rng: random.Random, start: datetime) -> Any:
    if rng.random() < 0.15:
        return _scalar(rng)
    segment = {"amount": rng.choice(["10", "5.5", "1E-200", 0, -1, "0.001", 7]),
               "starts_at": start,
               "ends_before": rng.choice([start + timedelta(days=30), None, start, _datetimes(rng)])}
    if rng.random() < 0.2:
        segment[rng.choice(["starts_at", "ends_before", "amount", "id"])] = _scalar(rng)
    return segment


def _scope(rng: random.Random) -> Any:
    if rng.random() < 0.2:
        return _scalar(rng)
    scope: dict[str, Any] = {}
    for name in ("product_ids", "product_tags", "price_ids", "contract_ids"):
        if rng.random() < 0.2:
            scope[name] = rng.choice([["p_1", "p_2"], [""], "price_1Abc", [rng.choice(_STRINGS)], 5])
    if rng.random() < 0.15:
        scope["metered_prices_only"] = rng.choice([True, False, "yes", 2])
    if rng.random() < 0.1:
        scope["specifiers"] = rng.choice([[{"product_id": "p"}], [{"pricing_group_values": {"a": 1}}],
                                          [{"product_tags": [""]}], "s", [5]])
    return scope


def _metadata(rng: random.Random) -> Any:
    if rng.random() < 0.15:
        return _scalar(rng)
    return {rng.choice([*_STRINGS, "k", "bc_x", "a[b]"]): rng.choice([*_STRINGS, 5, None])
            for _ in range(rng.randrange(4))}


def _valid_base(rng: random.Random) -> dict[str, Any]:
    start = NOW + timedelta(days=rng.randrange(-400, 400), hours=rng.randrange(24))
    currency = rng.choice(["USD", "EUR", "JPY", "KWD"])
    amount = rng.choice(["10", "25.50", "1000", "0.5", "3", "123456789012345678901234567.123",
                         "0.000000000000000000000000000001", "1E+39"])
    data: dict[str, Any] = {"customer_id": f"cus_{rng.randrange(5)}",
                            "amount": {"amount": amount, "currency": currency},
                            "effective_at": start,
                            "expires_at": start + timedelta(days=rng.randrange(1, 900))}
    if rng.random() < 0.5:
        data["priority"] = rng.choice(["1", "50", "0.5", "100", "7"])
    if rng.random() < 0.3:
        data["name"] = rng.choice(["Welcome", "Prepaid", "é€😀"])
    if rng.random() < 0.2:
        data["category"] = rng.choice(["paid", "promotional"])
    if rng.random() < 0.2:
        data["paid_amount"] = {"amount": rng.choice(["0", "5", "10.5"]), "currency": currency}
    if rng.random() < 0.3:
        data["idempotency_key"] = f"key-{rng.randrange(10**6)}"
    if rng.random() < 0.15:
        half = Decimal(amount) / 2
        data["schedule"] = [
            {"amount": str(half), "starts_at": start, "ends_before": start + timedelta(days=10)},
            {"amount": str(Decimal(amount) - half), "starts_at": start + timedelta(days=10),
             "ends_before": start + timedelta(days=40)}]
        data.pop("effective_at")
        data.pop("expires_at")
    if rng.random() < 0.15:
        data["scope"] = rng.choice([{"price_ids": ["price_1"]}, {"metered_prices_only": True},
                                    {"product_ids": ["prod_1"]}])
    if rng.random() < 0.15:
        data["metadata"] = {"team": "growth"}
    return data


_FIELDS: dict[str, Callable[[random.Random], Any]] = {
    "customer_id": _scalar, "amount": _amount, "name": _scalar, "reason": _scalar,
    "category": _scalar, "category_label": _scalar, "paid_amount": _amount,
    "effective_at": _datetimes, "expires_at": _datetimes,
    "schedule": lambda rng: rng.choice([5, "x", [], None, [_segment(rng, NOW)],
                                        [_segment(rng, NOW), _segment(rng, NOW + timedelta(days=1))]]),
    "priority": lambda rng: rng.choice(_NUMBERS + _STRINGS[:6]), "scope": _scope,
    "metadata": _metadata, "idempotency_key": _scalar,
    "id": _scalar, "provider": _scalar, "status": lambda rng: rng.choice(
        ["active", "voided", "expired", "scheduled", "bogus", 5, None]),
    "balance": _amount, "created_at": _datetimes, "raw": _metadata, "adjustments": _scalar,
}


def hostile_grant(rng: random.Random) -> Any:
    """A grant-shaped input: a valid base with a few fields replaced by hostile values."""
    if rng.random() < 0.03:
        return _scalar(rng)
    data = _valid_base(rng)
    for name in rng.sample(sorted(_FIELDS), rng.randrange(0, 4)):
        data[name] = _FIELDS[name](rng)
    if rng.random() < 0.03:
        data[rng.choice(_STRINGS)] = _scalar(rng)  # an unknown field
    if rng.random() < 0.05:
        data.pop(rng.choice(sorted(data)), None)
    return data


def _mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """A vendor payload with a few values replaced, removed or re-typed, at any depth."""
    if isinstance(value, dict) and value:
        copy = dict(value)
        for key in rng.sample(sorted(copy), min(len(copy), rng.randrange(1, 3))):
            roll = rng.random()
            if roll < 0.25:
                copy.pop(key)
            elif roll < 0.6 and depth < 4:
                copy[key] = _mutate(copy[key], rng, depth + 1)
            else:
                copy[key] = _scalar(rng) if rng.random() < 0.7 else rng.choice(
                    [0, -5, 10**40, "1000", 1.5, None, "", "\ud800"])
        return copy
    if isinstance(value, list) and value:
        copy_list = list(value)
        index = rng.randrange(len(copy_list))
        copy_list[index] = _mutate(copy_list[index], rng, depth + 1)
        if rng.random() < 0.2:
            copy_list.append(_scalar(rng))
        return copy_list
    return _scalar(rng)


# -- what the inputs are thrown at -------------------------------------------------------------


class Failures:
    def __init__(self) -> None:
        self.count = 0
        self.records: list[str] = []
        self.where: Counter[str] = Counter()
        self.valid = 0

    def run(self, case: int, what: str, data: Any, fn: Callable[[], Any]) -> Any:
        self.count += 1
        try:
            return fn()
        except bc.BillingCreditsError:
            return None
        except Exception as error:
            frames = [f for f in traceback.extract_tb(error.__traceback__)
                      if "billing_credits" in f.filename]
            last = frames[-1] if frames else traceback.extract_tb(error.__traceback__)[-1]
            where = f"{Path(last.filename).parent.name}/{Path(last.filename).name}:{last.lineno}"
            self.where[f"{type(error).__name__} at {where}"] += 1
            if sum(1 for r in self.records if where in r) < 3:
                self.records.append(f"case {case} {what}: {type(error).__name__}: "
                                    f"{str(error)[:160]} at {where}\n    input: {repr(data)[:300]}")
            return None


def _samples(tmp: Path) -> tuple[list[bc.Provider], dict[str, list[dict[str, Any]]]]:
    """Every installed provider (not reaching anything), and real vendor payloads to mutate,
    made by creating grants on the vendors' fakes in process."""
    from billing_credits.testing import FakeTransport

    providers: list[bc.Provider] = [LocalProvider(tmp / "fuzz.db")]
    samples: dict[str, list[dict[str, Any]]] = {}
    start = NOW.replace(minute=0, second=0, microsecond=0)
    grants = [
        bc.CreditGrant(customer_id="cus_1", amount=bc.Money(amount=Decimal("7"), currency="USD"),
                       effective_at=start, idempotency_key="sample-0"),
        bc.CreditGrant(customer_id="cus_1", amount=bc.Money(amount=Decimal("12.50"), currency="USD"),
                       name="Welcome", priority=Decimal(10), effective_at=start,
                       expires_at=start + timedelta(days=30), idempotency_key="sample-1",
                       metadata={"team": "growth"}, category=bc.Category.PROMOTIONAL),
        bc.CreditGrant(customer_id="cus_1", amount=bc.Money(amount=Decimal("30"), currency="USD"),
                       paid_amount=bc.Money(amount=Decimal("20"), currency="USD"),
                       schedule=(bc.Segment(amount=Decimal(10), starts_at=start,
                                            ends_before=start + timedelta(days=10)),
                                 bc.Segment(amount=Decimal(20), starts_at=start + timedelta(days=10),
                                            ends_before=start + timedelta(days=40))),
                       idempotency_key="sample-2"),
    ]
    try:
        from billing_credits_stripe.testing import StripeFake

        fake = StripeFake(seed=3)
        transport = fake.transport()
        stripe_provider = bc.get_provider("stripe", api_key="sk_test_fuzzfuzzfuzzfuzz",
                                          http_client=httpx.Client(transport=transport))
        samples["stripe"] = []
        for grant in grants:
            with contextlib.suppress(bc.BillingCreditsError):
                samples["stripe"].append(dict(stripe_provider.create_grant(grant).raw or {}))
        providers.append(stripe_provider)
        samples["stripe:transaction"] = [dict(e.raw or {}) for e in stripe_provider.list_ledger("cus_1")]
        samples["stripe:summary"] = [dict(summary) for balance in stripe_provider.get_balance("cus_1")
                                     for summary in (balance.raw or {})["summaries"].values()]
    except ImportError:
        pass
    try:
        from billing_credits_metronome.testing import MetronomeFake

        fake_m = MetronomeFake(token="mtr_fuzz_token_value")
        transport_m = FakeTransport(fake_m)
        for name, extra in (("metronome-plans", {}),
                            ("metronome", {"product_id": "f14d6729-6a44-4b13-9908-9387f1918790"})):
            provider = bc.get_provider(name, bearer_token="mtr_fuzz_token_value",
                                       base_url="https://api.metronome.com",
                                       http_client=httpx.Client(transport=transport_m),
                                       custom_field_keys="team", **extra)
            provider.setup()  # registers the custom-field keys Metronome needs beforehand
            samples[name] = []
            for grant in grants:
                try:
                    raw = dict(provider.create_grant(grant.as_new(customer_id=CUSTOMER_UUID)).raw or {})
                except bc.BillingCreditsError:
                    continue
                raw.pop("_summary", None)
                samples[name].append(raw)
            providers.append(provider)
            entries = [dict(e.raw or {}) for e in provider.list_ledger(CUSTOMER_UUID)]
            listed = [dict(item) for balance in provider.get_balance(CUSTOMER_UUID)
                      for item in (balance.raw or {}).get("grants" if name == "metronome-plans"
                                                          else "credits", ())]
            if name == "metronome-plans":
                credit_type = {"id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "name": "USD (cents)"}
                samples[f"{name}:ledger"] = [{"customer_id": CUSTOMER_UUID, "ledgers": [
                    {"credit_type": credit_type, "entries": entries}]}]
                samples[f"{name}:balance"] = listed
            else:
                samples[f"{name}:credit"] = [{**item, "ledger": entries} for item in listed]
    except ImportError:
        pass
    return providers, samples


def _translations(provider: bc.Provider) -> Iterator[tuple[str, Callable[[bc.CreditGrant], Any],
                                                            Callable[[dict[str, Any]], Any]]]:
    """(name, neutral → request, vendor item → neutral) for each vendor provider."""
    if provider.name == "stripe":
        from billing_credits_stripe import _translate as st

        yield ("stripe._translate", st.create_params,
               lambda item: st.from_stripe(item, now=NOW))
    elif provider.name == "metronome-plans":
        from billing_credits_metronome import _translate as mt

        config = provider._config  # type: ignore[attr-defined]
        yield ("metronome._translate.grant", lambda g: mt.grant_create_payload(g, "k", config, NOW),
               lambda item: mt.grant_from_item(item, config, NOW, provider=provider.name))
    elif provider.name == "metronome":
        from billing_credits_metronome import _translate as mt

        config = provider._config  # type: ignore[attr-defined]
        yield ("metronome._translate.credit",
               lambda g: mt.credit_create_payload(g, "k", config, NOW),
               lambda item: mt.credit_from_item(item, CUSTOMER_UUID, config, NOW, provider=provider.name))


def _payload_readers(provider: bc.Provider) -> Iterator[tuple[str, str, Callable[[dict[str, Any]], Any]]]:
    """(name, sample kind, reader) for each balance and ledger reader of a vendor provider. Each
    reader gets one mutated object, as the flows hand them over (a page's ``data`` holds
    objects: anything else is refused before reading)."""
    if provider.name == "stripe":
        from billing_credits_stripe import _ledger as sl
        from billing_credits_stripe import _translate as st

        yield ("stripe._ledger.entry_from_transaction", "stripe:transaction",
               lambda item: sl.entry_from_transaction(item, "cus_1"))
        yield ("stripe._translate.balance_from_summary", "stripe:summary",
               lambda item: st.balance_from_summary(item, "USD"))
        grant = bc.CreditGrant(customer_id="cus_1", amount=bc.Money(amount=Decimal(7), currency="USD"),
                               id="credgr_1", provider="stripe")
        yield ("stripe._ledger.balances_from_summaries", "stripe:summary",
               lambda item: sl.balances_from_summaries("cus_1", [(grant, item)], NOW))
    elif provider.name.startswith("metronome"):
        from billing_credits_metronome import _ledger as ml

        config = provider._config  # type: ignore[attr-defined]
        if provider.name == "metronome-plans":
            yield ("metronome._ledger.plans_entries", f"{provider.name}:ledger",
                   lambda item: ml.plans_entries([item], CUSTOMER_UUID, config))
            yield ("metronome._ledger.plans_balances", f"{provider.name}:balance",
                   lambda item: ml.plans_balances([item], CUSTOMER_UUID, config, NOW))
        else:
            yield ("metronome._ledger.credit_entries", f"{provider.name}:credit",
                   lambda item: ml.credit_entries(item, CUSTOMER_UUID, config))
            yield ("metronome._ledger.credits_balances", f"{provider.name}:credit",
                   lambda item: ml.credits_balances([item], CUSTOMER_UUID, config, NOW))
            yield ("metronome._ledger.credits_balances_at", f"{provider.name}:credit",
                   lambda item: ml.credits_balances_at([item], CUSTOMER_UUID, config, NOW))


class _Source(bc.Provider):
    """A source provider listing whatever grants (read back) the test hands it."""

    name = "fuzz-source"
    capabilities = bc.Capabilities()

    def __init__(self, grants: list[bc.CreditGrant]) -> None:
        super().__init__()
        self.grants = grants

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        raise bc.UnsupportedOperationError(self.name, "create")
        yield  # pragma: no cover

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        grants = [g for g in self.grants if query.customer_id in (None, g.customer_id)]
        page: bc.Page = yield bc.blocking(lambda: bc.Page(grants))
        return page

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        raise bc.NotFoundError(grant_id)
        yield  # pragma: no cover


def _read_back(data: Any, rng: random.Random, case: int) -> Any:
    """A grant-shaped input with read-back fields, as a source provider would list it."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    data.setdefault("id", f"src_{case}")
    data.setdefault("provider", "fuzz-source")
    data.setdefault("status", rng.choice(["active", "scheduled", "active", "expired"]))
    if "balance" not in data and isinstance(data.get("amount"), dict):
        data["balance"] = dict(data["amount"])
        if rng.random() < 0.3:
            data["balance"]["amount"] = rng.choice(["0", "1E-200", "0.01", "1", "5"])
    return data


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Failures:
    """The whole fuzz run, once for the module: every call and every non-project exception."""
    return _fuzz(tmp_path_factory.mktemp("fuzz"))


def _fuzz(tmp_path: Path) -> Failures:
    rng = random.Random(SEED)
    failures = Failures()
    providers, samples = _samples(tmp_path)
    assert {p.name for p in providers} >= {"local"}
    for provider in providers[1:]:  # every vendor provider's reading is fuzzed, none silently not
        assert samples.get(provider.name), f"no {provider.name} payload to mutate"
        for _, kind, _ in _payload_readers(provider):
            assert samples.get(kind), f"no {kind} payload to mutate"
    pending: list[bc.CreditGrant] = []
    valid = 0
    for case in range(CASES):
        data = hostile_grant(rng)
        grant = failures.run(case, "CreditGrant.model_validate", data,
                             lambda d=data: bc.CreditGrant.model_validate(d))
        if isinstance(data, dict) and all(isinstance(k, str) for k in data):
            failures.run(case, "CreditGrant(**data)", data, lambda d=data: bc.CreditGrant(**d))
        text = json.dumps(data, default=str)
        failures.run(case, "CreditGrant.model_validate_json", text,
                     lambda t=text: bc.CreditGrant.model_validate_json(t))
        if isinstance(data, dict):
            amount = data.get("amount")
            failures.run(case, "Money.model_validate", amount, lambda a=amount: bc.Money.model_validate(a))
            scope = data.get("scope")
            failures.run(case, "Scope.model_validate", scope, lambda s=scope: bc.Scope.model_validate(s))
            for segment in data.get("schedule") or () if isinstance(data.get("schedule"), list) else ():
                failures.run(case, "Segment.model_validate", segment,
                             lambda s=segment: bc.Segment.model_validate(s))
        if grant is None:
            continue
        valid += 1
        failures.run(case, "as_new/dump", data, lambda g=grant: (
            g.as_new(), g.model_dump_json(), g.request_fields(), g.segments, g.status_at(NOW), str(g.amount)))
        for provider in providers:
            failures.run(case, f"{provider.name}.check", data, lambda p=provider, g=grant: p.check(g))
            failures.run(case, f"{provider.name}.capabilities.check", data,
                         lambda p=provider, g=grant: p.capabilities.check(g))
            failures.run(case, f"{provider.name}.preview", data, lambda p=provider, g=grant: p.preview(g))
            for name, to_vendor, _ in _translations(provider):
                failures.run(case, f"{name} to vendor", data, lambda f=to_vendor, g=grant: f(g))
        listed = _read_back(data, rng, case)
        if valid % 6 == 0:  # the local provider stores it (and reads it back) for real
            local = providers[0]
            failures.run(case, "local.create_grant", data, lambda p=local, g=grant: (
                p.get_grant(p.create_grant(g).id or "")))
        read_back = failures.run(case, "read-back grant", listed,
                                 lambda d=listed: bc.CreditGrant.model_validate(d))
        if read_back is not None:
            pending.append(read_back)
        if len(pending) >= 25:
            source = _Source(pending)
            for target in providers:
                for mode in ("remaining", "original"):
                    failures.run(case, f"plan_migration -> {target.name} ({mode})",
                                 [g.model_dump(exclude={"raw"}) for g in pending][:3],
                                 lambda t=target, m=mode, s=source: plan_migration(
                                     s, t, amount_mode=m, strict=False, now=NOW,
                                     priority_policy=rng.choice(["exact", "preserve-order"])))
            pending = []
    # Vendor payloads, mutated, read back through each provider's translation.
    for case in range(CASES // 2):
        provider = providers[1 + case % (len(providers) - 1)] if len(providers) > 1 else providers[0]
        for name, _, from_vendor in _translations(provider):
            for sample in samples.get(provider.name, ()):
                item = _mutate(sample, rng)
                failures.run(case, f"{name} from vendor", item, lambda f=from_vendor, i=item: f(i))
        for name, kind, read in _payload_readers(provider):
            for sample in samples.get(kind, ()):
                item = _mutate(sample, rng)
                failures.run(case, f"{name} from vendor", item, lambda f=read, i=item: f(i))
    # One customer holding 5 USD and 1E-200 USD: the planner's sums stay exact or refuse.
    tiny = [bc.CreditGrant.model_validate({
        "customer_id": "cus_t", "amount": {"amount": value, "currency": "USD"}, "id": f"src_t{i}",
        "provider": "fuzz-source", "status": "active", "balance": {"amount": value, "currency": "USD"}})
        for i, value in enumerate(["5", "1E-30"])]
    failures.run(-1, "plan 5 USD + tiny", None, lambda: plan_migration(_Source(tiny), providers[0], now=NOW))
    for provider in providers:
        provider.close()
    failures.valid = valid
    return failures


def _report(failures: Failures, core: bool) -> tuple[int, str]:
    where = {k: v for k, v in failures.where.items() if ("billing_credits/" in k) == core}
    records = [r for r in failures.records if (" at billing_credits/" in r) == core]
    summary = "\n".join(f"  {count} × {place}" for place, count in
                        sorted(where.items(), key=lambda kv: -kv[1]))
    return sum(where.values()), f"{summary}\n" + "\n".join(records)


def test_fuzz_core_raises_only_project_errors(fuzzed: Failures) -> None:
    """The model, Money, Scope, Segment, every provider's check and preview, local and the
    planner: zero exceptions outside ``BillingCreditsError`` over every generated input."""
    count, detail = _report(fuzzed, core=True)
    print(f"fuzz: {fuzzed.count} calls over {CASES} generated grants ({fuzzed.valid} valid) and "
          f"{CASES // 2} vendor payload rounds; {count} non-project exceptions in the core, "
          f"{sum(fuzzed.where.values()) - count} in provider translations")
    assert fuzzed.count >= CASES
    assert count == 0, f"non-project exceptions:\n{detail}"


def test_fuzz_provider_translations_raise_only_project_errors(fuzzed: Failures) -> None:
    """Stripe's and Metronome's translations, both ways, on fuzzed grants and mutated vendor
    payloads: zero exceptions outside ``BillingCreditsError``."""
    count, detail = _report(fuzzed, core=False)
    assert count == 0, f"non-project exceptions:\n{detail}"


def test_known_cases_are_project_errors() -> None:
    """The inputs issue 9 names, each one of the project's errors (not a crash)."""
    base = {"customer_id": "cus_1", "amount": {"amount": "5", "currency": "USD"}}
    for changes in ({"effective_at": "9999-12-31T23:59:59-01:00"},
                    {"expires_at": "0001-01-01T00:00:00+01:00"},
                    {"schedule": 5},
                    {"name": "lone \ud800 surrogate"},
                    {"metadata": {"k\udfff": "v"}},
                    {"amount": {"amount": "1E-200", "currency": "USD"}}):
        with pytest.raises(bc.InvalidGrantError):
            bc.CreditGrant.model_validate({**base, **changes})


# -- issue 18.8: hostile files (import lines, usage, edited plans) -----------------------------

FILE_CASES = 10_000
"""Generated lines across import files, usage files and edited plan files."""

_HUGE = "1e9999999999999999999"
"""A JSON number whose exponent no Decimal holds (``decimal.InvalidOperation`` when parsed)."""

_FILE_VALUES: list[Any] = [5, -1, 0, None, True, [], {}, [5], {"a": 1}, "", "x", "\ud800",
                           "a\udfffb", "nul\0", "NaN", "-Infinity", "sNaN", _HUGE, "1e999999999",
                           "9999-12-31T23:59:59-01:00", "2026-13-01T00:00:00Z", "x" * 300,
                           1e308, -0.0, 10**50, "HUGE"]


def _file_value(rng: random.Random) -> Any:
    value = rng.choice(_FILE_VALUES)
    return "__HUGE__" if value == "HUGE" else copy.deepcopy(value)


def _file_json(data: Any) -> str:
    """JSON with surrogates escaped (``"\\ud800"``, an ASCII file) and ``__HUGE__`` written
    as the raw number ``1e9999999999999999999``."""
    return json.dumps(data, default=str).replace('"__HUGE__"', _HUGE)


_IMPORT_PATHS = ["customer_id", "amount", "amount.amount", "amount.currency", "schedule",
                 "schedule.0", "schedule.0.amount", "schedule.0.starts_at", "id", "provider",
                 "status", "idempotency_key", "metadata", "scope", "scope.price_ids",
                 "effective_at", "expires_at", "priority", "balance", "balance.amount",
                 "paid_amount", "name", "raw", "adjustments", "created_at"]


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    here: Any = data
    for part in parts[:-1]:
        nxt = here[int(part)] if isinstance(here, list) else here.get(part)
        if isinstance(here, list) or not isinstance(nxt, dict | list) or (
                isinstance(nxt, list) and not nxt):
            if isinstance(here, dict):
                here[part] = value
            return
        here = nxt
    last = parts[-1]
    if isinstance(here, list):
        if here:
            here[0] = value
    else:
        here[last] = value


def hostile_import_line(rng: random.Random, case: int) -> str:
    """An exported-grant line with a few values replaced by hostile ones (or not JSON)."""
    if rng.random() < 0.03:
        return rng.choice(["{", "[]", "5", '"x"', "null", "\x00\x01", "{\"a\": " * 50])
    data: dict[str, Any] = {
        "customer_id": f"cus_{rng.randrange(5)}", "amount": {"amount": "5", "currency": "USD"},
        "effective_at": "2026-01-01T00:00:00Z", "expires_at": "2030-01-01T00:00:00Z",
        "provider": "stripe", "id": f"cg_{case}", "status": rng.choice(["active", "scheduled"])}
    if rng.random() < 0.2:
        data["schedule"] = [{"amount": "5", "starts_at": "2026-01-01T00:00:00Z",
                             "ends_before": "2030-01-01T00:00:00Z"}]
        del data["effective_at"], data["expires_at"]
    for path in rng.sample(_IMPORT_PATHS, rng.randrange(1, 4)):
        _put(data, path, _file_value(rng))
    return _file_json(data)


_USAGE_PATHS = ["customer_id", "at", "amount", "currency", "product", "reference", "unit"]


def hostile_usage_line(rng: random.Random) -> str:
    data: dict[str, Any] = {"customer_id": "cus_1", "at": "2026-06-01T00:00:00Z",
                            "amount": "1.5", "currency": "USD"}
    for path in rng.sample(_USAGE_PATHS, rng.randrange(1, 3)):
        data[path] = _file_value(rng)
    return _file_json(data)


def _edited(line: str, rng: random.Random) -> str:
    """A plan line with one value somewhere inside replaced by a hostile one."""
    data = json.loads(line)

    def spots(value: Any, trail: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        if isinstance(value, dict):
            for key, inner in value.items():
                yield (*trail, key)
                yield from spots(inner, (*trail, key))
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                yield (*trail, index)
                yield from spots(inner, (*trail, index))

    places = [p for p in spots(data, ()) if p[0] != "kind"]
    if places:
        trail = rng.choice(places)
        here = data
        for step in trail[:-1]:
            here = here[step]
        here[trail[-1]] = _file_value(rng)
    return _file_json(data)


def _plan_file(tmp: Path) -> list[str]:
    """A real plan's lines (local to local, with source balances), to edit."""
    source = LocalProvider(path=str(tmp / "plan-source.db"))
    target = LocalProvider(path=str(tmp / "plan-target.db"))
    for i in range(3):
        source.create_grant({"customer_id": f"cus_{i % 2}", "idempotency_key": f"p-{i}",
                             "amount": {"amount": "7.25", "currency": "USD"},
                             "expires_at": "2031-01-01T00:00:00Z", "priority": "5",
                             "schedule": None})
    plan = plan_migration(source, target, now=NOW)
    plan.save(tmp / "plan.jsonl")
    source.close()
    target.close()
    return (tmp / "plan.jsonl").read_text().splitlines()


def _fuzz_files(tmp: Path) -> tuple[Failures, Counter[str]]:
    """Import files (each line a case), usage files and edited plans; per-line import
    problems must be counted in the report, never abort the import."""
    from billing_credits.consumption._simulate import read_usage
    from billing_credits.migrate._plan import MigrationPlan
    from billing_credits.migrate._transfer import import_grants
    from billing_credits.migrate._verify import verify_plan

    rng = random.Random(SEED + 18)
    failures = Failures()
    counts: Counter[str] = Counter()
    local = LocalProvider(path=str(tmp / "import.db"))
    per_file = 100
    for start in range(0, FILE_CASES // 2, per_file):
        lines = [hostile_import_line(rng, start + i) for i in range(per_file)]
        report = failures.run(start, "import_grants", lines[:3], lambda ls=lines: import_grants(
            local, [(x + "\n").encode("utf-8", "surrogatepass") for x in ls], now=NOW,
            on_reject=lambda n, _t, _w: None))
        counts["import lines"] += per_file
        if report is None:
            counts["imports aborted"] += 1
            continue
        accounted = report.created + report.already_there + len(report.skipped) + len(
            report.failed)
        if accounted != sum(1 for x in lines if x.strip()):
            counts["import lines unaccounted"] += 1
    usage_file = tmp / "usage.jsonl"
    for case in range(FILE_CASES // 4):
        line = hostile_usage_line(rng)
        usage_file.write_text(line + "\n")
        counts["usage lines"] += 1
        failures.run(case, "read_usage", line, lambda p=usage_file: read_usage(p))
        csv_file = tmp / "usage.csv"
        csv_file.write_bytes(("customer_id,at,amount,currency\ncus_1,2026-06-01T00:00:00Z,"
                              f"{_file_value(rng)},USD\n").encode("utf-8", "surrogatepass"))
        failures.run(case, "read_usage csv", None, lambda p=csv_file: read_usage(p))
    plan_lines = _plan_file(tmp)
    target = LocalProvider(path=str(tmp / "verify-target.db"))
    edited = tmp / "edited.jsonl"
    for case in range(FILE_CASES // 4):
        lines = list(plan_lines)
        at = rng.randrange(len(lines))
        lines[at] = _edited(lines[at], rng)
        edited.write_text("\n".join(lines) + "\n")
        counts["plan edits"] += 1
        plan = failures.run(case, "MigrationPlan.load", lines[at],
                            lambda p=edited: MigrationPlan.load(p))
        if plan is not None:
            failures.run(case, "verify_plan", lines[at], lambda p=plan: verify_plan(p, target))
    local.close()
    target.close()
    _fuzz_stored_rows(tmp, rng, failures, counts)
    return failures, counts


_STORED_COLUMNS = ["request_json", "amount", "unit", "effective_at", "expires_at", "voided_at",
                   "created_at", "customer_id"]


def _fuzz_stored_rows(tmp: Path, rng: random.Random, failures: Failures,
                      counts: Counter[str]) -> None:
    """The local store's grant rows edited behind its back (any column, hostile text or
    JSON), then read every way; and unusable database paths."""
    import sqlite3

    path = tmp / "stored.db"
    local = LocalProvider(path=str(path))
    ids = [local.create_grant({"customer_id": "cus_s", "idempotency_key": f"s{i}",
                               "amount": {"amount": "5", "currency": "USD"}}).id or ""
           for i in range(4)]
    for case in range(FILE_CASES // 20):
        column = rng.choice(_STORED_COLUMNS)
        value = _file_value(rng)
        text = _file_json(value) if column == "request_json" or not isinstance(value, str) \
            else value
        victim = rng.choice(ids)
        with contextlib.suppress(sqlite3.Error), sqlite3.connect(path) as db:
            db.execute(f"UPDATE grants SET {column} = ? WHERE id = ?",
                       (text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"), victim))
        counts["stored rows edited"] += 1
        data = (column, text[:80])
        failures.run(case, "local.get_grant (edited row)", data, lambda v=victim: local.get_grant(v))
        failures.run(case, "local.list_grants (edited row)", data,
                     lambda: list(local.list_grants("cus_s", on_unreadable=lambda _: None)))
        failures.run(case, "local.get_balance (edited row)", data,
                     lambda: local.get_balance("cus_s"))
        failures.run(case, "local.list_ledger (edited row)", data,
                     lambda: list(local.list_ledger("cus_s")))
    local.close()
    blocker = tmp / "blocker"
    blocker.write_text("x")
    garbage = tmp / "garbage.db"
    garbage.write_bytes(b"not sqlite" * 100)
    for where in (str(garbage), str(tmp), str(tmp / "a\x00b.db"), str(blocker / "x" / "c.db")):
        counts["database paths"] += 1
        failures.run(-1, "get_provider local", where,
                     lambda w=where: bc.get_provider("local", path=w).close())


@pytest.fixture(scope="module")
def fuzzed_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Failures, Counter[str]]:
    return _fuzz_files(tmp_path_factory.mktemp("fuzz-files"))


def test_fuzz_files_raise_only_project_errors(
        fuzzed_files: tuple[Failures, Counter[str]]) -> None:
    """Issue 18.8: import lines (``"schedule": 5``, surrogate escapes in ids, numbers no
    Decimal holds), usage lines and edited plans (numbers, ``source_balances``): zero
    exceptions outside ``BillingCreditsError``; no import aborted by one bad line."""
    failures, counts = fuzzed_files
    summary = "\n".join(f"  {n} × {p}" for p, n in failures.where.most_common())
    generated = sum(counts[k] for k in ("import lines", "usage lines", "plan edits"))
    print(f"fuzz files: {failures.count} calls over {generated} "
          f"generated lines ({dict(counts)}); {sum(failures.where.values())} non-project exceptions")
    assert generated >= FILE_CASES
    assert sum(failures.where.values()) == 0, f"non-project exceptions:\n{summary}\n" + \
        "\n".join(failures.records)
    assert counts["imports aborted"] == 0
    assert counts["import lines unaccounted"] == 0


def test_known_file_cases_are_project_errors(tmp_path: Path) -> None:
    """The shapes issue 18.8 names, each a project error naming its input."""
    from billing_credits.consumption._simulate import read_usage
    from billing_credits.migrate._transfer import import_grants

    good = '{"customer_id":"cus_1","amount":{"amount":"5","currency":"USD"},"idempotency_key":"ok"}'
    lines = [
        '{"customer_id":"cus_1","amount":{"amount":"5","currency":"USD"},'
        '"idempotency_key":"s5","schedule":5}',
        '{"customer_id":"cus_1","amount":{"amount":"5","currency":"USD"},'
        '"provider":"stripe","id":"cg_\\ud800"}',
        '{"customer_id":"cus_1","amount":{"amount":' + _HUGE + ',"currency":"USD"},'
        '"idempotency_key":"huge"}',
        good]
    problems: dict[int, str] = {}
    with LocalProvider(path=str(tmp_path / "l.db")) as local:
        report = import_grants(local, [x.encode() + b"\n" for x in lines],
                               on_reject=lambda n, _t, why: problems.__setitem__(n, why))
    assert report.created == 1
    assert sorted(problems) == [1, 2, 3]
    assert "schedule" in problems[1]
    assert "id" in problems[2]
    assert "not UTF-8" not in problems[2]
    usage = tmp_path / "usage.jsonl"
    usage.write_text('{"customer_id":"cus_1","at":"2026-01-01T00:00:00Z","amount":' + _HUGE
                     + ',"currency":"USD"}\n')
    with pytest.raises(bc.BillingCreditsError, match=r"usage\.jsonl:1"):
        read_usage(usage)
