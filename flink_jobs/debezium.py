"""Reading a Flink filesystem sink written in `debezium-json`: the table it holds now (for the
demo's printout, and tests)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

_PART = re.compile(r"^part-.+-(\d+)$")


def committed_parts(folder: Path) -> list[Path]:
    """The sink's committed part files in the order Flink wrote them (in-progress ones are
    dot-files until a checkpoint commits them)."""
    parts = [p for p in folder.rglob("part-*") if p.is_file() and _PART.match(p.name)]
    return sorted(parts, key=_written)


def _written(path: Path) -> tuple[int, int]:
    # The counter at the end of a part file's name orders the files one subtask rolled.
    counter = _PART.match(path.name)
    return path.stat().st_mtime_ns, int(counter[1]) if counter else 0


def upsert_table(folder: Path, key: Sequence[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Replay every change the sink committed: the current row per `key`."""
    table: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in committed_parts(folder):
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            change = orjson.loads(line)
            if change.get("after") is not None:
                after = change["after"]
                table[tuple(after[name] for name in key)] = after
            elif change.get("before") is not None:
                before = change["before"]
                ident = tuple(before[name] for name in key)
                if table.get(ident) == before:
                    del table[ident]
    return table
