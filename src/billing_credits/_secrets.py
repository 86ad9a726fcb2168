"""Secrets never leave the library: every credential it holds is masked wherever it writes.

A provider registers each secret setting it is given (``register_secret``); every
``ProviderError`` message and body, every CLI line, log record and file the library writes goes
through ``redact``, which masks the registered values and anything shaped like a well-known
credential (Stripe keys, ``Bearer`` tokens), whatever a vendor or a proxy echoes back.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import IO, Any
from urllib.parse import urlsplit

from ._redact import MASK, redact, redact_data, register_secret

__all__ = [
    "LOGGERS",
    "MASK",
    "RedactingFilter",
    "RedactingWriter",
    "check_base_url",
    "detach",
    "redact",
    "redact_data",
    "register_secret",
]


def check_base_url(url: str, *, credential: bool, setting: str = "base_url") -> str:
    """Refuse sending a credential over plain HTTP to anything but this machine."""
    from ._errors import ConfigurationError

    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise ConfigurationError(f"{setting}: not a URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{setting}: give an http(s) URL with a host")
    if parts.scheme == "http" and credential and not _loopback(parts.hostname):
        raise ConfigurationError(
            f"{setting}: refusing to send a credential over plain http to {parts.hostname}; "
            "use https (plain http is allowed only to this machine)")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RedactingWriter:
    """A text stream that masks secrets in everything written through it.

    Complete lines are redacted as they arrive; a partial line waits for its end (or a
    ``flush``), so a secret split over two writes is still masked whole. Everything else
    (``isatty``, ``encoding``, ``fileno``) is the wrapped stream's.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._pending += text
        if "\n" in self._pending:
            done, _, self._pending = self._pending.rpartition("\n")
            self.stream.write(redact(done + "\n"))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            self.stream.write(redact(self._pending))
            self._pending = ""
        self.stream.flush()

    def close(self) -> None:
        self.flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __enter__(self) -> RedactingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record: its message (arguments merged in), exception text and
    stack. Attached to the library's loggers and to those of the HTTP clients it drives."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not format: keep it, masked raw
            message = f"{record.msg} {record.args}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


LOGGERS = ("billing_credits", "billing_credits_stripe", "billing_credits_metronome", "stripe",
           "httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2",
           "httpcore.proxy", "urllib3", "urllib3.connectionpool", "psycopg", "psycopg.pool")
"""Loggers whose records are redacted: the library's, its providers', and the HTTP clients'
(whose debug output may hold request details), and the PostgreSQL driver's and pool's (whose
warnings name the connection that failed)."""

_FILTER = RedactingFilter()


def install_log_redaction(*handlers: logging.Handler) -> None:
    """Attach the redacting filter to every logger in ``LOGGERS`` and to each of their child
    loggers that exists now (a logger's filter does not see its children's records), and to
    ``handlers`` (which see every record they write, whichever logger it came from).
    Idempotent; the providers call it again once their SDKs are imported."""
    prefixes = tuple(f"{name}." for name in LOGGERS)
    children = [name for name in list(logging.Logger.manager.loggerDict)
                if name.startswith(prefixes)]
    for name in (*LOGGERS, *children):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def detach(error: BaseException) -> BaseException:
    """``error`` without its ``__cause__``/``__context__`` chain (which may hold a vendor
    client's request, headers and credential included); returned for ``raise``."""
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error


install_log_redaction()
