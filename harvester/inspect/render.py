"""Writing inspection results as a rich table, JSON or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

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


def default_format(stream: TextIO) -> str:
    """`table` when writing to a terminal, else `json` (which pipes well into other tools)."""
    return "table" if stream.isatty() else "json"


@dataclass(frozen=True)
class Column:
    """One column: `key` in each row dict, `title` in tables and CSV headers."""

    key: str
    title: str
    justify: str = "left"


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
) -> None:
    """Write `rows` in `fmt`: json keeps every field of the rows, table and csv only `columns`."""
    if fmt == "json":
        out.write(to_json(list(rows)) + "\n")
    elif fmt == "csv":
        write_csv(rows, columns, out)
    else:
        write_table(rows, columns, out, title=title)


def write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for row in rows:
        writer.writerow([escape_surrogates(cell_text(row.get(c.key))) for c in columns])


def write_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    out: TextIO,
    *,
    title: str | None = None,
) -> None:
    table = Table(title=Text(safe_text(title)) if title else None, show_lines=False)
    for column in columns:
        table.add_column(column.title, justify=column.justify, overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        # Text objects, never plain strings: rich would read `[...]` in harvested data as markup.
        table.add_row(*(Text(safe_text(cell_text(row.get(c.key)))) for c in columns))
    console(out).print(table)


def console(out: TextIO) -> Console:
    """A rich console on `out` that never interprets markup or emoji codes in our strings."""
    return Console(file=out, markup=False, emoji=False, highlight=False, soft_wrap=False)
