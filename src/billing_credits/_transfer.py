"""Export and import of neutral grants as JSON lines: review, archive, replay offline."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from ._errors import BillingCreditsError, MigrationError, UnreadableGrant
from ._migration import migration_key
from ._model import CreditGrant, GrantStatus
from ._provider import OnUnreadable, Provider
from ._secrets import RedactingWriter, redact

__all__ = ["ImportReport", "OnReject", "export_grants", "import_grants", "reject_line"]


def export_grants(
    provider: Provider, out: IO[str], *, customers: Iterable[str] | None = None,
    include_raw: bool = False, page_size: int | None = None,
    on_unreadable: OnUnreadable | None = None,
) -> int:
    """Write every grant (of ``customers``, or all) as one JSON line each; return the count.

    Streams page by page: memory does not grow with the number of grants. A listing item that
    cannot be read as a grant goes to ``on_unreadable`` (write it with ``UnreadableGrant.as_json``
    to a rejects file); without one, ``UnreadableGrantsError`` is raised after every readable
    grant was written. Every line is redacted (``redact``) as it is written.
    """
    count = 0
    exclude = None if include_raw else {"raw"}
    writer = RedactingWriter(out)
    try:
        for customer in (None,) if customers is None else customers:
            for grant in provider.list_grants(customer, page_size=page_size,
                                              on_unreadable=on_unreadable):
                writer.write(grant.model_dump_json(exclude=exclude) + "\n")
                count += 1
    finally:
        writer.flush()
    return count


def write_unreadable(out: IO[str], entry: UnreadableGrant) -> None:
    """One rejects-file line for a listing item that could not be read (redacted)."""
    out.write(redact(json.dumps(entry.as_json(), default=str, ensure_ascii=True)) + "\n")


OnReject = Callable[[int, str, str], None]
"""Receives each import line that was not imported: its number, its text and the problem."""


def reject_line(number: int, line: str, problem: str) -> dict[str, Any]:
    """A rejects-file entry for an import line (redacted)."""
    return {"kind": "rejected", "line": number, "problem": redact(problem), "raw": redact(line)}


@dataclass
class ImportReport:
    """What an import did: grants created, lines skipped (with why) and lines that failed."""

    created: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


def import_grants(
    provider: Provider, lines: Iterable[str | bytes], *, include_ended: bool = False,
    now: datetime | None = None, on_reject: OnReject | None = None,
) -> ImportReport:
    """Create each exported grant on ``provider``; safe to repeat.

    Each grant is created under its own idempotency key or, when it had none, one derived
    from its source provider and id, so importing twice creates nothing the second time. A
    line with neither is refused: it could not be imported safely twice. Voided and expired
    grants are skipped unless ``include_ended``; then an ended grant is never created as
    spendable credit: one whose window has ended is created as it is (it reads back expired),
    any other (voided, or expired before its window's end) is refused, naming it, since no
    provider can create a grant already voided.

    A line that is not a valid grant (not UTF-8, not JSON, not a grant) or whose create fails
    is listed in ``failed`` and given to ``on_reject``; the import goes on with the next line.
    """
    report = ImportReport()
    for number, raw in enumerate(lines, start=1):
        line = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if not line.strip():
            continue
        try:
            if isinstance(raw, bytes):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise MigrationError(f"not UTF-8 text ({error.reason} at byte {error.start})") \
                        from None
            grant = _read_line(line)
            ended = grant.status in (GrantStatus.VOIDED, GrantStatus.EXPIRED)
            if ended and not include_ended:
                report.skipped.append((number, _name(grant)))
                continue
            key = grant.idempotency_key
            if key is None:
                if not (grant.provider and grant.id):
                    raise MigrationError(
                        "a grant with neither idempotency_key nor provider and id cannot be "
                        "imported safely (a second import would duplicate it)")
                key = migration_key(grant.provider, grant.id, None)
            new = grant.as_new(idempotency_key=key)
            if ended:
                _ensure_stays_ended(grant, new, provider, now or datetime.now(UTC))
            created = provider.create_grant(new)
            if ended and created.status not in (GrantStatus.VOIDED, GrantStatus.EXPIRED):
                _end_again(provider, created, grant)
        except BillingCreditsError as error:
            report.failed.append((number, str(error)))
            if on_reject is not None:
                on_reject(number, line.rstrip("\r\n"), str(error))
            continue
        report.created += 1
    return report


def _name(grant: CreditGrant) -> str:
    return f"{grant.status.value if grant.status else 'ended'} grant {grant.id} " \
           f"({grant.provider or 'unknown provider'}, customer {grant.customer_id})"


def _ensure_stays_ended(grant: CreditGrant, new: CreditGrant, provider: Provider,
                        now: datetime) -> None:
    """Refuse an ended grant the target would hold as spendable credit."""
    if new.expires_at is not None and new.expires_at <= now:
        return  # its window has ended: created as it is, it is ended on the target too
    raise MigrationError(
        f"{_name(grant)} not imported: {provider.name} cannot create a grant already "
        f"{'voided' if grant.status is GrantStatus.VOIDED else 'ended'} and its window has not "
        "ended, so it would come back as spendable credit")


def _end_again(provider: Provider, created: CreditGrant, grant: CreditGrant) -> None:
    """The target moved an ended window into the present: void what it made, and say so."""
    try:
        provider.void_grant(created.id or "")
    except BillingCreditsError as error:
        raise MigrationError(
            f"{_name(grant)} was created as {created.id} and reads back "
            f"{created.status.value if created.status else 'live'}; voiding it failed "
            f"({error}): void it by hand") from None
    raise MigrationError(
        f"{_name(grant)} was created as {created.id} but {provider.name} reads it back "
        f"{created.status.value if created.status else 'live'}; it was voided at once")


def _read_line(line: str) -> CreditGrant:
    """One exported line as a grant; whatever is wrong with it, an ``InvalidGrantError``."""
    try:
        return CreditGrant.model_validate_json(line)
    except BillingCreditsError:
        raise
    except Exception as error:  # deeply nested JSON (RecursionError), anything else
        from ._errors import FieldProblem, InvalidGrantError

        raise InvalidGrantError([FieldProblem("", f"cannot be read ({type(error).__name__})")]) \
            from None
