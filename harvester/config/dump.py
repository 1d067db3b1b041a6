"""The effective config as TOML text, for `check-config` and the reference's defaults."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from harvester.config.types import format_duration


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML text of JSON-like `data` (None values are left out, as TOML has no null)."""
    lines: list[str] = []
    _toml_table(data, (), None, lines)
    return "\n".join(lines) + "\n"


def _toml_table(
    data: Mapping[str, Any], path: tuple[str, ...], header: str | None, lines: list[str]
) -> None:
    def is_tables(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

    if header:
        if lines:
            lines.append("")
        lines.append(header)
    for key, value in data.items():
        if value is not None and not isinstance(value, dict) and not is_tables(value):
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    for key, value in data.items():
        name = ".".join(_toml_key(part) for part in (*path, key))
        if isinstance(value, dict):
            _toml_table(value, (*path, key), f"[{name}]", lines)
        elif is_tables(value):
            for item in value:
                _toml_table(item, (*path, key), f"[[{name}]]", lines)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """A TOML literal of a JSON-like scalar or list (durations and paths as strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, timedelta):
        return toml_value(format_duration(value))
    if isinstance(value, Path):
        return toml_value(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    printable = all(c >= " " or c in "\n\t" for c in text) and "\x7f" not in text
    if "\n" in text and printable and "'''" not in text and not text.endswith("'"):
        # Multi-line SQL stays readable as a literal string.
        return f"'''\n{text}'''"
    # JSON's escapes are all valid in TOML basic strings, except that TOML also forbids DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
