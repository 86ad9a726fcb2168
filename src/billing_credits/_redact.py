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
    """``text`` with every registered secret and credential-shaped token masked.

    Also masked when written in another encoding, or split over lines (issue 18.9): JSON
    escapes (``\\u005f`` for ``_``, ``\\/`` for ``/``, ``\\n``), percent-encoding (``%5F``),
    HTML numeric references (``&#95;``), and line breaks (LF, CRLF, CR, or their JSON escapes)
    inside the secret. The decoded text is searched, decoded up to three times over (an escape
    escaped again), and the original span of each match is masked whole.
    """
    if not text:
        return text
    pattern = _compiled()
    if _ENCODED.search(text.rstrip("\r\n")) is None:  # a line's own end joins nothing
        return pattern.sub(MASK, text)
    spans = _encoded_matches(text, pattern)
    if spans:
        text = _mask_spans(text, spans)
    return pattern.sub(MASK, text)


# An encoded character, or a line break (dropped: a secret split over lines is joined again).
_ENCODED = re.compile(
    r"\\u[0-9A-Fa-f]{4}|\\[/\\\"nrt]|%[0-9A-Fa-f]{2}|&#[xX][0-9A-Fa-f]{1,6};|&#[0-9]{1,7};"
    r"|\r\n|[\r\n]")
_BREAKS = {"\\n", "\\r", "\\t", "\r\n", "\r", "\n"}
_ROUNDS = 3


def _decode_token(token: str) -> str:
    if token in _BREAKS:
        return ""
    if token.startswith("\\u"):
        return chr(int(token[2:], 16))
    if token.startswith("\\"):
        return token[1]
    if token.startswith("%"):
        return chr(int(token[1:], 16))
    number = token[2:-1]
    code = int(number[1:], 16) if number[:1] in "xX" else int(number)
    return chr(code) if code < 0x110000 else token


def _decoded(text: str) -> tuple[str, list[int], list[int]]:
    """``text`` decoded once, and for each decoded character where its source starts and ends
    in ``text`` (as two lists, one entry per decoded character)."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    at = 0
    for match in _ENCODED.finditer(text):
        for i in range(at, match.start()):
            out.append(text[i])
            starts.append(i)
            ends.append(i + 1)
        for char in _decode_token(match.group()):
            out.append(char)
            starts.append(match.start())
            ends.append(match.end())
        at = match.end()
    for i in range(at, len(text)):
        out.append(text[i])
        starts.append(i)
        ends.append(i + 1)
    return "".join(out), starts, ends


def _encoded_matches(text: str, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Spans of ``text`` holding a secret once decoded (one to ``_ROUNDS`` times)."""
    # Cheap first (C-speed substitution): most text holds nothing once decoded either.
    current, hit = text, False
    for _ in range(_ROUNDS):
        if _ENCODED.search(current) is None:
            break
        current = _ENCODED.sub(lambda m: _decode_token(m.group()), current)
        if pattern.search(current) is not None:
            hit = True
            break
    if not hit:
        return []
    found: list[tuple[int, int]] = []
    current = text
    starts = list(range(len(text)))
    ends = list(range(1, len(text) + 1))
    for _ in range(_ROUNDS):
        if _ENCODED.search(current) is None:
            break
        decoded, inner_starts, inner_ends = _decoded(current)
        starts = [starts[i] for i in inner_starts]
        ends = [ends[i - 1] for i in inner_ends]
        found.extend((starts[match.start()], ends[match.end() - 1])
                     for match in pattern.finditer(decoded) if match.end() > match.start())
        current = decoded
    return found


def _mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts: list[str] = []
    at = 0
    for start, end in merged:
        parts.append(text[at:start])
        parts.append(MASK)
        at = end
    parts.append(text[at:])
    return "".join(parts)


def redact_data(value: Any) -> Any:
    """``redact`` applied to every string inside ``value`` (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_data(v) for v in value)
    return value
