"""The config's value types (durations, paths, URLs, names, time zones) and their names.

Each type is an `Annotated` type whose validators raise `problem(…)`, so that a bad value becomes
one problem line `<what is wrong>; expected <what>`, and whose `Kind` names it in the reference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    PlainSerializer,
    SecretStr,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

Loc = tuple[str | int, ...]

# The custom error type our validators raise; its ctx carries the problem line's parts.
PROBLEM = "harvester_config"


def problem(what: str, expected: str, *, at: str = "") -> PydanticCustomError:
    """A validation error whose line reads `<what>; expected <expected>` (`at`: a sub-path)."""
    return PydanticCustomError(PROBLEM, "{what}", {"what": what, "expected": expected, "at": at})


@dataclass(frozen=True)
class Kind:
    """Names a field's type in the reference and in `expected …` (Annotated metadata)."""

    text: str


def show(value: object) -> str:
    """`value` as a problem line shows it: short, and tables and lists only by their kind."""
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "…"


# --- durations ---------------------------------------------------------------------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")
_SECONDS = re.compile(r"\s*\d+(?:\.\d+)?\s*")
_DURATION_EXPECTED = "a duration like 500ms, 30s, 15m, 6h, 1h30m, or a number of seconds"


def parse_duration(value: object) -> timedelta | None:
    """`500ms`, `30s`, `15m`, `6h`, `1h30m`, `2d` or a plain number of seconds; None if not one."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and _SECONDS.fullmatch(value)):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(value))
    else:
        return None
    try:
        return timedelta(seconds=seconds) if seconds >= 0 else None
    except OverflowError:
        return None


def format_duration(value: timedelta) -> str:
    """The shortest duration text that parses back to `value`, e.g. `1h30m`, `500ms`."""
    micros = value // timedelta(microseconds=1)
    if micros % 1000:
        return f"{value.total_seconds()!r}s"
    millis = micros // 1000
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _to_duration(value: object) -> timedelta:
    duration = parse_duration(value)
    if duration is None:
        raise problem(f"{show(value)} is not a duration", _DURATION_EXPECTED)
    return duration


def check_positive(value: timedelta) -> timedelta:
    """`value`, or the problem that it is not above zero."""
    if value <= timedelta(0):
        raise problem(f"{format_duration(value)} is not positive", "a duration above 0")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    Kind("duration"),
]
PositiveDuration = Annotated[Duration, AfterValidator(check_positive), Kind("duration > 0")]


# --- paths, URLs, names, time zones ------------------------------------------------------------


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    # Relative paths mean "next to the config file", not "wherever the daemon was started".
    base = (info.context or {}).get("base_dir") or Path.cwd()
    return (Path(base) / value.expanduser()).resolve()


ResolvedPath = Annotated[Path, AfterValidator(_resolve_path), Kind("path")]


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise problem(f"{show(value)} is not an http(s) URL", "a URL like https://app.example.com/")
    return value


HttpUrl = Annotated[str, AfterValidator(_check_http_url), Kind("http(s) URL")]


def _check_browser_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise problem(
            f"{show(value)} is not a browser endpoint URL",
            "an http(s):// or ws(s):// URL like http://127.0.0.1:9222",
        )
    return value


BrowserUrl = Annotated[str, AfterValidator(_check_browser_url), Kind("URL")]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_name(value: str) -> str:
    # Target names become parts of file names (spools, logs), so only a safe alphabet.
    if not _NAME.fullmatch(value):
        raise problem(
            f"{show(value)} is not a usable target name",
            "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


TargetName = Annotated[str, AfterValidator(_check_name), Kind("name")]


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise problem(
            f"unknown time zone {show(value)}", "an IANA time zone like UTC or Europe/Berlin"
        ) from None
    return value


Timezone = Annotated[str, AfterValidator(_check_timezone), Kind("IANA time zone")]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]


# --- the names of types ------------------------------------------------------------------------


def strip_optional(annotation: Any) -> Any:
    """`X` for `X | None`; any other annotation unchanged."""
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not NoneType]
        if len(members) == 1:
            return members[0]
    return annotation


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class that `annotation` (or `annotation | None`) is, else None."""
    annotation = strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def type_name(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A short readable name of a field's type, e.g. `integer > 0`, `list of path`."""
    # The last name wins: PositiveDuration refines Duration's.
    for item in reversed(metadata):
        if isinstance(item, Kind):
            return item.text
    annotation = strip_optional(annotation)
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *more = get_args(annotation)
        return type_name(base, (*more, *metadata))
    if origin is Literal:
        return " | ".join(json.dumps(choice) for choice in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        return "array of tables" if model_of(item) else f"list of {_plural(type_name(item))}"
    if origin is dict:
        _key, item = get_args(annotation)
        return f"table of {_plural(type_name(item))}"
    if model_of(annotation):
        return "table"
    names = {str: "string", int: "integer", bool: "boolean", float: "number"}
    name = names.get(annotation, "secret string" if annotation is SecretStr else str(annotation))
    bounds = []
    for item in metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            limit = getattr(item, attr, None)
            if isinstance(item, annotated_types.BaseMetadata) and limit is not None:
                bounds.append(f"{sign} {limit}")
        if isinstance(item, annotated_types.MinLen) and item.min_length > 0:
            name = f"non-empty {name}"
    return f"{name} {', '.join(bounds)}" if bounds else name


def _plural(name: str) -> str:
    # `secret string` → `secret strings`; a name with bounds or choices (`integer > 0`,
    # `"a" | "b"`) is left as it is rather than guessed at.
    return f"{name}s" if name.replace(" ", "").replace("-", "").isalpha() else name
