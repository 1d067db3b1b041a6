"""What a page of the live inspector gets (query parameters) and gives back (a `Reply`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harvester.errors import UsageError
from harvester.inspect.web.html import PAGE_HEADERS


@dataclass(frozen=True)
class Reply:
    """A response: status, headers (Content-Type among them) and body; framework-free, so the
    daemon's server and `harvester inspect` both serve it."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/octet-stream")


def html_reply(status: int, html: str) -> Reply:
    return Reply(
        status, html.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8", **PAGE_HEADERS}
    )


def usage_status(exc: UsageError) -> int:
    """The status of a request the state reader refused: 404 for a name it does not know
    (its message lists what exists), else 400 (runs of two targets, the newer run first, …)."""
    return 404 if str(exc).startswith(("unknown ", "no history")) else 400


class NotFound(Exception):
    """An unknown target, store, run or key: a 404 page saying which."""


class BadRequest(Exception):
    """A parameter that cannot be used: a 400 page saying which and why."""


class Params:
    """The query parameters of one request (the last value of a repeated one wins)."""

    def __init__(self, query: Mapping[str, Sequence[str]]) -> None:
        self._query = query

    def text(self, name: str, default: str = "") -> str:
        values = self._query.get(name)
        return values[-1] if values else default

    def required(self, name: str) -> str:
        value = self.text(name)
        if not value:
            raise BadRequest(f"parameter {name!r} is required")
        return value

    def number(self, name: str, default: int, *, low: int = 1, high: int = 10**9) -> int:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"parameter {name!r} must be a whole number, not {raw!r}") from None
        if not low <= value <= high:
            raise BadRequest(f"parameter {name!r} must be between {low:,} and {high:,}")
        return value

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise BadRequest(f"parameter {name!r} must be one of {', '.join(choices)}")
        return value

    def flag(self, name: str) -> bool:
        value = self.text(name, "0")
        if value not in ("0", "1"):
            raise BadRequest(f"parameter {name!r} must be 0 or 1")
        return value == "1"
