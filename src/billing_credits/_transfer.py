"""Export and import of neutral grants as JSON lines: review, archive, replay offline."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from ._errors import BillingCreditsError, MigrationError
from ._migration import migration_key
from ._model import CreditGrant, GrantStatus
from ._provider import Provider

__all__ = ["ImportReport", "export_grants", "import_grants"]


def export_grants(
    provider: Provider, out: IO[str], *, customers: Iterable[str] | None = None,
    include_raw: bool = False, page_size: int | None = None,
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
    return count


@dataclass
class ImportReport:
    """What an import did: grants created, lines skipped (with why) and lines that failed."""

    created: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


def import_grants(
    provider: Provider, lines: Iterable[str], *, include_ended: bool = False
) -> ImportReport:
    """Create each exported grant on ``provider``; safe to repeat.

    Each grant is created under its own idempotency key or, when it had none, one derived
    from its source provider and id, so importing twice creates nothing the second time. A
    line with neither is refused: it could not be imported safely twice. Voided and expired
    grants are skipped unless ``include_ended`` (they would come back to life at full amount).
    """
    report = ImportReport()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            grant = CreditGrant.model_validate_json(line)
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
            continue
        report.created += 1
    return report
