"""Export and import of neutral grants as JSON lines: review, archive, replay offline."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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
    on_reject: OnReject | None = None,
) -> ImportReport:
    """Create each exported grant on ``provider``; safe to repeat.

    Each grant is created under its own idempotency key or, when it had none, one derived
    from its source provider and id, so importing twice creates nothing the second time. A
    line with neither is refused: it could not be imported safely twice. Voided and expired
    grants are skipped unless ``include_ended`` (they would come back to life at full amount).

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
            if grant.status in (GrantStatus.VOIDED, GrantStatus.EXPIRED) and not include_ended:
                report.skipped.append((number, f"{grant.status.value} grant {grant.id}"))
                continue
            key = grant.idempotency_key
            if key is None:
                if not (grant.provider and grant.id):
                    raise MigrationError(
                        "a grant with neither idempotency_key nor provider and id cannot be "
                        "imported safely (a second import would duplicate it)")
                key = migration_key(grant.provider, grant.id, None)
            provider.create_grant(grant.as_new(idempotency_key=key))
        except BillingCreditsError as error:
            report.failed.append((number, str(error)))
            if on_reject is not None:
                on_reject(number, line.rstrip("\r\n"), str(error))
            continue
        report.created += 1
    return report


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
