"""Issue 8.1 and contracts C1, C2, C6: Stripe forgets idempotency keys, the library does not.

Stripe keeps a key about 24 hours, per account, and replays the first result whatever it was,
500s included (https://docs.stripe.com/idempotency). ``StripeFake`` does the same on its own
clock; the provider finds a grant already carrying the key before creating (C1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_credits_stripe import StripeProvider
from billing_credits_stripe.testing import StripeFake

import billing_credits as bc

DAY = 24 * 3600
START = datetime(2026, 1, 1, tzinfo=UTC)


def grant(key: str | None = "late-1", customer: str = "cus_keys", **changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "customer_id": customer,
        "amount": bc.Money(amount=Decimal("12.00"), currency="USD"),
        "effective_at": START,
        "expires_at": START + timedelta(days=3650),
        "idempotency_key": key,
    }
    data.update(changes)
    return bc.CreditGrant.model_validate(data)


@contextlib.contextmanager
def stripe_on(fake: StripeFake, runtime: bc.Runtime, **settings: Any) -> Iterator[StripeProvider]:
    transport = fake.transport()
    with httpx.Client(transport=transport) as client:
        provider = bc.get_provider("stripe", api_key="sk_test_keys", http_client=client,
                                   async_http_client=httpx.AsyncClient(transport=transport),
                                   runtime=runtime, **settings)
        assert isinstance(provider, StripeProvider)
        yield provider


def post(fake: StripeFake, key: str, *, account: str | None = None, value: int = 1000
         ) -> httpx.Response:
    headers = {"Authorization": "Bearer sk_test_keys", "Idempotency-Key": key}
    if account:
        headers["Stripe-Account"] = account
    body = (f"amount[type]=monetary&amount[monetary][currency]=usd&amount[monetary][value]={value}"
            "&applicability_config[scope][price_type]=metered&customer=cus_raw")
    with httpx.Client(transport=fake.transport(), base_url="https://api.stripe.com") as http:
        return http.post("/v1/billing/credit_grants", content=body, headers={
            **headers, "Content-Type": "application/x-www-form-urlencoded"})


# -- the fake models Stripe's key memory (C6) ----------------------------------------------


def test_fake_forgets_a_key_24_hours_after_first_use(fake: StripeFake) -> None:
    first = post(fake, "k-1")
    assert first.status_code == 200
    fake.advance(DAY - 1)
    replay = post(fake, "k-1")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    fake.advance(1)
    late = post(fake, "k-1")
    assert "Idempotent-Replayed" not in late.headers
    assert late.json()["id"] != first.json()["id"], "a pruned key is a new request"
    assert len(fake.grants) == 2


def test_fake_forget_idempotency_keys_prunes_now(fake: StripeFake) -> None:
    post(fake, "k-2")
    fake.forget_idempotency_keys()
    post(fake, "k-2")
    assert len(fake.grants) == 2


def test_fake_keeps_keys_per_connected_account(fake: StripeFake) -> None:
    a = post(fake, "shared", account="acct_A")
    b = post(fake, "shared", account="acct_B")
    again = post(fake, "shared", account="acct_A")
    assert a.json()["id"] != b.json()["id"], "one key in two accounts: two requests"
    assert again.json()["id"] == a.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"


def test_fake_saves_a_5xx_and_replays_it(fake: StripeFake) -> None:
    fake.inject_error(500, message="boom")
    assert post(fake, "k-500").status_code == 500
    replay = post(fake, "k-500")
    assert replay.status_code == 500, "Stripe saves the first result, 500s included"
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert fake.grants == {}
    fake.advance(DAY)
    assert post(fake, "k-500").status_code == 200


def test_fake_does_not_save_validation_failures(fake: StripeFake) -> None:
    assert post(fake, "k-400", value=0).status_code == 400
    assert post(fake, "k-400").status_code == 200


# -- the provider: a key never yields two grants (C1), replayed says so (C2) ----------------


def test_keyed_create_repeated_after_the_window_gives_one_grant(
        fake: StripeFake, runtime: bc.Runtime) -> None:
    with stripe_on(fake, runtime) as stripe:
        first = stripe.create_grant(grant())
        assert first.replayed is False
        fake.advance(DAY + 60)
        again = stripe.create_grant(grant())
    assert again.id == first.id
    assert again.replayed is True
    assert len(fake.grants) == 1


def test_without_the_lookup_the_fake_would_make_a_second_grant(
        fake: StripeFake, runtime: bc.Runtime) -> None:
    """What the lookup protects against: the same create with find_existing off."""
    with stripe_on(fake, runtime, find_existing="off") as stripe:
        first = stripe.create_grant(grant())
        replayed = stripe.create_grant(grant())
        assert replayed.id == first.id
        assert replayed.replayed is True, "Stripe's Idempotent-Replayed header"
        fake.advance(DAY)
        stripe.create_grant(grant())
    assert len(fake.grants) == 2


async def test_async_keyed_create_after_the_window_gives_one_grant(
        fake: StripeFake, runtime: bc.Runtime) -> None:
    with stripe_on(fake, runtime) as stripe:
        first = await stripe.acreate_grant(grant("late-async"))
        fake.forget_idempotency_keys()
        again = await stripe.acreate_grant(grant("late-async"))
    assert (again.id, again.replayed) == (first.id, True)
    assert len(fake.grants) == 1


def test_a_late_repeat_with_other_parameters_is_a_conflict(
        fake: StripeFake, runtime: bc.Runtime) -> None:
    with stripe_on(fake, runtime) as stripe:
        stripe.create_grant(grant())
        fake.advance(DAY)
        with pytest.raises(bc.ConflictError, match="amount") as conflict:
            stripe.create_grant(grant(amount=bc.Money(amount=Decimal("13.00"), currency="USD")))
    assert conflict.value.code == "idempotency_error"
    assert len(fake.grants) == 1


def test_keys_and_grants_are_per_connected_account(fake: StripeFake, runtime: bc.Runtime) -> None:
    with stripe_on(fake, runtime, stripe_account="acct_A") as a, \
            stripe_on(fake, runtime, stripe_account="acct_B") as b:
        in_a = a.create_grant(grant("per-account"))
        in_b = b.create_grant(grant("per-account"))
        assert in_a.id != in_b.id
        assert (in_a.replayed, in_b.replayed) == (False, False)
        assert [g.id for g in b.list_grants("cus_keys")] == [in_b.id]
        with pytest.raises(bc.NotFoundError):
            b.get_grant(in_a.id or "")


def test_lookup_cost_is_one_list_request_per_100_grants(
        fake: StripeFake, runtime: bc.Runtime) -> None:
    """The cost the READMEs state: ceil(customer's grants / 100) list requests per create."""
    with stripe_on(fake, runtime, find_existing=False) as seed:
        for n in range(250):
            seed.create_grant(grant(None, amount=bc.Money(amount=Decimal(n + 1), currency="USD")))
    with stripe_on(fake, runtime) as stripe:
        fake.requests.clear()
        stripe.create_grant(grant("costed"))
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in fake.requests] == [
        ("GET", "credit_grants")] * 3 + [("POST", "credit_grants")]
    assert all(r.params.get("limit") == "100" for r in fake.requests[:3])


def test_an_unkeyed_create_does_not_look(fake: StripeFake, runtime: bc.Runtime) -> None:
    with stripe_on(fake, runtime) as stripe:
        stripe.create_grant(grant(None))
    assert [r.method for r in fake.requests] == ["POST"]


def test_a_replayed_5xx_is_not_retried_and_the_grant_is_made_once(
        fake: StripeFake, runtime: bc.Runtime) -> None:
    """Stripe replays a saved 500 for as long as it keeps the key: retrying it is futile.
    The provider looks for the grant and, absent, creates under a derived key."""
    with stripe_on(fake, runtime, find_existing=False) as stripe:
        fake.inject_error(500, message="failed during execution")
        made = stripe.create_grant(grant("saved-500"))
        again = stripe.create_grant(grant("saved-500"))
    posts = [r for r in fake.requests if r.method == "POST"]
    assert [r.status for r in posts[:2]] == [500, 500], "the retry got the saved 500"
    assert made.replayed is False
    assert made.idempotency_key == "saved-500"
    assert len(fake.grants) == 1
    assert again.id == made.id


def test_capability_and_setting_are_declared() -> None:
    info = next(p for p in bc.available_providers() if p.name == "stripe")
    assert info.capabilities.idempotency_key_memory == timedelta(hours=24)
    assert "find_existing" in {s.name for s in info.settings}
    rows = dict(info.capabilities.describe())
    assert "24 h" in rows["idempotency keys"]


def test_a_late_repeat_with_another_scope_is_a_conflict(fake: StripeFake,
                                                        runtime: bc.Runtime) -> None:
    """All usage is stored as metered prices (an adjustment), yet a repeat asking for given
    prices under the same key is another request, not the same one."""
    with stripe_on(fake, runtime) as stripe:
        stripe.create_grant(grant("scoped"))
        fake.forget_idempotency_keys()
        assert stripe.create_grant(grant("scoped")).replayed is True
        with pytest.raises(bc.ConflictError, match="scope"):
            stripe.create_grant(grant("scoped", scope=bc.Scope(price_ids=("price_A",))))
    assert len(fake.grants) == 1


def test_advance_moves_every_reader_of_the_fakes_clock() -> None:
    fake = StripeFake(clock=lambda: 1_700_000_000)
    fake.advance(90)
    assert fake.clock() == fake.now() == 1_700_000_090
