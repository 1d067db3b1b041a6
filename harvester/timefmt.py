"""The one ISO-8601 writer and reader for timestamps the harvester stores and prints."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a `Z`, e.g. `2026-11-26T15:00:00.123Z`; now if None."""
    u = (moment or datetime.now(UTC)).astimezone(UTC)
    # Formatted by hand: strftime does not pad years below 1000. Milliseconds, as JavaScript
    # dates hold them: finer parts are dropped.
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}."
        f"{u.microsecond // 1000:03d}Z"
    )


def parse_iso(text: str) -> datetime:
    """A timestamp written by `iso_utc` (or any ISO-8601 text with an offset) as an aware time."""
    return datetime.fromisoformat(text)
