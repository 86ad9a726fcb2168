"""Every error billing-credits raises, on one page.

::

    BillingCreditsError
    ├── ConfigurationError            a setting is missing or wrong; nothing was sent
    │   └── UnknownProviderError      no installed provider has that name
    ├── InvalidGrantError             the grant itself is invalid; nothing was sent (also a ValueError)
    ├── NotRepresentableError         valid, but this provider cannot hold it; nothing was sent
    ├── UnsupportedOperationError     this provider cannot do that operation; nothing was sent
    ├── MigrationError                a migration cannot go on as asked (refusals, wrong plan)
    ├── InputTooLargeError            an input file's line or whole is over the documented limit
    └── ProviderError                 the provider answered with an error, or could not be reached
        ├── BadRequestError           400/422: the provider refused the request
        ├── AuthenticationError       401: missing or wrong credentials
        ├── PermissionDeniedError     403
        ├── NotFoundError             404
        ├── ConflictError             409, or an idempotency key reused with other parameters
        ├── RateLimitedError          429; ``retry_after`` holds the provider's wait, if it gave one
        ├── UnavailableError          5xx, timeouts and network failures
        └── InvalidResponseError      the vendor's answer is unusable: wrong shape, looping cursor
            └── UnreadableGrantsError a listing held items that could not be read (``entries``)

Catch ``BillingCreditsError`` for everything, ``ProviderError`` for whatever happened after a
request left the machine. Provider errors carry the vendor's HTTP status, error body and request
id. No error message, repr or attribute ever holds a credential: bodies are vendor responses, and
request headers are never kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BillingCreditsError",
    "ConfigurationError",
    "ConflictError",
    "FieldProblem",
    "InputTooLargeError",
    "InvalidGrantError",
    "InvalidResponseError",
    "MigrationError",
    "NotFoundError",
    "NotRepresentableError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitedError",
    "UnavailableError",
    "UnknownProviderError",
    "UnreadableGrant",
    "UnreadableGrantsError",
    "UnsupportedOperationError",
    "reading_vendor_payload",
    "reads_vendor_payload",
]


class BillingCreditsError(Exception):
    """Base class of every error this library raises."""


class ConfigurationError(BillingCreditsError):
    """A setting is missing or invalid. Nothing was sent."""


class UnknownProviderError(ConfigurationError, LookupError):
    """No installed provider has the requested name."""

    def __init__(self, name: str, installed: Iterable[str]) -> None:
        self.name = name
        self.installed = sorted(installed)
        listed = ", ".join(self.installed) or "none"
        super().__init__(f"unknown provider {name!r}; installed providers: {listed}")


@dataclass(frozen=True)
class FieldProblem:
    """One field that cannot be accepted, and why, in words a caller can act on."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def _summarise(problems: tuple[FieldProblem, ...]) -> str:
    return "; ".join(str(p) for p in problems)


class InvalidGrantError(BillingCreditsError, ValueError):
    """The grant (or one of its parts) is invalid. Nothing was sent anywhere.

    ``problems`` names every offending field; ``str()`` is a single line.
    """

    def __init__(self, problems: Iterable[FieldProblem], *, model: str = "CreditGrant") -> None:
        self.problems = tuple(problems)
        self.model = model
        super().__init__(f"invalid {model}: {_summarise(self.problems)}")

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(p.field for p in self.problems)


class NotRepresentableError(BillingCreditsError):
    """The grant is valid, but the provider cannot hold some of it. Nothing was sent.

    Raised before any I/O, from the provider's declared capabilities or its translation.
    """

    def __init__(self, provider: str, problems: Iterable[FieldProblem]) -> None:
        self.provider = provider
        self.problems = tuple(problems)
        super().__init__(f"provider {provider!r} cannot represent: {_summarise(self.problems)}")

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(p.field for p in self.problems)


class UnsupportedOperationError(BillingCreditsError):
    """The provider does not offer this operation. Nothing was sent."""

    def __init__(self, provider: str, operation: str, detail: str = "") -> None:
        self.provider = provider
        self.operation = operation
        message = f"provider {provider!r} does not support {operation!r}"
        super().__init__(f"{message}: {detail}" if detail else message)


class MigrationError(BillingCreditsError):
    """A migration cannot go on as asked: a strict plan with refusals, a plan for other
    providers, a product without mapped prices."""


class InputTooLargeError(BillingCreditsError, ValueError):
    """An input file (import lines, a plan, usage, a grant, a map) has a line longer than the
    limit, or is larger than the limit where a whole file is read (``billing_credits._lines``:
    ``MAX_LINE_BYTES``, ``MAX_FILE_BYTES``). ``source`` names the file, ``line`` the line
    (None for a whole-file limit), ``limit`` the bound in bytes. Nothing was sent."""

    def __init__(self, source: str, line: int | None, limit: int, what: str) -> None:
        self.source = source
        self.line = line
        self.limit = limit
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {what} (the limit is {limit} bytes)")


class ProviderError(BillingCreditsError):
    """The provider answered with an error, or could not be reached.

    Attributes: ``provider`` (name), ``status`` (HTTP status or None for network failures),
    ``body`` (the vendor's decoded error body), ``request_id`` (the vendor's request id, if any),
    ``code`` (the vendor's error code or type, if any). ``retryable`` says whether sending the
    same request again, with the same idempotency key, is safe and may succeed.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        body: Mapping[str, Any] | str | None = None,
        request_id: str | None = None,
        code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        from ._redact import redact, redact_data

        self.message = redact(message)
        self.provider = provider
        self.status = status
        self.body = redact_data(body)
        self.request_id = request_id
        self.code = redact(code) if code else code
        if retryable is not None:
            self.retryable = retryable
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = [self.message]
        context = []
        if self.provider:
            context.append(f"provider={self.provider}")
        if self.status is not None:
            context.append(f"status={self.status}")
        if self.code:
            context.append(f"code={self.code}")
        if self.request_id:
            context.append(f"request_id={self.request_id}")
        if context:
            parts.append(f"({', '.join(context)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class BadRequestError(ProviderError):
    """400/422: the provider refused the request as invalid."""


class AuthenticationError(ProviderError):
    """401: credentials are missing or wrong."""


class PermissionDeniedError(ProviderError):
    """403: the credentials lack a permission."""


class NotFoundError(ProviderError):
    """404: no such grant (or customer)."""


class ConflictError(ProviderError):
    """409, or an idempotency key reused with different parameters.

    ``retryable`` is true only for transient lock conflicts (a concurrent request holding the
    same key); a key reused with other parameters is never retried and never taken as success.
    """


class RateLimitedError(ProviderError):
    """429: too many requests. ``retry_after`` is the provider's requested wait in seconds."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class UnavailableError(ProviderError):
    """5xx, timeouts and network failures. Retried with the same idempotency key."""

    retryable = True


_BY_STATUS: dict[int, type[ProviderError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitedError,
}


def error_class_for_status(status: int) -> type[ProviderError]:
    """The ``ProviderError`` subclass for an HTTP status (5xx → ``UnavailableError``)."""
    if status >= 500:
        return UnavailableError
    return _BY_STATUS.get(status, ProviderError)


class InvalidResponseError(ProviderError):
    """The vendor answered, but with something that cannot be used: a body of the wrong shape,
    a pagination cursor seen before, a run of empty pages. ``body`` holds a bounded excerpt."""


EXCERPT_LIMIT = 500


def excerpt(body: object, limit: int = EXCERPT_LIMIT) -> str:
    """A bounded, redacted excerpt of a vendor body for an error message or attribute."""
    from ._redact import redact

    text = body if isinstance(body, str) else repr(body)
    text = redact(text)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


@dataclass(frozen=True)
class UnreadableGrant:
    """One item of a listing that could not be read as a grant.

    A listing never aborts on one bad item and never drops it silently: it reports it as this,
    with the vendor's id for it (when one could be found), the raw payload and the problem.
    """

    provider: str
    vendor_id: str | None
    raw: Any
    problem: str

    def as_json(self) -> dict[str, Any]:
        from ._redact import redact, redact_data

        return {"kind": "unreadable", "provider": self.provider, "vendor_id": self.vendor_id,
                "problem": redact(self.problem), "raw": redact_data(self.raw)}


class UnreadableGrantsError(InvalidResponseError):
    """Raised at the end of a listing (after every readable grant) when some items could not
    be read and the caller did not ask to receive them (``on_unreadable``)."""

    def __init__(self, provider: str, entries: Iterable[UnreadableGrant]) -> None:
        self.entries = tuple(entries)
        first = self.entries[0] if self.entries else None
        detail = f"; first: {first.vendor_id or '(no id)'}: {first.problem}" if first else ""
        super().__init__(
            f"{len(self.entries)} item(s) of the listing could not be read{detail}",
            provider=provider)


PROBLEM_LIMIT = 300


def _problem_of(error: Exception) -> str:
    """One bounded line saying what went wrong while reading a payload."""
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = f"missing key {error.args[0]!r}"
    elif isinstance(error, BillingCreditsError):
        text = str(error)
    else:
        detail = " ".join(str(error).split())
        text = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    return excerpt(" ".join(text.split()), PROBLEM_LIMIT)


class reading_vendor_payload:  # noqa: N801 - used as a function, ``with reading_vendor_payload(…)``
    """Read a vendor payload (vendor → neutral) inside this block: whatever fails is the
    vendor's answer being unusable.

    A payload of the wrong shape (a missing key, a string where an object belongs, a number
    out of range, a value the neutral model refuses) makes the code reading it fail in any
    way: ``KeyError``, ``TypeError``, ``OverflowError``, ``InvalidGrantError``… Each becomes
    one ``InvalidResponseError`` naming the provider, ``what`` was read (with the payload's
    ``id`` when it has one) and the problem, its ``body`` a bounded, redacted excerpt of the
    payload (``excerpt``). A ``ProviderError`` raised inside (a specific check with a better
    message) passes unchanged. Only the reading goes in the block, never I/O.
    """

    __slots__ = ("payload", "provider", "what")

    def __init__(self, provider: str, what: str, payload: object) -> None:
        self.provider = provider
        self.what = what
        self.payload = payload

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: object) -> None:
        # A class rather than ``@contextmanager``: it wraps every item of every listing, and a
        # generator's context manager costs several times more per use. Returns None: an
        # exception is never swallowed, only replaced.
        self.refuse(error)

    def refuse(self, error: BaseException | None) -> None:
        """Raise the ``InvalidResponseError`` that leaving the block with ``error`` raises (or
        return, for None, a ``ProviderError`` or an exception that is not an ``Exception``).

        For the hottest readers, the same without a ``with`` block (about a microsecond less
        per item)::

            try:
                return read(item)
            except Exception as error:
                reading_vendor_payload(provider, "listGrants item", item).refuse(error)
                raise
        """
        if error is None or isinstance(error, ProviderError) or not isinstance(error, Exception):
            return
        payload = self.payload
        found = payload.get("id") if isinstance(payload, Mapping) else None
        named = f"{self.what} {excerpt(repr(found), 100)}" if isinstance(found, str) else self.what
        # Not chained: the problem says it all, redacted; the original may quote vendor values.
        raise InvalidResponseError(
            f"{named} cannot be read: {_problem_of(error)}", provider=self.provider,
            body=excerpt(payload)) from None


def reads_vendor_payload(provider: str, what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function that reads a vendor payload, its first argument, into neutral
    values: its body runs in ``reading_vendor_payload(provider, what, payload)``, so it raises
    only ``ProviderError`` (``InvalidResponseError`` for a payload of the wrong shape).

    ::

        @bc.reads_vendor_payload("acme", "credit grant")
        def from_acme(item: Mapping[str, Any]) -> bc.CreditGrant: ...
    """

    def decorate(read: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(read)
        def reading(*args: P.args, **kwargs: P.kwargs) -> R:
            with reading_vendor_payload(provider, what, args[0] if args else None):
                return read(*args, **kwargs)

        return reading

    return decorate
