"""Plain-text tables for the command line that fit the terminal and stream.

- ``width()``: the terminal's width (``COLUMNS``, else the terminal's, else 250 when piped).
- ``Column`` / ``Stream``: a table printed while its rows arrive. Ids, amounts and times
  (``whole`` columns) are never cut; when a later row holds a wider one than the columns so far,
  the header is printed again with the wider columns, so no row is ever out of line with the
  header above it. Other cells are cut to their column with an ellipsis (``…``). Columns with a
  drop rank go, highest rank first, until the row fits; ``hidden`` names them.
- ``fields_lines``: ``label value`` pairs on as few lines as fit, never splitting a pair.
- ``wrapped``: a long text (an explanation, a list) on its own lines, indented, at the width.
- ``when``: a time as short as it can be without losing anything a table shows.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click

__all__ = ["Column", "Stream", "fields_lines", "when", "width", "wrapped"]

GAP = "  "
ELLIPSIS = "…"


def width() -> int:
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return 250


def when(moment: datetime | None, *, never: str = "never") -> str:
    """``2030-01-01`` at midnight UTC, ``2030-01-01 12:30Z`` on a whole minute, else with
    seconds (``2030-01-01 12:30:05Z``); tables show no finer than seconds."""
    if moment is None:
        return never
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.strftime("%Y-%m-%d")
    if moment.second == 0:
        return moment.strftime("%Y-%m-%d %H:%MZ")
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True)
class Column:
    """``whole``: never cut (ids, amounts, times); else cut to at most ``cap`` characters.
    ``drop``: 0 never dropped; the higher, the sooner it goes on a narrow terminal."""

    header: str
    whole: bool = True
    cap: int = 24
    drop: int = 0
    right: bool = False
    least: int = 0  # the column's width at least (a known maximum: no header repeated for it)


class Stream:
    """A table printed as its rows arrive (see the module docstring)."""

    def __init__(self, columns: Sequence[Column], *, wide: bool = False,
                 limit: int | None = None, indent: str = "") -> None:
        self.columns = list(columns)
        self.limit = width() if limit is None else limit
        self.indent = indent
        self.wide = wide
        self.keep: list[int] | None = None
        self.widths: dict[int, int] = {}

    @property
    def hidden(self) -> list[str]:
        """Headers of the columns dropped to fit."""
        if self.keep is None:
            return []
        return [c.header for i, c in enumerate(self.columns) if i not in self.keep]

    def _need(self, index: int, rows: Sequence[Sequence[str]]) -> int:
        column = self.columns[index]
        longest = max([len(column.header), column.least] + [len(row[index]) for row in rows])
        if column.whole or self.wide:
            return longest
        return min(longest, max(column.cap, len(column.header)))

    def _layout(self, rows: Sequence[Sequence[str]]) -> None:
        keep = list(range(len(self.columns)))
        need = {i: self._need(i, rows) for i in keep}

        def total() -> int:
            return len(self.indent) + sum(need[i] for i in keep) + len(GAP) * (len(keep) - 1)

        if not self.wide:
            for index in sorted(keep, key=lambda i: -self.columns[i].drop):
                if total() <= self.limit or not self.columns[index].drop:
                    break
                keep.remove(index)
        self.keep = keep
        self.widths = {i: need[i] for i in keep}

    def width_of(self, rows: Sequence[Sequence[str]]) -> int:
        """How wide ``rows`` print with every column shown (none dropped, none cut)."""
        return len(self.indent) + sum(
            max([len(c.header), c.least] + [len(row[i]) for row in rows])
            for i, c in enumerate(self.columns)) + len(GAP) * (len(self.columns) - 1)

    def _line(self, cells: Sequence[str]) -> str:
        assert self.keep is not None
        out = []
        for position, index in enumerate(self.keep):
            column, size, text = self.columns[index], self.widths[index], cells[index]
            if len(text) > size:  # only a cut column can be narrower than its cell
                text = text[: max(size - 1, 0)] + ELLIPSIS
            last = position == len(self.keep) - 1
            out.append(text.rjust(size) if column.right else text if last else text.ljust(size))
        return (self.indent + GAP.join(out)).rstrip()

    def print(self, rows: Sequence[Sequence[str]], *, header: bool) -> None:
        """Print ``rows``; ``header`` for the first batch. A whole cell wider than its column
        widens the column and prints the header again above these rows."""
        if not rows:
            return
        if self.keep is None:
            self._layout(rows)
            header = True
        else:
            for index in self.keep:
                if self.columns[index].whole or self.wide:
                    grown = self._need(index, rows)
                    if grown > self.widths[index]:
                        self.widths[index] = grown
                        header = True
        if header:
            click.echo(self._line([c.header for c in self.columns]))
        for row in rows:
            click.echo(self._line(row))


def fields_lines(first: str, pairs: Iterable[str], *, indent: str = "  ",
                 limit: int | None = None) -> list[str]:
    """``first`` then each of ``pairs`` (``"usable 2.75 USD"``), two spaces apart, on as few
    lines as fit ``limit``; a pair is never split, the lines after the first are indented."""
    limit = width() if limit is None else limit
    lines = [first]
    for pair in pairs:
        if lines[-1].strip() and len(lines[-1]) + len(GAP) + len(pair) > limit:
            lines.append(indent + pair)
        else:
            lines[-1] = f"{lines[-1]}{GAP}{pair}" if lines[-1].strip() else lines[-1] + pair
    return lines


def wrapped(text: str, *, indent: str = "  ", limit: int | None = None) -> list[str]:
    """``text`` on lines of at most ``limit`` characters, each indented; a word longer than
    the line (a URL, an id) stays whole on its own line."""
    limit = width() if limit is None else limit
    return textwrap.wrap(text, width=max(limit, len(indent) + 20), initial_indent=indent,
                         subsequent_indent=indent + "  ", break_long_words=False,
                         break_on_hyphens=False) or [indent]


def echo_all(lines: Iterable[Any]) -> None:
    for line in lines:
        click.echo(line)
