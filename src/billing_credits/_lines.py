"""Reading an input file with bounds: the one line reader every command uses (issue 18.7).

A file with no newline (``/dev/zero``, a binary dump, a log one line long) must not grow memory
until the process is killed. Every input the library reads (import lines, plan files, usage,
``--from-json`` grants, customer and scope maps) goes through here:

- ``bounded_lines``: one line at a time, none longer than ``MAX_LINE_BYTES`` (1 MiB, without
  its line end). A longer line is refused (``InputTooLargeError`` naming the file and the line)
  or, with ``skip_long``, passed over and reported as a ``LongLine`` so the caller can reject
  it and go on (``import``); passing over reads at most ``MAX_SKIP_BYTES`` of it, beyond which
  the file is not lines at all and reading stops with the error. ``total`` bounds the bytes
  read altogether where the caller keeps them all.
- ``read_bounded``: a whole file read at once, no larger than ``MAX_FILE_BYTES`` (or the
  caller's limit).

Memory is bounded by the limit, whatever the file: readline is given the limit, so a line is
never read whole before it is measured. A text stream is measured in characters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, AnyStr

from ._errors import InputTooLargeError

__all__ = ["MAX_FILE_BYTES", "MAX_LINE_BYTES", "MAX_SKIP_BYTES", "LongLine", "bounded_lines",
           "read_bounded", "read_text_bounded"]

MAX_LINE_BYTES = 1024 * 1024
"""The longest line read from any input file (bytes, without the line end): 1 MiB."""

MAX_FILE_BYTES = 256 * 1024 * 1024
"""The largest input file read whole (usage for ``simulate``, customer and scope maps): 256 MiB."""

MAX_SKIP_BYTES = 16 * MAX_LINE_BYTES
"""How much of an over-long line is passed over (``skip_long``) before the file is refused
whole as not lines at all: 16 MiB."""

_CHUNK = 64 * 1024
_HEAD = 200


@dataclass(frozen=True)
class LongLine:
    """A line longer than the limit, passed over: its number, its first characters (for a
    rejects file) and the problem in words."""

    number: int
    head: str
    problem: str


def _ends(line: str | bytes) -> bool:
    if isinstance(line, bytes):
        return line.endswith(b"\n")
    return line.endswith("\n")


def _head(line: str | bytes) -> str:
    text = line[:_HEAD]
    return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text


def bounded_lines(stream: IO[AnyStr], *, source: str, limit: int = MAX_LINE_BYTES,
                  total: int | None = None,
                  skip_long: bool = False) -> Iterator[tuple[int, AnyStr | LongLine]]:
    """``(number, line)`` for each line of ``stream`` (line end kept), numbered from 1.

    A line longer than ``limit`` raises ``InputTooLargeError`` naming ``source`` and the line;
    with ``skip_long`` it is passed over (up to ``MAX_SKIP_BYTES``) and given as a
    ``LongLine``. More than ``total`` bytes read altogether raises ``InputTooLargeError``.
    """
    number = 0
    read = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        read += len(line)
        if len(line) > limit and not (len(line) == limit + 1 and _ends(line)):
            if not skip_long:
                raise InputTooLargeError(source, number, limit, "a line longer than the limit")
            head, first = _head(line), len(line)
            skipped = first
            while not _ends(line):
                line = stream.readline(_CHUNK)
                if not line:
                    break
                skipped += len(line)
                if skipped > MAX_SKIP_BYTES:
                    raise InputTooLargeError(
                        source, number, MAX_SKIP_BYTES,
                        "no line end within the limit: not a file of lines")
            read += skipped - first
            yield number, LongLine(number, head, "a line longer than the limit; not read")
        else:
            yield number, line
        if total is not None and read > total:
            raise InputTooLargeError(source, None, total, "larger than the limit")


def read_bounded(source: str | Path | IO[bytes], *, name: str | None = None,
                 limit: int = MAX_FILE_BYTES) -> bytes:
    """The whole of ``source`` (a path or a binary stream), refused past ``limit`` bytes
    (``InputTooLargeError`` naming it) before more than ``limit`` bytes are held."""
    if isinstance(source, str | Path):
        with Path(source).open("rb") as stream:
            return read_bounded(stream, name=name or str(source), limit=limit)
    label = name or str(getattr(source, "name", "input"))
    data = source.read(limit + 1)
    if len(data) > limit:
        raise InputTooLargeError(label, None, limit, "larger than the limit")
    return data


def read_text_bounded(path: str | Path, name: str | None = None, *,
                      limit: int = MAX_LINE_BYTES, total: int = MAX_FILE_BYTES) -> str:
    """The whole of the file at ``path`` as UTF-8 text, read through ``bounded_lines``: no
    line longer than ``limit``, no more than ``total`` bytes (``InputTooLargeError``);
    ``UnicodeDecodeError`` for bytes that are not UTF-8."""
    label = name or str(path)
    parts: list[bytes] = []
    with Path(path).open("rb") as stream:
        for _, line in bounded_lines(stream, source=label, limit=limit, total=total):
            assert isinstance(line, bytes)
            parts.append(line)
    return b"".join(parts).decode("utf-8")
