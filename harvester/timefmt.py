"""The one ISO-8601 writer and reader for timestamps the harvester stores and prints."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a `Z`, e.g. `2026-11-26T15:00:00.123Z`; now if None."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """A timestamp written by `iso_utc` (or any ISO-8601 text with an offset) as an aware time."""
    return datetime.fromisoformat(text)
