"""Rich tables laid out for the console's width: no word (so no number) is ever split, no column is ever dropped.

Rich's own width algorithm shrinks every column alike when a table does not fit: numbers fold mid-digit
(``0.00`` over ``87``), and columns kept whole squeeze their neighbours to nothing and crop the table at the edge.
``fit_table`` lays out the widths itself instead. Every column is at least as wide as its longest word (a cell's or
its header's; words split on whitespace only), and the room left goes first to the right-aligned (numeric) columns,
so that their cells stay on one line, then to the others. When the columns cannot all be that wide, it tries in turn:
the table without borders, the columns split into several tables that each repeat the first (key) column, and last a
record per row (column name and value on each line). Rich is imported inside the functions: no work at import.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

# Narrowest value column of the record layout; below it values would fold word by word.
MIN_VALUE_WIDTH = 12


@dataclass(frozen=True)
class _Column:
    header: str
    justify: str
    cells: tuple[Any, ...]  # as given to the table: markup strings or renderables
    min_width: int  # the longest word of the header and of every cell
    cells_width: int  # the longest line of a cell
    max_width: int  # the longest line, the header's included


def _plain(cell: Any) -> str:
    from rich.text import Text

    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def _columns(table) -> list[_Column]:
    from rich.cells import cell_len

    out = []
    for column in table.columns:
        cells = tuple(column.cells)
        texts = [_plain(column.header), *(_plain(c) for c in cells)]
        words = [cell_len(word) for text in texts for word in text.split()]
        lines = [[cell_len(line) for line in text.splitlines()] for text in texts]
        cells_width = max((n for text in lines[1:] for n in text), default=1)
        widest = max([cells_width, *lines[0]])
        header = _plain(column.header)
        out.append(_Column(header, column.justify, cells, max(words, default=1), cells_width, widest))
    return out


def _console(width: int):
    from rich.console import Console

    return Console(width=width, file=io.StringIO(), color_system=None)


def _new_table(original, compact: bool, **changes):
    """An empty table with the original's title, caption and lines; compact: no borders, one space between."""
    from rich.table import Table

    settings = dict(
        title=original.title,
        caption=original.caption,
        title_justify=original.title_justify,
        caption_justify=original.caption_justify,
        show_lines=original.show_lines,
        show_header=original.show_header,
        box=None if compact else original.box,
        padding=(0, 1) if compact else original.padding,
        pad_edge=not compact,
    )
    settings.update(changes)
    return Table(**settings)


def _overhead(original, compact: bool, count: int, width: int) -> int:
    """Borders and padding of a table of ``count`` one-character columns in this layout (measured, not assumed)."""
    from rich.measure import Measurement

    probe = _new_table(original, compact, title=None, caption=None)
    for _ in range(count):
        probe.add_column(width=1)
    console = _console(width + 1000)
    return Measurement.get(console, console.options, probe).maximum - count


def _widths(columns: list[_Column], room: int) -> list[int] | None:
    """Each column's width within ``room`` characters of content, or None when their longest words do not fit.
    The room left goes to whole cells of the right-aligned columns (fewest characters needed first), then to whole
    cells of the others, then to whole headers."""
    widths = [c.min_width for c in columns]
    spare = room - sum(widths)
    if spare < 0:
        return None
    stages = [
        (lambda c: c.justify == "right", "cells_width"),
        (lambda c: True, "cells_width"),
        (lambda c: True, "max_width"),
    ]
    for wanted, target in stages:
        chosen = [i for i, c in enumerate(columns) if wanted(c)]
        for i in sorted(chosen, key=lambda i: getattr(columns[i], target) - widths[i]):
            extra = max(0, min(spare, getattr(columns[i], target) - widths[i]))
            widths[i] += extra
            spare -= extra
    return widths


def _build(original, columns: list[_Column], widths: list[int], compact: bool, **changes):
    table = _new_table(original, compact, **changes)
    for column, width in zip(columns, widths, strict=True):
        table.add_column(column.header, justify=column.justify, width=width, overflow="fold")
    for r, row in enumerate(original.rows):
        table.add_row(*(c.cells[r] for c in columns), style=row.style, end_section=row.end_section)
    return table


def _whole(original, columns: list[_Column], width: int):
    for compact in (False, True):
        widths = _widths(columns, width - _overhead(original, compact, len(columns), width))
        if widths is not None:
            return _build(original, columns, widths, compact)
    return None


def _groups(original, columns: list[_Column], keys: int, width: int, compact: bool) -> list[list[int]] | None:
    """Indexes of the columns of each part: the ``keys`` first columns and as many others as fit, in order."""

    def fits(indexes: list[int]) -> bool:
        room = width - _overhead(original, compact, len(indexes), width)
        return _widths([columns[i] for i in indexes], room) is not None

    key = list(range(keys))
    groups: list[list[int]] = [list(key)]
    for i in range(keys, len(columns)):
        if fits([*groups[-1], i]):
            groups[-1].append(i)
        elif fits([*key, i]):
            groups.append([*key, i])
        else:
            return None
    return groups


def _numbered(columns: list[_Column]) -> tuple[list[_Column], int]:
    """The columns that every part repeats: the first; with a row number before it when its values repeat (two
    rece rows), so that a row of one part is found in the next."""
    first = [_plain(cell) for cell in columns[0].cells]
    if len(set(first)) == len(first):
        return columns, 1
    numbers = tuple(str(n + 1) for n in range(len(first)))
    width = len(numbers[-1]) if numbers else 1
    return [_Column("#", "right", numbers, width, width, width), *columns], 2


def _split(original, columns: list[_Column], width: int):
    """The table as several, each with the key column; None when a column does not fit beside the key."""
    from rich.console import Group

    if len(columns) < 2:
        return None
    columns, keys = _numbered(columns)
    candidates = [(g, c) for c in (False, True) if (g := _groups(original, columns, keys, width, c))]
    if not candidates:
        return None
    groups, compact = min(candidates, key=lambda c: len(c[0]))  # fewest parts; bordered on a tie
    parts = []
    for n, indexes in enumerate(groups):
        chosen = [columns[i] for i in indexes]
        room = width - _overhead(original, compact, len(chosen), width)
        title = original.title if n == 0 else f"(continued, {n + 1} of {len(groups)})"
        caption = original.caption if n == len(groups) - 1 else None
        parts.append(_build(original, chosen, _widths(chosen, room), compact, title=title, caption=caption))
    return Group(*parts)


def _records(original, columns: list[_Column], width: int):
    """One record per row: each column's name, then its value (beside it, or below it where the values' longest
    words would not fit beside the names); a blank line between records."""
    from rich.cells import cell_len
    from rich.markup import escape
    from rich.table import Table

    name_width = max(cell_len(line) for c in columns for line in c.header.splitlines() or [""])
    value_width = width - _overhead(original, True, 2, width) - name_width
    beside = value_width >= max(MIN_VALUE_WIDTH, *(c.min_width for c in columns if c.min_width <= width // 2))
    table = Table(
        title=original.title, caption=original.caption, show_header=False, box=None, padding=(0, 1), pad_edge=False
    )
    if beside:
        table.add_column(width=name_width, overflow="fold", style="bold")
    table.add_column(width=value_width if beside else width, overflow="fold")
    for r, row in enumerate(original.rows):
        for column in columns:
            if beside:
                table.add_row(column.header, column.cells[r], style=row.style)
            else:
                table.add_row(f"[bold]{escape(column.header)}[/]", style=row.style)
                table.add_row(column.cells[r], style=row.style)
        if r < len(original.rows) - 1:
            table.add_row(*[""] * len(table.columns))
    return table


def fit_table(table, width: int):
    """A renderable of ``table`` at most ``width`` characters wide that splits no word and drops no column: the
    table itself, borderless, split into parts, or a record per row, the first of these that fits."""
    columns = _columns(table)
    if not columns:
        return table
    return _whole(table, columns, width) or _split(table, columns, width) or _records(table, columns, width)
