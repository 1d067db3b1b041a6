"""Writing inspection results as a rich table, JSON or CSV."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harvester.surrogates import escape_surrogates

FORMATS: tuple[str, ...] = ("table", "json", "csv")

# Harvested strings may carry terminal control sequences (an ESC could rewrite the user's screen),
# so every C0/C1 control character except tab and newline is shown as an escape instead.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]}


def safe_text(value: str) -> str:
    """`value` with control characters and lone surrogates escaped, fit for a terminal."""
    return escape_surrogates(value.translate(_CONTROL))


def counted(n: int, noun: str) -> str:
    """`n` and `noun`, plural unless one: "1 target", "2,503 targets"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def default_format(stream: TextIO) -> str:
    """`table` when writing to a terminal, else `json` (which pipes well into other tools)."""
    return "table" if stream.isatty() else "json"


@dataclass(frozen=True)
class Column:
    """One column: `key` in each row dict, `title` in tables.

    `typed`: the row key of the column's typed-JSON node, which CSV writes flat (`csv_cell`)
    instead of the pretty text under `key`, and names its column. `fit`, in a table: `fold`
    wraps the text to the column's width, `keep` keeps it whole on one line (a run id to copy),
    `cut` shows its first line cut with an ellipsis to the width the other columns leave.
    """

    key: str
    title: str
    justify: str = "left"
    typed: str | None = None
    fit: Literal["fold", "keep", "cut"] = "fold"


def cell_text(value: Any) -> str:
    """How a row value reads in a table or CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


def csv_cell(node: Any) -> str:
    """A typed-JSON node as one flat CSV cell: a string as it is, a date as its ISO-8601 text,
    anything else as compact one-line typed JSON."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1 and isinstance(node.get("$date"), str):
        return str(node["$date"])
    return json.dumps(node, ensure_ascii=False, separators=(",", ":"))


def to_json(data: Any) -> str:
    """JSON text for output; ASCII-only so lone surrogates in harvested strings survive any pipe."""
    return json.dumps(data, ensure_ascii=True, indent=2)


def write_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    fmt: str,
    out: TextIO,
    *,
    title: str | None = None,
    wide: bool = False,
) -> None:
    """Write `rows` in `fmt`: json keeps every field of the rows, table and csv only `columns`.

    A `wide` table takes the width its cells need, beyond the terminal's if need be.
    """
    if fmt == "json":
        out.write(to_json(list(rows)) + "\n")
    elif fmt == "csv":
        write_csv(rows, columns, out)
    else:
        write_table(rows, columns, out, title=title, wide=wide)


def write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.typed or c.key for c in columns])
    for row in rows:
        # UTF-8 cannot hold a lone surrogate: it is written as its JSON escape.
        writer.writerow([escape_surrogates(_csv_text(row, c)) for c in columns])


def _csv_text(row: Mapping[str, Any], column: Column) -> str:
    # A typed column whose node is absent (a value the state DB no longer keeps) falls back to
    # the text the table shows, e.g. `(value not kept; hash …)`.
    if column.typed is not None and row.get(column.typed) is not None:
        return csv_cell(row[column.typed])
    return cell_text(row.get(column.key))


def write_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    out: TextIO,
    *,
    title: str | None = None,
    wide: bool = False,
) -> None:
    table = Table(title=Text(safe_text(title)) if title else None, show_lines=False)
    for column in columns:
        table.add_column(
            column.title,
            justify=column.justify,  # type: ignore[arg-type]
            overflow="fold",
            no_wrap=column.fit == "keep",
        )
    for row in rows:
        # Text objects, never plain strings: rich would read `[...]` in harvested data as markup.
        table.add_row(*(_table_cell(row, c) for c in columns))
    screen = console(out)
    if wide:
        # Squeezed into 80 columns, twenty columns are a column of letters each: a wide table
        # is asked for to be read whole (`| less -S`, a wide window).
        unbounded = screen.options.update_width(sys.maxsize)
        screen = console(
            out, width=max(screen.width, screen.measure(table, options=unbounded).maximum)
        )
    screen.print(table)


def _table_cell(row: Mapping[str, Any], column: Column) -> Text:
    text = safe_text(cell_text(row.get(column.key)))
    if column.fit != "cut":
        return Text(text)
    # The column still shrinks to what the others leave (rich narrows wrappable columns first);
    # the text then keeps to one line within it instead of wrapping.
    first, *more = text.split("\n", 1)
    return Text(first + (" …" if more else ""), no_wrap=True, overflow="ellipsis")


def console(out: TextIO, *, width: int | None = None) -> Console:
    """A rich console on `out` that never interprets markup or emoji codes in our strings."""
    return Console(
        file=out, width=width, markup=False, emoji=False, highlight=False, soft_wrap=False
    )
