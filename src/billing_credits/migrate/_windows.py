"""What is left of a grant's windows at a moment: the amounts to carry over, window by window."""

from __future__ import annotations

import decimal
from datetime import datetime
from typing import Any

from billing_credits._errors import (
    MigrationError,
)
from billing_credits._model import CreditGrant, GrantStatus, Segment
from billing_credits._money import exact, exact_sum
from billing_credits.consumption._simulate import _windowed

from ._plan import (
    AmountMode,
    Change,
)

__all__ = ["as_of"]


def _allot(
    grant: CreditGrant, amount_mode: AmountMode, now: datetime, changes: list[Change]
) -> list[tuple[int, Segment]]:
    """The windows to grant on the target, each with its amount, recording every reduction.

    Ended windows are gone. In ``remaining`` mode the balance fills the latest windows first
    (usage draws on the current one); a balance above what the live windows hold is refused.
    """
    live: list[tuple[int, Segment]] = []
    for index, segment in enumerate(grant.segments):
        if segment.ends_before is not None and segment.ends_before <= now:
            changes.append(Change(field=f"schedule.{index}.amount", source=str(segment.amount),
                                  target=None, why="window ended"))
        else:
            live.append((index, segment))
    if amount_mode == "original":
        return live
    assert grant.balance is not None
    remaining = grant.balance.amount
    held = exact_sum(s.amount for _, s in live)
    if remaining > held:
        raise MigrationError(f"balance {remaining} exceeds the {held} its live windows hold")
    allotted: list[tuple[int, Segment]] = []
    with decimal.localcontext(exact()):
        for index, segment in reversed(live):
            amount = min(segment.amount, remaining)
            remaining -= amount
            if amount != segment.amount:
                field = "amount" if grant.schedule is None else f"schedule.{index}.amount"
                changes.append(Change(field=field, source=str(segment.amount),
                                      target=str(amount) if amount else None,
                                      why="remaining balance"))
            if amount > 0:
                allotted.append((index, Segment(amount=amount, starts_at=segment.starts_at,
                                                ends_before=segment.ends_before)))
    allotted.reverse()
    return allotted

def _window(grant: CreditGrant, allotted: list[tuple[int, Segment]]) -> dict[str, Any]:
    """Amount, window and schedule of one target grant holding every allotted window."""
    segments = [segment for _, segment in allotted]
    fields: dict[str, Any] = {
        "amount": grant.amount.with_amount(exact_sum(s.amount for s in segments)),
    }
    if grant.schedule is None:
        return fields
    if len(segments) == 1:
        fields.update(schedule=None, effective_at=segments[0].starts_at,
                      expires_at=segments[0].ends_before)
    else:
        fields.update(schedule=tuple(segments), effective_at=segments[0].starts_at,
                      expires_at=segments[-1].ends_before)
    return fields


def as_of(grant: CreditGrant, now: datetime) -> CreditGrant | None:
    """The grant as it stands at ``now``: what is left in the windows still to come.

    None when it is voided, expired or used up. Without a reported balance, the granted
    amounts of the live windows. The id and customer are kept.
    """
    if grant.status is GrantStatus.VOIDED or grant.status is GrantStatus.EXPIRED:
        return None
    if grant.expires_at is not None and grant.expires_at <= now:
        return None
    if grant.balance is not None and grant.balance.amount <= 0:
        return None
    grant = _windowed(grant, now)
    allotted = _allot(grant, "remaining" if grant.balance is not None else "original", now, [])
    if not allotted:
        return None
    fields = _window(grant, allotted)
    if grant.schedule is None and grant.effective_at is None:
        fields["effective_at"] = grant.created_at
    return grant.model_copy(update={**fields, "balance": None})
