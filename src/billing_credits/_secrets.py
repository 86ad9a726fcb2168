"""Secrets never leave the library: every credential it holds is masked wherever it writes.

A provider registers each secret setting it is given (``register_secret``); every
``ProviderError`` message and body, every CLI line, log record and file the library writes goes
through ``redact``, which masks the registered values and anything shaped like a well-known
credential (Stripe keys, ``Bearer`` tokens), whatever a vendor or a proxy echoes back.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MASK", "check_base_url", "redact", "redact_data", "register_secret"]

MASK = "[REDACTED]"

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

# Shapes of credentials masked even when nobody registered them.
_SHAPES = (
    r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9_]{6,}",
    r"\b[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9._~+/=-]{6,}",
    r"\b[Bb][Aa][Ss][Ii][Cc]\s+[A-Za-z0-9+/=]{8,}",
)
_MIN_SECRET = 4  # shorter values would mask ordinary words


def register_secret(value: str | None) -> None:
    """Mask ``value`` in everything the library writes from now on (process-wide)."""
    global _pattern
    if not value or len(value) < _MIN_SECRET:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        _pattern = None


def _compiled() -> re.Pattern[str]:
    global _pattern
    with _lock:
        if _pattern is None:
            known = sorted(_secrets, key=len, reverse=True)
            parts = [re.escape(s) for s in known] + list(_SHAPES)
            _pattern = re.compile("|".join(f"(?:{p})" for p in parts))
        return _pattern


def redact(text: str) -> str:
    """``text`` with every registered secret and credential-shaped token masked."""
    if not text:
        return text
    return _compiled().sub(MASK, text)


def redact_data(value: Any) -> Any:
    """``redact`` applied to every string inside ``value`` (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_data(v) for v in value)
    return value


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
