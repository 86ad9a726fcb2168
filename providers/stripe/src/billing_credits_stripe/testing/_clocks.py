"""Test clocks for ``StripeFake``: create, retrieve and advance, and the time a grant lives on.

Stripe sources (``stripe`` SDK, API version ``2026-10-28.endive``):

- the object, ``stripe/test_helpers/_test_clock.py``: ``object`` ``"test_helpers.test_clock"``;
  ``frozen_time`` "Time at which all objects belonging to this clock are frozen";
  ``deletes_after`` "Time at which this clock is scheduled to auto delete"; ``status``
  ``advancing`` / ``internal_failure`` / ``ready``; ``status_details.advancing.target_frozen_time``;
- create ``POST /v1/test_helpers/test_clocks`` (``TestClockCreateParams``: ``frozen_time``
  required, ``name``, ``customer``, ``expand``); retrieve ``GET …/{test_clock}``
  (``stripe/test_helpers/_test_clock_service.py`` ``retrieve``; ``TestClockRetrieveParams``:
  ``expand`` only); advance ``POST …/{test_clock}/advance`` (``TestClockAdvanceParams``:
  ``frozen_time`` "Must be after the test clock's current frozen time … If there are no
  subscriptions in this test clock, it cannot be more than two years in the future");
- a customer joins a clock when it is created (https://docs.stripe.com/billing/testing/test-clocks/
  api-advanced-usage); the fake has no customer endpoint, so ``attach_test_clock`` stands for
  that;
- a credit grant "belongs to" a clock (``stripe/billing/_credit_grant.py`` ``test_clock``: "ID of
  the test clock this credit grant belongs to"), and so do its balance transactions
  (``_credit_balance_transaction.py`` ``test_clock``): the fake evaluates such a grant, its
  balance summary and its transactions at the clock's ``frozen_time``, and a grant created
  without ``effective_at`` starts at the frozen time. How Stripe evaluates credit grants under a
  clock is not spelled out beyond those field docs (README, "behaviour relied on").

The fake advances at once (``status`` goes straight back to ``ready``, "Advancement is done when
status changes to Ready", ``_test_clock.py``).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from ._checks import StripeError, _integer, _invalid, _missing, _string, _unknown

__all__ = ["CLOCKS", "clock_route"]

CLOCKS = "/v1/test_helpers/test_clocks"
_ONE = re.compile(r"^/v1/test_helpers/test_clocks/([^/]+)$")
_ADVANCE = re.compile(r"^/v1/test_helpers/test_clocks/([^/]+)/advance$")
TWO_YEARS = 2 * 366 * 24 * 3600
"""The fake's reading of "cannot be more than two years in the future" (no subscriptions)."""
AUTO_DELETE = 30 * 24 * 3600
"""``deletes_after`` the fake sets (Stripe's value is not documented in the sources read)."""


class ClockState(Protocol):
    test_clocks: dict[str, dict[str, Any]]
    customer_clocks: dict[str, str]

    def now(self) -> int: ...

    def _id(self, prefix: str) -> str: ...


def _clock(fake: ClockState, clock_id: str) -> dict[str, Any]:
    found = fake.test_clocks.get(clock_id)
    if found is None:
        raise StripeError(404, f"No such test_clock: '{clock_id}'", code="resource_missing",
                          param="test_clock")
    return found


def create_clock(fake: ClockState, frozen_time: int, name: str | None = None) -> dict[str, Any]:
    """A new clock frozen at ``frozen_time`` (as ``POST /v1/test_helpers/test_clocks``)."""
    clock_id = fake._id("clock_")
    clock = {"id": clock_id, "object": "test_helpers.test_clock", "created": fake.now(),
             "deletes_after": fake.now() + AUTO_DELETE, "frozen_time": int(frozen_time),
             "livemode": False, "name": name, "status": "ready", "status_details": {}}
    fake.test_clocks[clock_id] = clock
    return clock


def advance_clock(fake: ClockState, clock_id: str, frozen_time: int) -> dict[str, Any]:
    """Move ``clock_id`` forward (``TestClockAdvanceParams.frozen_time``: "Must be after the test
    clock's current frozen time")."""
    clock = _clock(fake, clock_id)
    if frozen_time <= clock["frozen_time"]:
        raise _invalid("frozen_time", "The frozen_time must be after the test clock's current "
                       "frozen time.")
    if frozen_time > clock["frozen_time"] + TWO_YEARS:
        raise _invalid("frozen_time", "The frozen_time cannot be more than two years in the "
                       "future.")
    clock["frozen_time"] = int(frozen_time)
    clock["status"] = "ready"
    return clock


def clock_route(fake: ClockState, method: str, path: str,
                params: dict[str, Any]) -> dict[str, Any] | None:
    """Answer the test-clock endpoints; None for any other path."""
    if path == CLOCKS and method == "POST":
        _unknown(params, {"customer", "expand", "frozen_time", "name"})
        frozen = _integer(params, "frozen_time")
        if frozen is None:
            raise _missing("frozen_time")
        clock = create_clock(fake, frozen, _string(params, "name", max_length=300))
        customer = _string(params, "customer")
        if customer is not None:
            # "Existing customer this test clock will be attached to. Once attached, customers
            # can't be removed from a test clock." (TestClockCreateParams.customer). What Stripe
            # answers for a customer already on a clock is not documented: the fake refuses.
            if customer in fake.customer_clocks:
                raise _invalid("customer", f"Customer {customer} is already attached to a test "
                               "clock.")
            fake.customer_clocks[customer] = clock["id"]
        return clock
    if match := _ADVANCE.match(path):
        if method != "POST":
            raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")
        _unknown(params, {"expand", "frozen_time"})
        frozen = _integer(params, "frozen_time")
        if frozen is None:
            raise _missing("frozen_time")
        return advance_clock(fake, match.group(1), frozen)
    if match := _ONE.match(path):
        if method != "GET":
            raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")
        _unknown(params, {"expand"})
        return _clock(fake, match.group(1))
    return None
