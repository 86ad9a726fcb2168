"""Export and import of neutral grants as JSON lines: review, archive, replay offline."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, Any, Protocol, cast

from billing_credits._errors import (
    BillingCreditsError,
    FieldProblem,
    InputTooLargeError,
    InvalidGrantError,
    MigrationError,
    UnreadableGrant,
)
from billing_credits._lines import MAX_LINE_BYTES, LongLine, bounded_lines
from billing_credits._model import CreditGrant, GrantStatus
from billing_credits._provider import OnUnreadable, Provider
from billing_credits._secrets import RedactingWriter, redact

from ._plan import migration_key
from ._planner import aligned_times

__all__ = ["ImportReport", "OnReject", "export_grants", "import_grants", "reject_line"]


def export_grants(
    provider: Provider, out: IO[str], *, customers: Iterable[str] | None = None,
    include_raw: bool = False, page_size: int | None = None,
    on_unreadable: OnUnreadable | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write every grant (of ``customers``, or all) as one JSON line each; return the count.

    Streams page by page: memory does not grow with the number of grants. A listing item that
    cannot be read as a grant goes to ``on_unreadable`` (write it with ``UnreadableGrant.as_json``
    to a rejects file); without one, ``UnreadableGrantsError`` is raised after every readable
    grant was written. Every line is redacted (``redact``) as it is written. ``progress``
    receives the number of grants written, every 100 and at the end.
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
                if progress is not None and count % 100 == 0:
                    progress(count)
    finally:
        writer.flush()
    if progress is not None:
        progress(count)
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
    """What an import did: grants created, grants already there (same key, same grant), lines
    skipped (with why) and lines that failed.

    ``times_aligned``: grants whose times were finer than the target holds, aligned in the
    safe direction (starts later, ends earlier) as ``migrate plan`` aligns them.
    ``paid_recorded_only``: grants created whose paid amount the target was told to record
    only, not invoice (an exported grant was paid for where it came from; the target invoices
    paid amounts, ``Capabilities.invoices_paid_amount``)."""

    created: int = 0
    already_there: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    paid_recorded_only: int = 0
    times_aligned: int = 0
    alignment: str | None = None
    """Why times were aligned (the target's resolution), when any were."""

    def summary(self) -> dict[str, int]:
        return {"created": self.created, "already_there": self.already_there,
                "skipped": len(self.skipped), "failed": len(self.failed),
                "paid_recorded_only": self.paid_recorded_only,
                "times_aligned": self.times_aligned}


class BatchImporter(Protocol):
    """A provider that creates many keyed grants at once (``local``: one transaction per
    batch). Each result: True created, False already there, or the error refusing it."""

    def import_batch(self, grants: list[CreditGrant]) -> list[bool | BillingCreditsError]: ...


@dataclass
class _Line:
    number: int
    text: str
    grant: CreditGrant
    ended: str | None  # the name of an ended grant imported with include_ended
    exported: bool = False  # names its provider and id: a record of credit already paid for
    aligned: bool = False  # its times were moved to the target's resolution


class _Import:
    """The state of one ``import_grants`` run: lines waiting in a batch, what is known."""

    def __init__(self, provider: Provider, on_reject: OnReject | None,
                 progress: Callable[[int], None] | None) -> None:
        self.provider = provider
        self.on_reject = on_reject
        self.progress = progress
        self.report = ImportReport()
        self.batch = cast("BatchImporter | None",
                          getattr(provider, "import_batch", None) and provider)
        self.known: dict[str, set[str]] = {}
        self.pending: list[_Line] = []
        self.read = 0
        self.invoices = provider.capabilities.invoices_paid_amount
        self._recorder: Provider | BillingCreditsError | None = None

    def creator(self, item: _Line) -> Provider:
        """The provider to create ``item`` through: an exported grant was paid for where it
        came from, so it goes through ``provider.record_only()`` (never billed again)."""
        if not item.exported or not self.invoices:
            return self.provider
        if self._recorder is None:
            try:
                self._recorder = self.provider.record_only()
            except BillingCreditsError as error:
                self._recorder = error
        if isinstance(self._recorder, BillingCreditsError):
            raise MigrationError(
                f"not imported: {self.provider.name} invoices the paid amount and cannot record "
                f"it only ({self._recorder}); an exported grant was paid for where it came from: "
                "configure the target not to invoice, then import") from None
        return self._recorder

    def records_only(self, item: _Line) -> bool:
        paid = item.grant.paid_amount
        return item.exported and self.invoices and paid is not None and paid.amount > 0

    def fail(self, number: int, text: str, error: BillingCreditsError) -> None:
        self.report.failed.append((number, str(error)))
        if self.on_reject is not None:
            self.on_reject(number, text.rstrip("\r\n"), str(error))

    def flush(self) -> None:
        """Create the waiting lines (one batch, or one create each); report progress."""
        pending = self.pending
        if pending:
            if self.batch is not None and not self.invoices and not any(
                    item.ended for item in pending):
                results = self.batch.import_batch([item.grant for item in pending])
            else:
                results = [_create_one(self, item) for item in pending]
            for item, result in zip(pending, results, strict=True):
                if isinstance(result, BillingCreditsError):
                    self.fail(item.number, item.text, result)
                else:
                    self.report.times_aligned += item.aligned
                    if result:
                        self.report.created += 1
                        self.report.paid_recorded_only += self.records_only(item)
                    else:
                        self.report.already_there += 1
            pending.clear()
        if self.progress is not None:
            self.progress(self.read)


def import_grants(
    provider: Provider, lines: Iterable[str | bytes], *, include_ended: bool = False,
    now: datetime | None = None, on_reject: OnReject | None = None,
    batch_size: int = 1000, progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Create each exported grant on ``provider``; safe to repeat.

    Each grant is created under its own idempotency key or, when it had none, one derived
    from its source provider and id, so importing twice creates nothing the second time. A
    line with neither is refused: it could not be imported safely twice. Voided and expired
    grants are skipped unless ``include_ended``; then an ended grant is never created as
    spendable credit: one whose window has ended is created as it is (it reads back expired),
    any other (voided, or expired before its window's end) is refused, naming it, since no
    provider can create a grant already voided.

    A line that names its provider and id (as ``export_grants`` writes them) records credit
    already paid for where it came from: it is created through ``provider.record_only()``,
    so a target that invoices the paid amount (``metronome-plans`` with
    ``invoice_paid_amount``) records it without billing it again (counted in
    ``paid_recorded_only``); a target that cannot record only refuses such a line. A line
    without them is created as given.

    Times finer than the provider holds (``time_resolution``: a grant made "now" with
    microseconds, imported into Stripe) are aligned as ``plan_migration`` aligns them: starts
    later, ends earlier, never credit outside the exported window (``times_aligned``); a
    window too short to survive that is refused.

    A line that is not a valid grant (not UTF-8, not JSON, not a grant) or whose create fails
    is listed in ``failed`` and given to ``on_reject``; the import goes on with the next line.
    A provider with ``import_batch`` (``local``) gets ``batch_size`` grants at a time, each
    batch one transaction; others get one create each. ``progress`` receives the number of
    lines read so far after each batch.

    A file object is read through the bounded line reader (``billing_credits._lines``): a
    line longer than ``MAX_LINE_BYTES`` (1 MiB) is listed in ``failed`` and given to
    ``on_reject`` (its first characters), and the import goes on; a file that is not lines at
    all (no line end within ``MAX_SKIP_BYTES``) raises ``InputTooLargeError``.
    """
    run = _Import(provider, on_reject, progress)
    size = batch_size if run.batch is not None else 1
    aligns = provider.capabilities.time_resolution > timedelta(microseconds=1)
    moment = now or datetime.now(UTC)
    for number, raw in _numbered(lines):
        run.read = number
        if isinstance(raw, LongLine):
            run.fail(number, raw.head, InputTooLargeError(_source(lines), number, MAX_LINE_BYTES,
                                                          raw.problem))
            continue
        undecodable: UnicodeDecodeError | None = None
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:  # refused below, its text shown replaced
                text, undecodable = raw.decode("utf-8", errors="replace"), error
        else:
            text = raw
        if not text or text.isspace():
            continue
        try:
            grant, ended, exported = _new_grant(undecodable, text, include_ended)
            moved: list[Any] = []
            if aligns:  # (a target holding any time needs no alignment: skipped)
                grant, moved, refusal = aligned_times(grant, provider)
                if refusal is not None:
                    raise MigrationError(f"not imported: {refusal}")
            if moved:
                run.report.alignment = (moved[0].why.split(":")[0] + ": starts moved later, "
                                        "ends earlier (the safe direction)")
            if ended is not None:
                _ensure_stays_ended(ended, grant, provider, moment)
        except _Skipped as skipped:
            run.report.skipped.append((number, str(skipped)))
            continue
        except BillingCreditsError as error:
            run.fail(number, text, error)
            continue
        if ended is not None:
            run.flush()  # an ended grant is created alone, then checked
        run.pending.append(_Line(number, text, grant, ended, exported, bool(moved)))
        if len(run.pending) >= size or ended is not None:
            run.flush()
    run.flush()
    report = run.report
    report.failed.sort(key=lambda entry: entry[0])
    return report


def _source(lines: object) -> str:
    name = getattr(lines, "name", None)
    return name if isinstance(name, str) else "input"


def _numbered(lines: Iterable[str | bytes]) -> Iterable[tuple[int, str | bytes | LongLine]]:
    """Each line with its number: a file object through the bounded reader, any other
    iterable as given, an item longer than the limit passed over as a ``LongLine``."""
    if hasattr(lines, "readline"):
        yield from bounded_lines(cast("IO[Any]", lines), source=_source(lines), skip_long=True)
        return
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_BYTES + 2:
            head = line[:200]
            yield number, LongLine(number, head.decode("utf-8", "replace")
                                   if isinstance(head, bytes) else head,
                                   "a line longer than the limit; not read")
        else:
            yield number, line


class _Skipped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The line is a grant that has ended: skipped, not imported."""


def _name(status: object, grant_id: object, provider: object, customer: object) -> str:
    return f"{status or 'ended'} grant {grant_id} " \
           f"({provider or 'unknown provider'}, customer {customer})"


_EXACT_JSON = json.JSONDecoder(parse_float=Decimal)
"""``json.loads(line, parse_float=Decimal)``, built once (not once per line)."""
_ALL_USAGE_JSON = {"product_ids": [], "product_tags": [], "price_ids": [],
                   "metered_prices_only": False, "contract_ids": [], "specifiers": []}
"""The empty scope (all usage) as ``export`` writes it (a test holds it to the model's)."""
_scan = _EXACT_JSON.scan_once  # type: ignore[attr-defined]  # (set by __init__, C)
_VOIDED = GrantStatus.VOIDED.value


def _decoded(line: str) -> Any:
    """``_EXACT_JSON.decode(line)``: a line that starts with its object and ends with at most
    a line break is scanned directly (``decode`` adds two regular-expression calls and a
    method call around the same scan); any other line, and every error, goes through it."""
    if line[:1] == "{":
        try:
            value, end = _scan(line, 0)
        except StopIteration:
            pass  # decode raises the error, worded
        else:
            if end == len(line) or not line[end:].strip(" \t\n\r"):  # JSON's whitespace only
                return value
    return _EXACT_JSON.decode(line)


def _new_grant(undecodable: UnicodeDecodeError | None, line: str,
               include_ended: bool) -> tuple[CreditGrant, str | None, bool]:
    """One exported line as a new grant to create, under its key (validated once), for
    an ended grant imported with ``include_ended`` its name, and whether the line names its
    provider and id (an export of a grant that exists, paid for, elsewhere).

    Read with exact decimals (a JSON number never passes through a float); the read-back
    fields are dropped as ``CreditGrant.as_new`` would. Whatever is wrong with the line is an
    ``InvalidGrantError`` (or ``MigrationError`` for a grant that cannot be imported safely).
    """
    if undecodable is not None:  # the line's bytes, refused by a strict decoding
        raise MigrationError(f"not UTF-8 text ({undecodable.reason} at byte "
                             f"{undecodable.start})")
    try:
        data = _decoded(line)
    except ValueError as error:
        raise InvalidGrantError([FieldProblem("", f"not JSON: {error}")]) from None
    except RecursionError:
        raise InvalidGrantError([FieldProblem("", "not JSON: nested too deeply")]) from None
    except ArithmeticError:  # decimal.InvalidOperation: an exponent no Decimal holds
        raise InvalidGrantError([FieldProblem("", "not JSON: a number out of range")]) from None
    if not isinstance(data, dict):
        raise InvalidGrantError([FieldProblem("", "expected a JSON object")])
    status, grant_id, provider = data.get("status"), data.get("id"), data.get("provider")
    exported = isinstance(provider, str) and bool(provider) and isinstance(grant_id, str) \
        and bool(grant_id)
    for name, value in (("provider", provider), ("id", grant_id)):
        if isinstance(value, str) and not _is_text(value):
            raise InvalidGrantError([FieldProblem(name, "not text: holds a lone surrogate "
                                                  "escape (\\ud800-\\udfff)")])
    ended: str | None = None
    if status is not None:
        try:
            state = GrantStatus(status)
        except (ValueError, TypeError):
            raise InvalidGrantError([FieldProblem("status", f"unknown status {status!r}")]) \
                from None
        if state in (GrantStatus.VOIDED, GrantStatus.EXPIRED):
            ended = _name(state.value, grant_id, provider, data.get("customer_id"))
            if not include_ended:
                raise _Skipped(ended)
    voided = status == _VOIDED
    for name in CreditGrant.read_back_fields():
        data.pop(name, None)
    if data.get("scope") == _ALL_USAGE_JSON:  # every exported line says so: the default scope,
        del data["scope"]  # shared, not validated again as a new one (issue 17)
    schedule = data.get("schedule")
    if schedule is not None and not isinstance(schedule, list):
        raise InvalidGrantError([FieldProblem("schedule", f"expected a list of segments, got "
                                              f"{type(schedule).__name__}")])
    for segment in schedule or ():
        if isinstance(segment, dict):
            segment["id"] = None
    if data.get("idempotency_key") is None:
        if not exported:
            raise MigrationError(
                "a grant with neither idempotency_key nor provider and id cannot be "
                "imported safely (a second import would duplicate it)")
        data["idempotency_key"] = migration_key(cast(str, provider), cast(str, grant_id), None)
    grant = CreditGrant.model_validate(data)
    if voided and ended is not None:
        ended = "voided " + ended  # marks it: a voided grant can never be created ended
    return grant, ended, exported


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ensure_stays_ended(name: str, new: CreditGrant, provider: Provider, now: datetime) -> None:
    """Refuse an ended grant the target would hold as spendable credit."""
    voided = name.startswith("voided ")
    if not voided and new.expires_at is not None and new.expires_at <= now:
        return  # its window has ended: created as it is, it is ended on the target too
    raise MigrationError(
        f"{name.removeprefix('voided ')} not imported: {provider.name} cannot create a grant "
        f"already {'voided' if voided else 'ended'} and its window has not ended, so it would "
        "come back as spendable credit")


def _create_one(run: _Import, item: _Line) -> bool | BillingCreditsError:
    """Create one grant; whether it is new. The vendor's word (``replayed``) when it gives
    one, else whether the customer's listing, read once before this import touched the
    customer, already held the key. An ended grant that reads back live is voided at once."""
    grant, provider, known = item.grant, run.provider, run.known
    try:
        creator = run.creator(item)
        keys = known.get(grant.customer_id)
        if keys is None:
            keys = known[grant.customer_id] = {
                g.idempotency_key for g in provider.list_grants(grant.customer_id)
                if g.idempotency_key is not None}
        created = creator.create_grant(grant)
        if item.ended is not None and created.status not in (GrantStatus.VOIDED,
                                                               GrantStatus.EXPIRED):
            _end_again(provider, created, item.ended)
        if created.replayed is not None:
            return not created.replayed
    except BillingCreditsError as error:
        return error
    new = grant.idempotency_key not in keys
    keys.add(grant.idempotency_key or "")
    return new


def _end_again(provider: Provider, created: CreditGrant, name: str) -> None:
    """The target moved an ended window into the present: void what it made, and say so."""
    state = created.status.value if created.status else "live"
    try:
        provider.void_grant(created.id or "")
    except BillingCreditsError as error:
        raise MigrationError(
            f"{name} was created as {created.id} and reads back {state}; voiding it failed "
            f"({error}): void it by hand") from None
    raise MigrationError(
        f"{name} was created as {created.id} but {provider.name} reads it back {state}; it "
        "was voided at once")
