"""Issue 9.4 on the arguments of the provider API and the simulator: a time that overflows once
in UTC, an id UTF-8 cannot encode, an argument of the wrong type is one of the project's errors
(they escaped as OverflowError, UnicodeEncodeError, sqlite3.ProgrammingError, TypeError)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import billing_credits as bc
from billing_credits.local import LocalProvider

WEST = timezone(timedelta(hours=-1))
EAST = timezone(timedelta(hours=1))


@pytest.fixture
def local(tmp_path: Path) -> LocalProvider:
    return LocalProvider(tmp_path / "args.db")


@pytest.mark.parametrize("moment", [datetime.max.replace(tzinfo=WEST),
                                    datetime.min.replace(tzinfo=EAST)])
@pytest.mark.parametrize("call", [
    lambda p, m: p.get_balance("cus_1", at=m),
    lambda p, m: list(p.list_ledger("cus_1", since=m)),
], ids=["balance-at", "ledger-since"])
def test_a_time_outside_the_calendar_in_utc_is_refused(
        local: LocalProvider, moment: datetime, call: Callable[[Any, datetime], Any]) -> None:
    with pytest.raises(bc.InvalidGrantError, match="outside the calendar"):
        call(local, moment)


@pytest.mark.parametrize("bad", ["cus_\ud800", 5, ["cus_1"], {"a": 1}, Decimal(1)])
@pytest.mark.parametrize("call", [
    lambda p, v: p.get_grant(v),
    lambda p, v: p.void_grant(v),
    lambda p, v: p.expire_grant(v),
    lambda p, v: p.get_balance(v),
    lambda p, v: p.get_balance("cus_1", unit=v),
    lambda p, v: list(p.list_ledger(v)),
    lambda p, v: list(p.list_ledger("cus_1", grant_id=v)),
    lambda p, v: list(p.list_grants(v)),
    lambda p, v: p.update_grant(v, name="x"),
], ids=["get", "void", "expire", "balance", "balance-unit", "ledger", "ledger-grant", "list",
        "update"])
def test_an_id_that_is_not_text_is_refused_before_any_io(
        local: LocalProvider, bad: Any, call: Callable[[Any, Any], Any]) -> None:
    with pytest.raises(bc.InvalidGrantError):
        call(local, bad)


@pytest.mark.parametrize("page_size", ["5", 2.5, [1], True])
def test_a_page_size_that_is_not_a_whole_number_is_refused(
        local: LocalProvider, page_size: Any) -> None:
    with pytest.raises(bc.ConfigurationError, match="page_size"):
        list(local.list_grants(page_size=page_size))


GRANT = bc.CreditGrant(id="g1", customer_id="c", amount=bc.Money(amount=Decimal(5), currency="USD"),
                       effective_at=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("kwargs", [
    {"start": datetime(9999, 12, 31, tzinfo=UTC)}, {"start": datetime.max.replace(tzinfo=UTC)},
    {"start": datetime(2026, 1, 1)}, {"start": "2026-01-01"}, {"steps": "5"}, {"steps": 2.5}])
def test_a_simulation_start_or_steps_the_model_refuses_is_an_invalid_grant_error(
        kwargs: dict[str, Any]) -> None:
    with pytest.raises(bc.InvalidGrantError):
        bc.simulate([GRANT], None, bc.LOCAL_ORDER, **kwargs)


def test_a_simulation_starting_near_the_end_of_the_calendar_still_runs() -> None:
    result = bc.simulate([GRANT], None, bc.LOCAL_ORDER, start=datetime(9999, 12, 28, tzinfo=UTC))
    assert result.customers["c"].grants


def test_simulating_something_that_is_not_a_grant_is_refused() -> None:
    with pytest.raises(bc.InvalidGrantError, match="not a CreditGrant"):
        bc.simulate(["g1"], None, bc.LOCAL_ORDER)  # type: ignore[list-item]
