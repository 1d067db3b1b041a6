"""What `harvester watch` prints of each run: a line per change, and optionally JSON lines.

A line is `+I/+U/-D  db/store  key  what changed`: the new value for `+I`, the fields that
changed (old → new) for `+U`, the value deleted for `-D`. Every text that comes from the page is
escaped for the terminal (`render.safe_text`): a harvested string may hold control sequences.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self, TextIO

from harvester.inspect.diff import FieldChange, field_changes
from harvester.inspect.pretty import pretty_text
from harvester.inspect.render import safe_text
from harvester.spool import RECORD_OPS, SpoolFile, read_rows

ARROW = "→"
ABSENT = "(absent)"


def _parsed(text: Any) -> Any:
    return None if text is None else json.loads(str(text))


def _fields(row: dict[str, Any]) -> list[FieldChange] | None:
    if row["op"] != "+U" or row["old_value"] is None or row["value"] is None:
        return None
    return field_changes(_parsed(row["old_value"]), _parsed(row["value"]))


def _field_text(change: FieldChange) -> str:
    old = ABSENT if change.old is None else change.old
    new = ABSENT if change.new is None else change.new
    return f"{change.path}: {old} {ARROW} {new}" if change.path else f"{old} {ARROW} {new}"


def change_line(row: dict[str, Any], fields: list[FieldChange] | None) -> str:
    """The terminal line of one spooled row."""
    op = str(row["op"])
    where = str(row["db_name"]) + ("" if row["store"] is None else f"/{row['store']}")
    if op not in RECORD_OPS:
        # A schema row (+S: a database or store created or changed; -S: gone).
        return safe_text(f"{op}  {where}")
    key = pretty_text(row["key"])
    if fields is not None:
        what = "; ".join(_field_text(change) for change in fields) or "(same value)"
    elif op == "-D":
        what = pretty_text(row["old_value"])
    else:
        what = pretty_text(row["value"])
    return safe_text(f"{op}  {where}  {key}  {what}")


def change_record(row: dict[str, Any], fields: list[FieldChange] | None) -> dict[str, Any]:
    """The JSON line of one spooled row: key and values as typed JSON."""
    return {
        "op": row["op"],
        "db": row["db_name"],
        "store": row["store"],
        "key": _parsed(row["key"]),
        "old_value": _parsed(row["old_value"]),
        "new_value": _parsed(row["value"]),
        "fields": None if fields is None else [change.as_dict() for change in fields],
        "run": row["run_id"],
    }


class ChangePrinter:
    """Prints the changes of each run to `out`, and to `out_file` as JSON lines if given."""

    def __init__(self, out: TextIO, out_file: Path | None = None) -> None:
        self.out = out
        self.out_file = out_file
        self._json: TextIO | None = None

    def __enter__(self) -> Self:
        if self.out_file is not None:
            self._json = self.out_file.open("w", encoding="utf-8")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._json is not None:
            self._json.close()
            self._json = None

    def spool(self, spool: SpoolFile) -> int:
        """Print every row of `spool`; how many were record changes."""
        changes = 0
        for raw in read_rows(spool.path):
            row: dict[str, Any] = dict(raw)
            fields = _fields(row)
            changes += row["op"] in RECORD_OPS
            print(change_line(row, fields), file=self.out, flush=True)
            if self._json is not None:
                # ASCII escapes: a lone surrogate in a key or value has no UTF-8 form.
                self._json.write(json.dumps(change_record(row, fields)) + "\n")
                self._json.flush()
        return changes
