"""Texts for people: a provider's ``identity()`` and a duration, as a reader wants them.

``identity()`` stays what plans and journals record (``stripe:http://127.0.0.1:40975:-:
f5c8bb5a44b2``); ``identity_text`` shows it as ``stripe at http://127.0.0.1:40975`` (the
digest of the credential dropped, an account kept). ``duration_text(3599)`` is ``59 min 59 s``.
"""

from __future__ import annotations

import re

__all__ = ["duration_text", "identity_text"]

_URL = re.compile(r"https?://[^\s/:]+(?::\d{1,5}(?=[/:]|$))?(?:/[^\s:]*)?")
_DIGEST = re.compile(r"[0-9a-f]{12,64}")


def identity_text(identity: str) -> str:
    """``NAME at WHERE`` (a URL or a path) plus any other part of the identity (an account),
    without the hex digest of a credential and ``-`` placeholders; anything it cannot read
    comes back as it is."""
    name, sep, rest = identity.partition(":")
    if not sep or not name:
        return identity
    url = _URL.search(rest)
    where = ""
    if url is not None:
        where = url.group().rstrip("/")
        rest = rest[:url.start()] + rest[url.end():]
        parts = [p for p in rest.split(":") if p and p != "-" and not _DIGEST.fullmatch(p)]
    elif rest.startswith("/"):  # a path (local): the whole rest
        where, parts = rest, []
    else:
        parts = [p for p in rest.split(":") if p and p != "-" and not _DIGEST.fullmatch(p)]
    text = f"{name} at {where}" if where else name
    return f"{text} ({', '.join(parts)})" if parts else text


def duration_text(seconds: float) -> str:
    """``2 d 3 h``, ``59 min 59 s``, ``45 s``: the two largest units, whole."""
    left = round(seconds)
    if left < 60:
        return f"{left} s"
    units = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))
    shown: list[str] = []
    for unit, size in units:
        count, left = divmod(left, size)
        if count or shown:
            shown.append(f"{count} {unit}")
        if len(shown) == 2:
            break
    return " ".join(part for part in shown if not part.startswith("0 ")) or "0 s"
