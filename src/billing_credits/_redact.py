"""The secret registry and masking, with no other dependency: the bottom of redaction.

``_errors`` masks vendor messages with ``redact``; ``_secrets`` builds the writers, log filter
and URL check on top of it (and re-exports these names).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "redact", "redact_data", "register_secret"]

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
