"""Orb's dates are days in the customer's timezone (``Customer.timezone``, ``orb/types/
customer.py``; ``ledger.py``: "credit expiry should always happen close to a date boundary in
the customer's timezone"). The provider reads the timezone (one ``GET`` per customer, cached),
moves a start later and an end earlier to the customer's local day boundaries, reports each
move, and reads dates back in that timezone. Driven through the SDK over ``OrbFake``, whose
customers carry a timezone."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_credits_orb import OrbProvider
from billing_credits_orb import _translate as tr
from billing_credits_orb.testing import OrbFake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import billing_credits as bc

from .conftest import API_KEY

NOW = datetime(2026, 2, 10, tzinfo=UTC)
ZONES = sorted(zoneinfo.available_timezones())


def _setup(timezone: str, **settings_: Any) -> tuple[OrbFake, OrbProvider, str]:
    fake = OrbFake(api_key=API_KEY, seed=3, clock=NOW.timestamp)
    customer = fake.add_customer(currency="USD", timezone=timezone, external_id="ext-1")
    transport = fake.transport()
    provider = OrbProvider(API_KEY, http_client=httpx.Client(transport=transport),
                           async_http_client=httpx.AsyncClient(transport=transport),
                           clock=lambda: NOW, **settings_)
    return fake, provider, customer


def _grant(customer: str, start: datetime | None, end: datetime | None) -> bc.CreditGrant:
    return bc.CreditGrant(customer_id=customer,
                          amount=bc.Money(amount=Decimal("25"), currency="USD"),
                          effective_at=start, expires_at=end)


def _moves(grant: bc.CreditGrant) -> dict[str, bc.Adjustment]:
    return {a.field: a for a in grant.adjustments if "customer's timezone" in a.reason}


def test_a_customer_west_of_utc_never_holds_credit_past_the_source_expiry() -> None:
    fake, provider, customer = _setup("America/Los_Angeles")
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    la = zoneinfo.ZoneInfo("America/Los_Angeles")
    # the danger: the UTC day 2027-01-01, read as a Los Angeles day, ends 8 hours late
    assert datetime(2027, 1, 1, tzinfo=la) > end

    grant = provider.create_grant(_grant(customer, start, end))

    assert grant.expires_at == datetime(2026, 12, 31, 8, tzinfo=UTC) <= end
    assert grant.effective_at == datetime(2026, 3, 1, 8, tzinfo=UTC) >= start
    (block,) = fake.blocks.values()
    assert block.expiry == grant.expires_at
    assert block.effective == grant.effective_at
    moves = _moves(grant)
    assert moves["expires_at"].requested == end.isoformat()
    assert moves["expires_at"].stored == grant.expires_at.isoformat()
    assert "America/Los_Angeles" in moves["expires_at"].reason
    assert "earlier" in moves["expires_at"].reason
    assert "later" in moves["effective_at"].reason
    post = [r for r in fake.requests if r.method == "POST"][-1]
    # the local midnight with its offset: the same date in the text and in Los Angeles
    assert post.body["expiry_date"] == "2026-12-31T00:00:00-08:00"
    assert post.body["effective_date"] == "2026-03-01T00:00:00-08:00"
    assert provider.get_grant(grant.id or "").expires_at == grant.expires_at


def test_a_customer_east_of_utc_starts_a_day_later_and_ends_on_its_local_day() -> None:
    fake, provider, customer = _setup("Asia/Tokyo")
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)

    grant = provider.create_grant(_grant(customer, start, end))

    # 2026-03-01T00:00Z is 09:00 in Tokyo: the first whole Tokyo day starts on 03-02 (15:00Z)
    assert grant.effective_at == datetime(2026, 3, 1, 15, tzinfo=UTC) >= start
    assert grant.expires_at == datetime(2026, 12, 31, 15, tzinfo=UTC) <= end
    assert set(_moves(grant)) == {"effective_at", "expires_at"}
    (block,) = fake.blocks.values()
    assert (block.effective, block.expiry) == (grant.effective_at, grant.expires_at)


def test_a_utc_customer_is_sent_what_it_was_and_nothing_is_reported() -> None:
    _, provider, customer = _setup("UTC")
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    grant = provider.create_grant(_grant(customer, start, end))
    assert (grant.effective_at, grant.expires_at) == (start, end)
    assert grant.adjustments == ()


def test_the_timezone_is_read_once_per_customer_before_sending_dates() -> None:
    fake, provider, customer = _setup("America/Los_Angeles", find_existing="off")
    window = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    provider.create_grant(_grant(customer, *window))
    provider.create_grant(_grant(customer, *window))
    paths = [(r.method, r.path) for r in fake.requests]
    fetches = [i for i, p in enumerate(paths) if p == ("GET", f"/customers/{customer}")]
    posts = [i for i, p in enumerate(paths) if p[0] == "POST"]
    assert len(fetches) == 1
    assert fetches[0] < posts[0]
    assert len(posts) == 2


def test_external_ids_read_the_timezone_by_external_id() -> None:
    fake, provider, _customer = _setup("America/Los_Angeles", customer_ids="external")
    grant = provider.create_grant(_grant("ext-1", datetime(2026, 3, 1, tzinfo=UTC),
                                         datetime(2027, 1, 1, tzinfo=UTC)))
    assert grant.expires_at == datetime(2026, 12, 31, 8, tzinfo=UTC)
    assert ("GET", "/customers/external_customer_id/ext-1") in [
        (r.method, r.path) for r in fake.requests]


def test_update_and_expire_use_the_customers_local_day() -> None:
    fake, provider, customer = _setup("America/Los_Angeles")
    grant = provider.create_grant(_grant(customer, datetime(2026, 1, 1, tzinfo=UTC),
                                         datetime(2027, 1, 1, tzinfo=UTC)))
    target = datetime(2026, 7, 1, tzinfo=UTC)
    updated = provider.update_grant(grant.id or "", expires_at=target)
    # 2026-07-01T00:00Z is 06-30 17:00 in Los Angeles (PDT): the block ends at 06-30's start
    assert updated.expires_at == datetime(2026, 6, 30, 7, tzinfo=UTC) <= target
    assert _moves(updated)["expires_at"].requested == target.isoformat()
    change = [r for r in fake.requests if r.method == "POST"][-1]
    assert change.body["target_expiry_date"] == "2026-06-30"
    expired = provider.expire_grant(grant.id or "")
    # NOW is 2026-02-10T00:00Z, still 02-09 in Los Angeles: its start, never after now
    assert expired.expires_at == datetime(2026, 2, 9, 8, tzinfo=UTC) <= NOW
    assert expired.status is bc.GrantStatus.EXPIRED


def test_a_window_without_a_whole_local_day_is_refused_before_sending() -> None:
    fake, provider, customer = _setup("America/Los_Angeles")
    with pytest.raises(bc.NotRepresentableError) as raised:
        provider.create_grant(_grant(customer, datetime(2026, 3, 1, tzinfo=UTC),
                                     datetime(2026, 3, 2, tzinfo=UTC)))
    assert "expires_at" in str(raised.value)
    assert not fake.blocks
    assert not [r for r in fake.requests if r.method == "POST"]


def test_an_unknown_timezone_is_an_unusable_answer_never_utc() -> None:
    fake, provider, customer = _setup("UTC")
    fake.customers[customer].timezone = "Mars/Olympus_Mons"
    with pytest.raises(bc.InvalidResponseError, match="Mars/Olympus_Mons"):
        provider.create_grant(_grant(customer, datetime(2026, 3, 1, tzinfo=UTC),
                                     datetime(2027, 1, 1, tzinfo=UTC)))
    assert not fake.blocks


def test_a_bare_date_read_back_is_the_customers_local_day() -> None:
    block = {"id": "b1", "balance": Decimal(5), "maximum_initial_balance": Decimal(5),
             "effective_date": "2026-03-01", "expiry_date": "2027-01-01T00:00:00",
             "filters": [], "metadata": {"bc_customer": "c"}, "per_unit_cost_basis": None,
             "status": "active"}
    grant = tr.from_block(block, currency="USD", now=NOW, timezone="America/Los_Angeles")
    assert grant.effective_at == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert grant.expires_at == datetime(2027, 1, 1, 8, tzinfo=UTC)


# -- properties --------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(1980, 1, 1), max_value=datetime(2090, 1, 1),
                        timezones=st.just(UTC))


@given(zone=st.sampled_from(ZONES), start=instants, length=st.timedeltas(
    min_value=timedelta(0), max_value=timedelta(days=800)))
def test_alignment_is_always_in_the_safe_direction_and_reported(
        zone: str, start: datetime, length: timedelta) -> None:
    end = start + length
    try:
        aligned_start, aligned_end, moves = tr.align_window(start, end, zone)
    except bc.NotRepresentableError:
        # refused only when no whole local day fits
        tz = zoneinfo.ZoneInfo(zone)
        assert tr.local_floor(end, tz) <= tr.local_ceil(start, tz)
        return
    assert aligned_start is not None
    assert aligned_end is not None
    assert start <= aligned_start < aligned_end <= end
    reported = {m.field: m for m in moves}
    assert ("effective_at" in reported) == (aligned_start != start)
    assert ("expires_at" in reported) == (aligned_end != end)
    tz = zoneinfo.ZoneInfo(zone)
    for moment in (aligned_start, aligned_end):
        # a local day boundary, which the customer's timezone reads back unchanged
        assert tr.local_floor(moment, tz) == moment
        sent = moment.astimezone(tz)
        assert tr.local_floor(datetime.fromisoformat(sent.isoformat()), tz) == moment


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(zone=st.sampled_from(ZONES), start_day=st.integers(0, 2000),
       days=st.integers(1, 400))
def test_through_the_fake_the_stored_window_is_inside_the_requested_one(
        zone: str, start_day: int, days: int) -> None:
    fake, provider, customer = _setup(zone)
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=start_day)
    end = start + timedelta(days=days)
    try:
        grant = provider.create_grant(_grant(customer, start, end))
    except bc.NotRepresentableError:
        assert not fake.blocks  # a window without a whole local day: refused, nothing sent
        return
    assert grant.effective_at is not None
    assert grant.expires_at is not None
    assert start <= grant.effective_at < grant.expires_at <= end
    (block,) = fake.blocks.values()
    assert (block.effective, block.expiry) == (grant.effective_at, grant.expires_at)
    moves = _moves(grant)
    assert ("effective_at" in moves) == (grant.effective_at != start)
    assert ("expires_at" in moves) == (grant.expires_at != end)
