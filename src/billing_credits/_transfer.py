"""Export and import of neutral grants as JSON lines: review, archive, replay offline."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Protocol, cast

from ._errors import BillingCreditsError, FieldProblem, InvalidGrantError, MigrationError
from ._migration import migration_key
from ._model import CreditGrant, GrantStatus
from ._provider import Provider

__all__ = ["ImportReport", "export_grants", "import_grants"]


def export_grants(
    provider: Provider, out: IO[str], *, customers: Iterable[str] | None = None,
    include_raw: bool = False, page_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write every grant (of ``customers``, or all) as one JSON line each; return the count.

    Streams page by page: memory does not grow with the number of grants.
    """
    count = 0
    exclude = None if include_raw else {"raw"}
    for customer in (None,) if customers is None else customers:
        for grant in provider.list_grants(customer, page_size=page_size):
            out.write(grant.model_dump_json(exclude=exclude))
            out.write("\n")
            count += 1
            if progress is not None and count % 100 == 0:
                progress(count)
    if progress is not None:
        progress(count)
    return count


@dataclass
class ImportReport:
    """What an import did: grants created, grants already there (same key, same grant), lines
    skipped (with why) and lines that failed."""

    created: int = 0
    already_there: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {"created": self.created, "already_there": self.already_there,
                "skipped": len(self.skipped), "failed": len(self.failed)}


class BatchImporter(Protocol):
    """A provider that creates many keyed grants at once (``local``: one transaction per
    batch). Each result: True created, False already there, or the error refusing it."""

    def import_batch(self, grants: list[CreditGrant]) -> list[bool | BillingCreditsError]: ...


def import_grants(
    provider: Provider, lines: Iterable[str], *, include_ended: bool = False,
    batch_size: int = 1000, progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Create each exported grant on ``provider``; safe to repeat.

    Each grant is created under its own idempotency key or, when it had none, one derived
    from its source provider and id, so importing twice creates nothing the second time. A
    line with neither is refused: it could not be imported safely twice. Voided and expired
    grants are skipped unless ``include_ended`` (they would come back to life at full amount).

    A provider with ``import_batch`` (``local``) gets ``batch_size`` grants at a time, each
    batch one transaction; others get one create each. ``progress`` receives the number of
    lines read so far after each batch.
    """
    report = ImportReport()
    batch = cast("BatchImporter | None", getattr(provider, "import_batch", None) and provider)
    size = batch_size if batch is not None else 1
    known: dict[str, set[str]] = {}
    pending: list[tuple[int, CreditGrant]] = []
    read = 0

    def flush() -> None:
        if not pending:
            return
        if batch is not None:
            results = batch.import_batch([grant for _, grant in pending])
        else:
            results = [_create_one(provider, grant, known) for _, grant in pending]
        for (number, _), result in zip(pending, results, strict=True):
            if isinstance(result, BillingCreditsError):
                report.failed.append((number, str(result)))
            elif result:
                report.created += 1
            else:
                report.already_there += 1
        pending.clear()
        if progress is not None:
            progress(read)

    for number, line in enumerate(lines, start=1):
        read = number
        if not line.strip():
            continue
        try:
            grant = _new_grant(line, include_ended)
        except _Skipped as skipped:
            report.skipped.append((number, str(skipped)))
            continue
        except BillingCreditsError as error:
            report.failed.append((number, str(error)))
            continue
        pending.append((number, grant))
        if len(pending) >= size:
            flush()
    flush()
    report.failed.sort(key=lambda entry: entry[0])
    if progress is not None:
        progress(read)
    return report


class _Skipped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The line is a grant that has ended: skipped, not imported."""


def _new_grant(line: str, include_ended: bool) -> CreditGrant:
    """One exported line as a new grant to create, under its key (validated once).

    Read with exact decimals (a JSON number never passes through a float); the read-back
    fields are dropped as ``CreditGrant.as_new`` would.
    """
    try:
        data = json.loads(line, parse_float=Decimal)
    except ValueError as error:
        raise InvalidGrantError([FieldProblem("", f"not JSON: {error}")]) from None
    if not isinstance(data, dict):
        raise InvalidGrantError([FieldProblem("", "expected a JSON object")])
    status, grant_id, provider = data.get("status"), data.get("id"), data.get("provider")
    if status is not None:
        try:
            state = GrantStatus(status)
        except ValueError:
            raise InvalidGrantError([FieldProblem("status", f"unknown status {status!r}")]) \
                from None
        if state in (GrantStatus.VOIDED, GrantStatus.EXPIRED) and not include_ended:
            raise _Skipped(f"{state.value} grant {grant_id}")
    for name in CreditGrant.read_back_fields():
        data.pop(name, None)
    for segment in data.get("schedule") or ():
        if isinstance(segment, dict):
            segment["id"] = None
    if data.get("idempotency_key") is None:
        if not (isinstance(provider, str) and provider and isinstance(grant_id, str) and grant_id):
            raise MigrationError(
                "a grant with neither idempotency_key nor provider and id cannot be "
                "imported safely (a second import would duplicate it)")
        data["idempotency_key"] = migration_key(provider, grant_id, None)
    return CreditGrant.model_validate(data)


def _create_one(provider: Provider, grant: CreditGrant,
                known: dict[str, set[str]]) -> bool | BillingCreditsError:
    """Create one grant; whether it is new. The vendor's word (``replayed``) when it gives
    one, else whether the customer's listing, read once before this import touched the
    customer, already held the key."""
    try:
        keys = known.get(grant.customer_id)
        if keys is None:
            keys = known[grant.customer_id] = {
                g.idempotency_key for g in provider.list_grants(grant.customer_id)
                if g.idempotency_key is not None}
        created = provider.create_grant(grant)
    except BillingCreditsError as error:
        return error
    replayed = getattr(created, "replayed", None)
    if replayed is not None:
        return not replayed
    new = grant.idempotency_key not in keys
    keys.add(grant.idempotency_key or "")
    return new
