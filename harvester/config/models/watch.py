"""The `[targets.watch]` table: harvest what the page just wrote, on its IndexedDB change events."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, Field, PlainSerializer, model_validator

from harvester.config.models.base import ConfigModel
from harvester.config.types import Kind, PositiveDuration, format_duration, problem, show

# Decimal and binary units alike, as people write them: a memory bound needs no precision.
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*")
_SIZE_EXPECTED = "a size like 512MB, 1GB or 1.5GiB, or a number of bytes"


def parse_size(value: object) -> int:
    """`512MB`, `1GB`, `1.5GiB` or a number of bytes, as bytes; a problem otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value > 0:
            return value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value.lower())
        if match and match[2] in _SIZE_UNITS and (size := float(match[1]) * _SIZE_UNITS[match[2]]):
            return int(size)
    raise problem(f"{show(value)} is not a size above 0", _SIZE_EXPECTED)


def format_size(size: int) -> str:
    """The shortest decimal size text that parses back to `size`, e.g. `1GB`, `1500kB`."""
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str, when_used="json"),
    Kind("size"),
]


class WatchSettings(ConfigModel):
    """Watch mode (docs/daemon.md): the page stays open, and the stores it writes are read."""

    enabled: bool = Field(
        False,
        description="Keep the target's page open in the daemon and harvest, on Chromium's "
        "IndexedDB change events, only the stores that changed (a run with trigger `event`).",
    )
    debounce: PositiveDuration = Field(
        timedelta(milliseconds=250),
        description="Quiet time after the last change event before the changed stores are read.",
    )
    max_delay: PositiveDuration = Field(
        timedelta(seconds=2),
        description="Read at the latest this long after the first event of a burst, even while "
        "events keep coming; at least `debounce`.",
    )
    recycle_after: PositiveDuration = Field(
        timedelta(hours=6),
        description="The page is closed and opened again (readiness and login steps included) "
        "after this long, so that a long-lived app cannot grow without bound.",
    )
    max_renderer_memory: ByteSize = Field(
        1000**3,
        description="The page is recycled when its JavaScript heap (CDP `Runtime.getHeapUsage`, "
        "used bytes, checked every 30 s) passes this size.",
    )

    @model_validator(mode="after")
    def _debounce_within_max_delay(self) -> WatchSettings:
        if self.debounce > self.max_delay:
            raise problem(
                f"debounce {format_duration(self.debounce)} is longer than max_delay "
                f"{format_duration(self.max_delay)}",
                "debounce ≤ max_delay",
                at="debounce",
            )
        return self
