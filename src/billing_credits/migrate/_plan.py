"""Migration plan records and the plan file: what a plan holds, read and written as JSON lines,
and the small helpers the planner, apply and verify share.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal, overload

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from billing_credits._errors import (
    BillingCreditsError,
    InputTooLargeError,
    MigrationError,
    UnsupportedOperationError,
)
from billing_credits._lines import MAX_LINE_BYTES, bounded_lines
from billing_credits._model import MIGRATED_KEY, CreditGrant
from billing_credits._money import exact_json, exact_sum
from billing_credits._provider import Provider
from billing_credits._secrets import redact

__all__ = [
    "PROVENANCE_KEYS",
    "AmountMode",
    "Change",
    "MigrationPlan",
    "PlanHeader",
    "PlanItem",
    "PriorityPolicy",
    "Retire",
    "migration_key",
]


AmountMode = Literal["remaining", "original"]

PriorityPolicy = Literal["exact", "preserve-order"]

Retire = Literal["void", "expire"]

PROVENANCE_KEYS = ("migrated_from_provider", "migrated_from_grant", "migrated_from_segment",
                   MIGRATED_KEY)
"""Every metadata key ``plan_migration(provenance=True)`` may write on a target grant. A vendor
that accepts only registered keys registers these in its ``Provider.setup()``."""

def migration_key(source_provider: str, source_id: str, segment: int | None) -> str:
    """The idempotency key of one planned grant: the same inputs always give the same key."""
    digest = hashlib.sha256(f"{source_provider}\0{source_id}\0{segment}".encode()).hexdigest()
    return f"bcm-{digest[:48]}"

class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

class Change(_Record):
    """One field that differs between the source grant and what the target will hold."""

    field: str
    source: str | None
    target: str | None
    why: str

class PlanItem(_Record):
    """What happens to one source grant (or one of its segments)."""

    kind: Literal["item"] = "item"
    source_id: str
    segment: int | None = None
    customer_id: str
    action: Literal["migrate", "skip"]
    reason: str | None = None
    refused: bool = False
    grant: CreditGrant | None = None
    changes: tuple[Change, ...] = ()

    @model_validator(mode="after")
    def _migrate_has_a_keyed_grant(self) -> PlanItem:
        # An edited plan must not reach apply with nothing (or nothing keyed) to create.
        if self.action == "migrate" and (self.grant is None or not self.grant.idempotency_key):
            raise ValueError("a 'migrate' item needs its grant, with its idempotency_key")
        return self

    @property
    def key(self) -> str | None:
        return self.grant.idempotency_key if self.grant is not None else None

class PlanHeader(_Record):
    kind: Literal["header"] = "header"
    source: str
    target: str
    target_identity: str | None = None
    """``target.identity()`` when planned: apply refuses any other target account or store."""
    source_identity: str | None = None
    retire_overlaps: dict[str, str] = {}
    """For each way of retiring (``void``, ``expire``) after which the source's credit stays
    spendable a while (``Provider.retire_effective_at``): how long, had it been retired when
    planned. Apply reports each actual window."""
    created_at: datetime
    amount_mode: AmountMode
    priority_policy: PriorityPolicy
    strict: bool
    remaining_source: str | None = None
    """Where the remaining amounts came from (``Provider.remaining_source``), in remaining mode."""
    source_balances: dict[str, dict[str, str]] | None = None
    """Per target customer and unit, the usable balance on the source when planning (where the
    source reports balances): ``verify`` compares the target's with it."""
    source_balances_unavailable: dict[str, str] = {}
    """Target customers whose source balance could not be read when planning, with why (it
    does not stop the plan): ``verify`` skips their balance comparison and says so."""

    @field_validator("source_balances")
    @classmethod
    def _finite_balances(cls, value: dict[str, dict[str, str]] | None
                         ) -> dict[str, dict[str, str]] | None:
        """Each balance an exact finite number (an edited plan cannot crash ``verify``)."""
        for customer, units in (value or {}).items():
            for unit, amount in units.items():
                try:
                    number = Decimal(amount)
                except ArithmeticError:
                    number = None
                if number is None or not number.is_finite() or number.adjusted() > 38:
                    raise ValueError(f"{customer} {unit}: {amount[:40]!r} is not a balance")
        return value

class _Tally:
    """The plan's summary, added up one item at a time (memory: per customer and reason)."""

    def __init__(self) -> None:
        self.to_create = 0
        self.refused = 0
        self.changes = 0
        self.skipped: Counter[str] = Counter()
        self.refusal_reasons: Counter[str] = Counter()
        self.change_reasons: Counter[str] = Counter()
        self.sums: dict[str, dict[str, list[Any]]] = defaultdict(dict)

    def add(self, item: PlanItem) -> None:
        if item.action == "migrate":
            assert item.grant is not None
            self.to_create += 1
            units = self.sums[item.grant.customer_id]
            unit = item.grant.amount.unit_key
            held = units.setdefault(unit, [Decimal(0), 0])
            held[0] = exact_sum((held[0], item.grant.amount.amount))
            held[1] += 1
        elif not item.refused:
            self.skipped[item.reason or ""] += 1
        if item.refused:
            self.refused += 1
            self.refusal_reasons[item.reason or ""] += 1
        self.changes += len(item.changes)
        for change in item.changes:
            self.change_reasons[f"{_field_kind(change.field)}: {change.why}"] += 1

    def totals(self) -> dict[str, dict[str, dict[str, str]]]:
        return {
            customer: {unit: {"planned": str(total), "grants": str(count)}
                       for unit, (total, count) in sorted(units.items())}
            for customer, units in sorted(self.sums.items())
        }

    def summary(self, header: PlanHeader) -> dict[str, Any]:
        return {
            "kind": "summary",
            "source": header.source,
            "target": header.target,
            "target_identity": header.target_identity,
            "retire_overlaps": header.retire_overlaps,
            "grants_to_create": self.to_create,
            "skipped": dict(sorted(self.skipped.items())),
            "refused": self.refused,
            "refusal_reasons": dict(sorted(self.refusal_reasons.items())),
            "changes": self.changes,
            "change_reasons": dict(sorted(self.change_reasons.items())),
            "totals": self.totals(),
        }

class _PlanFile(Sequence[PlanItem]):
    """The items of a plan file, read from the file each time they are iterated (never held).

    The file was checked whole when opened; it is refused if it changed since."""

    def __init__(self, path: Path, count: int, stamp: tuple[int, int]) -> None:
        self.path = path
        self._count = count
        self._stamp = stamp

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> PlanItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[PlanItem]: ...

    def __getitem__(self, index: int | slice) -> PlanItem | list[PlanItem]:
        return list(self)[index]

    def _check(self) -> None:
        if _stamp(self.path) != self._stamp:
            raise MigrationError(f"{self.path} changed since it was read: load it again")

    def __iter__(self) -> Iterator[PlanItem]:
        for _, item in self.located():
            yield item

    def located(self) -> Iterator[tuple[int, PlanItem]]:
        """Each item with its byte offset in the file (``at`` reads it again)."""
        self._check()
        with self.path.open("rb") as lines:
            offset = 0
            for _, line in bounded_lines(lines, source=str(self.path)):
                assert isinstance(line, bytes)
                at, offset = offset, offset + len(line)
                data = exact_json(line)
                if isinstance(data, dict) and data.get("kind") == "item":
                    yield at, PlanItem.model_validate(data)

    def at(self, offsets: Iterable[int]) -> Iterator[PlanItem]:
        self._check()
        with self.path.open("rb") as lines:
            for offset in offsets:
                lines.seek(offset)
                yield _item(lines.readline(MAX_LINE_BYTES + 2))

def _item(line: bytes) -> PlanItem:
    return PlanItem.model_validate(exact_json(line.decode("utf-8")))

def _stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns

@dataclass
class MigrationPlan:
    """A reviewable plan: a header, one ``PlanItem`` per decision, and totals.

    ``items`` is a list, or, for a plan opened with ``MigrationPlan.open``, the plan file's
    items read on each pass (a plan of any size then costs no memory per item; ``to_create``
    and ``refusals`` still make lists, ``iter_items`` does not)."""

    header: PlanHeader
    items: Sequence[PlanItem] = field(default_factory=list)

    def iter_items(self) -> Iterator[PlanItem]:
        return iter(self.items)

    def located(self) -> Iterator[tuple[int, PlanItem]]:
        """Each item with where it is (``items_at`` reads it again)."""
        if isinstance(self.items, _PlanFile):
            return self.items.located()
        return enumerate(self.items)

    def items_at(self, positions: Iterable[int]) -> Iterator[PlanItem]:
        """The items at these positions (from ``located``), in that order."""
        if isinstance(self.items, _PlanFile):
            return self.items.at(positions)
        return (self.items[position] for position in positions)

    @property
    def to_create(self) -> list[PlanItem]:
        return [i for i in self.items if i.action == "migrate"]

    @property
    def refusals(self) -> list[PlanItem]:
        return [i for i in self.items if i.refused]

    def _tally(self) -> _Tally:
        tally = _Tally()
        for item in self.items:
            tally.add(item)
        return tally

    def totals(self) -> dict[str, dict[str, dict[str, str]]]:
        """Per target customer and unit: the amount planned and the number of grants."""
        return self._tally().totals()

    def change_counts(self) -> dict[str, int]:
        """Each kind of change (field and reason) with the number of plan items it touches:
        the same reason is counted, not repeated once per grant."""
        return dict(sorted(self._tally().change_reasons.items()))

    def summary(self) -> dict[str, Any]:
        return self._tally().summary(self.header)

    def write(self, out: IO[str]) -> None:
        """JSON lines: the header, each item, the summary."""
        out.write(self.header.model_dump_json() + "\n")
        tally = _Tally()
        for item in self.items:
            tally.add(item)
            out.write(_line(item))
        out.write(json.dumps(tally.summary(self.header), sort_keys=True) + "\n")

    def save(self, path: str | Path) -> None:
        """Write the plan atomically: a reader never sees half of it."""
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")
        with partial.open("w") as out:
            self.write(out)
        partial.replace(path)

    def fingerprint(self) -> str:
        """A digest of what the plan creates: the journal is tied to it."""
        digest = hashlib.sha256(f"{self.header.source}\0{self.header.target}".encode())
        for item in self.items:
            if item.action == "migrate":
                assert item.grant is not None
                digest.update(item.grant.model_dump_json(exclude={"raw"}).encode())
        return digest.hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> MigrationPlan:
        """Read a plan written by ``save``, checking it is whole (its summary agrees)."""
        items: list[PlanItem] = []
        header = _read_plan(path, items.append)
        return cls(header, items)

    @classmethod
    def open(cls, path: str | Path) -> MigrationPlan:
        """Like ``load``, checking the whole file, but holding none of its items: they are
        read from the file on each pass (``apply_plan`` and ``verify_plan`` make a few)."""
        path = Path(path)
        stamp = _stamp(path)
        count = 0

        def counted(_: PlanItem) -> None:
            nonlocal count
            count += 1

        header = _read_plan(path, counted)
        return cls(header, _PlanFile(path, count, stamp))

def _line(item: PlanItem) -> str:
    return item.model_dump_json(exclude={"grant": {"raw"}}) + "\n"

def _read_plan(path: str | Path, keep: Callable[[PlanItem], None]) -> PlanHeader:
    """Read a plan file line by line, giving each item to ``keep``; check its summary."""
    header: PlanHeader | None = None
    summary: dict[str, Any] | None = None
    tally = _Tally()
    try:
        with Path(path).open("rb") as lines:
            for number, line in bounded_lines(lines, source=str(path)):
                assert isinstance(line, bytes)
                data = exact_json(line.decode("utf-8"))
                kind = data.get("kind") if isinstance(data, dict) else None
                if kind == "header":
                    header = PlanHeader.model_validate(data)
                elif kind == "item":
                    item = PlanItem.model_validate(data)
                    tally.add(item)
                    keep(item)
                elif kind == "summary":
                    summary = data
                else:
                    raise MigrationError(f"{path}:{number}: not a plan line")
    except (BillingCreditsError, ValidationError) as error:
        if isinstance(error, MigrationError | InputTooLargeError):
            raise
        raise MigrationError(f"{path}: not a valid plan: {error}") from None
    if header is None or summary is None:
        raise MigrationError(f"{path} is not a whole migration plan (header or summary missing)")
    # Compare what the stored summary holds (a plan written before a summary field was
    # added still loads); the counts and totals must always be there and agree.
    computed = json.loads(json.dumps(tally.summary(header), sort_keys=True, default=str))
    stored = json.loads(json.dumps(summary, sort_keys=True, default=str))
    if any(name not in stored for name in ("grants_to_create", "refused", "totals")) or any(
            computed.get(name) != value for name, value in stored.items()):
        raise MigrationError(f"{path}: the items do not add up to its summary; plan again")
    return header

def _field_kind(name: str) -> str:
    """``schedule.2.amount`` → ``schedule.*.amount``: one kind of change across segments."""
    return re.sub(r"\.\d+\.", ".*.", name)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _recorder(target: Provider) -> Provider | None:
    """The target as migration creates through it (never invoicing), or None when it cannot
    record a paid amount without invoicing it."""
    try:
        return target.record_only()
    except UnsupportedOperationError:
        return None


def _describe(error: BaseException) -> str:
    """One line for any failure; not a project error: its type is named too (secrets removed)."""
    text = " ".join(str(error).split())
    if not isinstance(error, BillingCreditsError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return redact(text)
